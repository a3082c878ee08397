#!/bin/sh
# quickstart.sh: from a fresh Debian 12 checkout to a running server — installs the packages,
# builds, and serves the default model on http://127.0.0.1:8080/ (the web page is at /), on the
# GPU when there is one, else on the CPU. The default model is the shipped VDMini student
# (docs/vdmini.md, "Student F"), one UNet row a video a step; the teacher it was distilled from
# (docs/models.md) is registered beside it for the admin API's activate, sampled with its guide,
# which tools/make-guide.sh derives once from the repository's history (without it, the teacher
# serves unguided). Stop it with Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
./tools/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"
[ -f models/teacher-guide.safetensors ] || VDMINI=./vdmini-core ./tools/make-guide.sh ||
    echo "quickstart.sh: no guide; the teacher serves unguided" >&2
exec ./vdminid --model models/vdmini.safetensors --set extra_models=models/teacher.safetensors --data-dir data --listen 127.0.0.1:8080
