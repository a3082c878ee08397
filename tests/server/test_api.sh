#!/bin/sh
# test_api.sh: runs the black-box tests of vdminid's HTTP API (test_api.py) with Debian's
# pytest against the programs of the build directory. Skipped (77) only when pytest is missing.
: "${top_srcdir:=.}" "${top_builddir:=.}"
if ! /usr/bin/python3 -c 'import pytest' 2>/dev/null; then
    echo "python3-pytest is not installed: skipped"
    exit 77
fi
top_builddir=$(cd "$top_builddir" && pwd)
export top_builddir
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$top_srcdir/tests/server/test_api.py"
