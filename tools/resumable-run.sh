# resumable-run.sh: what the long-run scripts (train-models.sh, distill-student.sh,
# vdmini-ablation.sh, stage-ab.sh) share; sourced, not run. The caller sets `here` (the source tree), `gpus`
# (the --gpus option, 1 without it), `limit` (the --time-limit option in seconds, 0 without it),
# `vdmini` (vdmini_program's answer) and, before the first run, `start` (date +%s).

# The program the scripts run: $VDMINI when set, else vdmini-core on PATH (vdmini without video:
# all that training needs), else vdmini on PATH, else the source tree's (vdmini-core, then vdmini).
vdmini_program() {
    [ -n "${VDMINI:-}" ] && { echo "$VDMINI"; return; }
    command -v vdmini-core || command -v vdmini || { [ -x "$here/vdmini-core" ] && echo "$here/vdmini-core"; } ||
        echo "$here/vdmini"
}

# Exits 2 with a message naming SCRIPT unless --gpus is a whole number from 1 and --time-limit a
# whole number of seconds.
check_run_options() {
    case $gpus in '' | *[!0-9]* | 0) echo "$1: --gpus needs a whole number from 1" >&2; exit 2 ;; esac
    case $limit in '' | *[!0-9]*) echo "$1: --time-limit needs a whole number of seconds" >&2; exit 2 ;; esac
}

# run_resumable DIR ACCUM ARGS...: runs the program with ARGS, resumed from DIR's newest
# checkpoint, spread over as many of the $gpus GPUs as share its ACCUM micro-batches a step evenly,
# and stopped after what is left of $limit. Returns the program's status, or 3 when no time is left.
run_resumable() {
    dir=$1 accum=${2:-1}
    shift 2
    use=$gpus
    while [ $((accum % use)) -ne 0 ]; do use=$((use - 1)); done
    [ "$use" -gt 1 ] && set -- "$@" --gpus "$use"
    latest=$(ls -d "$dir"/step-* 2>/dev/null | sort | tail -n 1 || true)
    [ -n "$latest" ] && set -- "$@" --resume "$latest"
    if [ "$limit" -gt 0 ]; then
        left=$((limit - ($(date +%s) - start)))
        [ "$left" -gt 0 ] || return 3
        set -- "$@" --time-limit "$left"
    fi
    "$vdmini" "$@"
}
