#!/bin/sh
# install-deps.sh: installs what qtool needs from Debian's packages.
#   scripts/install-deps.sh          build dependencies (make runs this when pkg-config misses one)
#   scripts/install-deps.sh --test   also what `make check` and `make bench` use: Node.js + npm
#                                    (onnxruntime-node, installed by scripts/setup-node.sh), Debian's
#                                    python3-torch/torchvision/onnx (zoo export, fixtures), groff,
#                                    clang + libclang-rt (make fuzz), valgrind (.ci/run),
#                                    chromium (renders the eval --report page in scripts/t-report.sh)
# As root it runs apt-get; otherwise it prints the exact command and exits 1.
set -u
BUILD_PKGS="make gcc pkg-config protobuf-c-compiler libprotobuf-c-dev libpng-dev libjpeg62-turbo-dev libcjson-dev libopenblas-dev"
TEST_PKGS="clang libclang-rt-14-dev groff-base nodejs npm python3 python3-numpy python3-onnx python3-torch python3-torchvision python3-pil valgrind chromium"
pkgs=$BUILD_PKGS
[ "${1:-}" = "--test" ] && pkgs="$BUILD_PKGS $TEST_PKGS"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# nodejs may come from elsewhere than Debian (a preinstalled node); accept a working node + npm
case "$missing" in *nodejs*|*npm*)
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        missing=$(echo "$missing" | sed 's/ nodejs//; s/ npm//')
    fi;;
esac
[ -z "$missing" ] && exit 0
echo "install-deps: missing Debian packages:$missing" >&2
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root:  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends $missing >&2
