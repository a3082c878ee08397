#!/bin/sh
# quickstart.sh: from a fresh Debian 12 checkout to a running server — installs the packages,
# builds, and serves the default model on http://127.0.0.1:8080/ (the web page is at /), on the
# GPU when there is one, else on the CPU. Until the trained model ships in models/, it serves a
# tiny model with random weights (it makes noise, not pictures). Stop it with Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
./tools/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"
model=models/teacher.safetensors
if [ ! -f "$model" ]; then
    model=models/tiny-random.safetensors
    [ -f "$model" ] || ./vdmini init --preset tiny --seed 1 --out "$model"
fi
exec ./vdminid --model "$model" --data-dir data --listen 127.0.0.1:8080
