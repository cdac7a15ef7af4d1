#!/usr/bin/python3
"""split-imagenet.py DATA OUT [--fold a|b]: the measurement splits of `make
accuracy` (scripts/accuracy.sh, scripts/accuracy-tf.sh): symbolic links in
class folders. Without --fold, the first 512 images of DATA in sorted order
(folders, then files) to OUT/train and the rest to OUT/hold. With --fold a,
the images at even positions of that order to OUT/train and the odd ones to
OUT/hold; --fold b the other way round. The two folds judge every image once
with a model not tuned on it (two-fold cross-validation: 666 judged images
of imagenet-dev instead of 154, and every class on both sides). Tune on
train, judge on hold."""
import os
import sys

args = sys.argv[1:]
fold = None
if "--fold" in args:
    k = args.index("--fold")
    fold = args[k + 1] if k + 1 < len(args) else ""
    del args[k:k + 2]
if len(args) != 2 or fold not in (None, "a", "b"):
    sys.exit("usage: split-imagenet.py DATA OUT [--fold a|b]")
d, t = os.path.abspath(args[0]), args[1]
i = 0
for c in sorted(os.listdir(d)):
    if not os.path.isdir(os.path.join(d, c)):
        continue
    for f in sorted(os.listdir(os.path.join(d, c))):
        if fold is None:
            train = i < 512
        else:
            train = (i % 2 == 0) == (fold == "a")
        dst = os.path.join(t, "train" if train else "hold", c)
        os.makedirs(dst, exist_ok=True)
        os.symlink(os.path.join(d, c, f), os.path.join(dst, f))
        i += 1
