#!/bin/sh
# quickstart.sh: from a fresh Debian 12 checkout to a generated video — installs the packages,
# builds, writes a tiny model with random weights when none is shipped yet, and renders a clip
# from a prompt on the GPU when there is one, else on the CPU.
set -eu
cd "$(dirname "$0")/.."
./tools/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"
model=models/tiny-random.safetensors
[ -f "$model" ] || ./vdmini init --preset tiny --seed 1 --out "$model"
./vdmini generate --model "$model" --prompt "a small red circle moves left on a blue background" \
    --seed 1 --out demo.mp4
echo "quickstart: wrote demo.mp4 and demo.png"
