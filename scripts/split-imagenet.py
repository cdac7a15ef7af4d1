#!/usr/bin/python3
"""split-imagenet.py DATA OUT: the measurement split of `make accuracy`
(scripts/accuracy.sh, scripts/accuracy-tf.sh): symbolic links in class
folders, the first 512 images of DATA in sorted order (folders, then files)
to OUT/train, the rest to OUT/hold. Tune on train, judge on hold."""
import os
import sys

d, t = os.path.abspath(sys.argv[1]), sys.argv[2]
i = 0
for c in sorted(os.listdir(d)):
    if not os.path.isdir(os.path.join(d, c)):
        continue
    for f in sorted(os.listdir(os.path.join(d, c))):
        dst = os.path.join(t, "train" if i < 512 else "hold", c)
        os.makedirs(dst, exist_ok=True)
        os.symlink(os.path.join(d, c, f), os.path.join(dst, f))
        i += 1
