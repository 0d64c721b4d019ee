# vp_lib.sh - shared set-up of the VP tests: a busybox image with the probe, and
# helpers to find what a VP leaves on the host. Sourced after tests/lib.sh.
need_root
command -v busybox >/dev/null || skip "busybox-static not installed"
IMG="$T/img"
cc -static -O2 -o "$T/vp_probe" "$CELLS_SRC/tests/integration/vp_probe.c" 2>"$T/cc.err" ||
	skip "cannot build a static probe: $(head -1 "$T/cc.err")"
bash "$CELLS_SRC/scripts/mkimage.sh" "$IMG" "$T/vp_probe" >/dev/null || exit 1
ctl() { cellctl "$@"; }
vp_instance() { cellctl --json vp list | python3 -c 'import json,sys; print(json.load(sys.stdin)["instance"])'; }
vp_field() { cellctl --json vp status "$1" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2',''))"; }
# What VPs of this agent instance hold on the host (empty when nothing leaked).
vp_leftovers() {
	local id=$1
	find /sys/fs/cgroup -maxdepth 6 -type d -name "cells-$id-*" 2>/dev/null
	ip -o link show 2>/dev/null | grep -o "cv${id:0:6}[0-9]*" || true
	# (the agent's encrypted storage area is not a VP's: it stays while cellsd runs)
	grep -F "$T/" /proc/self/mountinfo | awk -v a="$CELLS_RUN_DIR/wipe/mnt" '$5 != a {print "mount " $5}' || true
	nft list table ip "cells_$id" >/dev/null 2>&1 && echo "nft table cells_$id"
	# a zombie holds nothing but its pid: an init adopted after a cellsd restart is the
	# child of whoever started the old cellsd (here the test shell, in production PID 1),
	# which reaps it, not cellsd
	for p in /proc/[0-9]*; do
		grep -qs "cells-$id-" "$p/cgroup" && ! grep -qs '^State:.*zombie' "$p/status" &&
			echo "process ${p#/proc/}"
	done
	return 0
}
# check_not DESC CMD...: passes when CMD fails (whatever it prints)
check_not() { local d=$1; shift; if "$@" >"$T/last.out" 2>&1; then not_ok "$d (succeeded)"; sed 's/^/    /' "$T/last.out"; else ok "$d"; fi; }
# host_get URL: fetch from the host side (no proxy), body on stdout
host_get() {
	python3 -c 'import sys,urllib.request as u; o=u.build_opener(u.ProxyHandler({})); sys.stdout.write(o.open(sys.argv[1],timeout=3).read().decode())' "$1"
}
# vp_get VP HOST PORT: an HTTP GET from inside VP (busybox nc; its static wget crashes)
vp_get() {
	cellctl vp exec "$1" -- sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 $2 $3 | tail -1"
}
