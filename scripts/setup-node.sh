#!/bin/sh
# setup-node.sh: installs scripts/node_modules (onnxruntime-node, pinned in
# scripts/package.json and package-lock.json) for ort-run.mjs and golden.mjs.
# Does nothing when scripts/node_modules/onnxruntime-node is already there.
# scripts/.npmrc sets onnxruntime-node-install=skip so that the package's
# postinstall step downloads nothing (the CPU binaries ship in the package).
# Exits non-zero with a message when npm is missing or the install fails.
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/node_modules/onnxruntime-node/package.json" ]; then
    exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup-node.sh: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
echo "setup-node.sh: npm install in $here" >&2
if ! (cd "$here" && npm install --no-audit --no-fund >&2); then
    echo "setup-node.sh: 'npm install' in $here failed: onnxruntime-node is not installed" >&2
    echo "setup-node.sh: (behind a proxy that re-signs TLS, npm reports SELF_SIGNED_CERT_IN_CHAIN: give node the" >&2
    echo "setup-node.sh: proxy's CA with NODE_EXTRA_CA_CERTS=/path/to/ca.crt and run make check again)" >&2
    exit 1
fi
if ! (cd "$here" && node -e "require('onnxruntime-node')" 2>&1); then
    echo "setup-node.sh: onnxruntime-node was installed but does not load" >&2
    exit 1
fi
exit 0
