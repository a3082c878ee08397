# script_test.sh: what the tests of the long-run scripts (test_ablation.sh, test_distill_student.sh,
# test_stage_ab.sh) share; sourced, not run, after the test sets `script` (the script under test)
# and top_srcdir. It gives $work (a temporary directory, removed at exit), $build (the build tree
# as an absolute path, since the scripts work inside their output directory), VDMINI exported as
# the build's vdmini-core, ok/bad NAME to count results, expect_refused and finish.
: "${top_builddir:=.}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
build=$(cd "$top_builddir" && pwd)
export VDMINI="$build/vdmini-core"

# expect_refused NAME FRAGMENT ARGS...: the script run with ARGS and an output directory fails
# naming FRAGMENT, having made nothing
expect_refused() {
    name=$1 fragment=$2
    shift 2
    if "$script" "$@" "$work/refused" 2>"$work/err"; then
        bad "$name ran"
    elif grep -q -- "$fragment" "$work/err" && [ ! -e "$work/refused" ]; then
        ok "$name is refused before anything runs"
    else
        bad "$name: $(cat "$work/err")"
    fi
}

# finish: the counts, and the test's exit status
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
