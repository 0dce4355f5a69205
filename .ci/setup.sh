#!/usr/bin/env bash
# Installs everything archsearch and its tests need on a fresh machine (idempotent):
# Debian's Fashion-MNIST (offline data), PostgreSQL for the multi-machine storage test when
# apt is there, and the package itself with its dev extras (torch 2.14.1 is taken from the
# local wheel cache on these machines).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
if command -v apt-get >/dev/null 2>&1 && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
    || echo "setup: could not install dataset-fashion-mnist; tests needing it will skip" >&2
fi
if [ -x .ci/postgres.sh ] && [ -z "${ARCHSEARCH_TEST_POSTGRES:-}" ]; then
  if url=$(bash .ci/postgres.sh 2>/dev/null | tail -n 1) && [ -n "$url" ]; then
    export ARCHSEARCH_TEST_POSTGRES="$url"
    printf '%s\n' "$url" > .ci/.postgres-url
  else
    echo "setup: PostgreSQL not available; its test will skip" >&2
  fi
fi
python3 -m pip install -q -e '.[dev,postgres,timm,onnx]' 2>&1 | grep -v -i -e "running pip as the 'root' user" -e "is ignored: it is neither a file nor a directory" || true
python3 -c "import archsearch, torch, torchvision, optuna, thop" 
