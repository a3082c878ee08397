#!/bin/sh
# test_browser.sh: runs the web page's browser test (test_browser.mjs) for make check; skips
# (77) where Debian's Chromium, Node.js or playwright-core (npm ci --prefix tests/web) is missing.
: "${top_srcdir:=.}"
: "${top_builddir:=.}"
if [ ! -x /usr/bin/chromium ]; then
    echo "test_browser.sh: skipped: no /usr/bin/chromium (apt-get install chromium)"
    exit 77
fi
if ! command -v node >/dev/null 2>&1; then
    echo "test_browser.sh: skipped: no node (apt-get install nodejs)"
    exit 77
fi
if [ ! -d "$top_srcdir/tests/web/node_modules/playwright-core" ]; then
    echo "test_browser.sh: skipped: no playwright-core (npm ci --prefix tests/web)"
    exit 77
fi
export top_srcdir top_builddir
exec node --test "$top_srcdir/tests/web/test_browser.mjs"
