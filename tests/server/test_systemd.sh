#!/bin/sh
# test_systemd.sh: the service unit (systemd/vdminid.service.in) passes `systemd-analyze verify`
# and keeps its hardening. verify checks that ExecStart names an executable, so the unit is
# generated here as make install does, with @bindir@ pointing at a stand-in vdminid in a scratch
# directory. Skipped (exit 77) where systemd-analyze is not installed.
set -u
: "${top_srcdir:=.}"
template="$top_srcdir/systemd/vdminid.service.in"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze is not installed"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }

mkdir -p "$work/bin" "$work/etc/vdmini"
printf '#!/bin/sh\nexit 0\n' >"$work/bin/vdminid"
chmod +x "$work/bin/vdminid"
unit="$work/vdminid.service"
sed -e "s|@bindir@|$work/bin|g" -e "s|@sysconfdir@|$work/etc|g" -e "s|@pkgdatadir@|$work/share|g" "$template" >"$unit"

# verify exits 0 on unknown keys but prints them: any output is a failure
if systemd-analyze verify "$unit" >"$work/out" 2>&1 && [ ! -s "$work/out" ]; then
    ok "systemd-analyze verify"
else
    bad "systemd-analyze verify: $(cat "$work/out")"
fi

if grep -q '@[a-z]*@' "$unit"; then bad "unsubstituted @VARIABLE@ left"; else ok "all @VARIABLE@s substituted"; fi

for setting in DynamicUser=yes StateDirectory=vdmini ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    NoNewPrivileges=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" SystemCallArchitectures=native \
    LockPersonality=yes ProtectKernelTunables=yes ProtectKernelModules=yes ProtectControlGroups=yes \
    RestrictRealtime=yes RestrictSUIDSGID=yes Restart=on-failure KillSignal=SIGTERM \
    'ExecReload=/bin/kill -HUP $MAINPID'; do
    if grep -qxF "$setting" "$unit"; then ok "$setting"; else bad "missing $setting"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
