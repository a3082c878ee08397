#!/bin/sh
# make-guide.sh: writes models/teacher-guide.safetensors, the guide the server samples the shipped
# teacher with (docs/models.md, "Guided by an earlier stage"): the stage-10 teacher's weights,
# which this repository's history keeps (models/teacher.safetensors as it shipped then), rewritten
# in F8 by `vdmini convert`. The file is derived, not tracked, so that the tracked tree stays
# small; its SHA-256 is checked, so it is the file that was measured, byte for byte. In a
# shallow clone run `git fetch --unshallow` first; tools/train-models.sh writes the same guide
# from a retraining. The program is found as the training scripts find it (resumable-run.sh).
#
#   tools/make-guide.sh [OUT]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/resumable-run.sh"
vdmini=$(vdmini_program)
stage10=e854d9d9ffa62e9ddcb5ead39298d56ae4319b4f  # the blob of models/teacher.safetensors at stage 10
want=5ca2f3f67692477aeedf71f88a75ba1d4faa291f593ada935631846359de1760
out=${1:-$here/models/teacher-guide.safetensors}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! git -C "$here" cat-file blob "$stage10" >"$work/stage10.safetensors" 2>/dev/null; then
    echo "make-guide.sh: the stage-10 weights (blob $stage10) are not in this clone's history;" \
        "run 'git fetch --unshallow', or tools/train-models.sh, which writes the guide too" >&2
    exit 1
fi
"$vdmini" convert --model "$work/stage10.safetensors" --dtype f8 --out "$work/guide.safetensors" >/dev/null 2>&1
got=$(sha256sum "$work/guide.safetensors" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
    echo "make-guide.sh: the guide came out with SHA-256 $got, not the measured $want" >&2
    exit 1
fi
mv "$work/guide.safetensors" "$out"
echo "make-guide.sh: wrote $out" >&2
