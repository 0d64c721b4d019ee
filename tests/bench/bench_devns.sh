#!/usr/bin/env bash
# bench_devns.sh [BUILD_DIR] - the paper's experiments for issue 7 on this machine, each
# against a peer measured in the same run:
#   (a) memory of 1, 2, 3 and 5 running VPs that each hold the same MB_PER_VP of data
#       (tests/bench/bench_devns_load.c "hold", started by the VP's /etc/rc.local) with
#       cellsd --ksm off and --ksm on: the VPs' cgroup memory (memory.current), the PSS
#       of every process in the VPs, the growth of /sys/kernel/mm/ksm/pages_sharing and
#       of system-wide used memory (MemTotal - MemAvailable; other work on the machine
#       shows there too), with the ratio on/off. With KSM on, each step waits until
#       cellsd has stopped ksmd (its merge-rate policy) or SETTLE_MAX seconds.
#   (b) CPU overhead of background VPs: a fixed CPU-bound loop ("spin") run inside the
#       FVP with 0, 1, 2, 3, 4 idle BVPs, alternating with the same static binary run on
#       the host; medians and the ratio FVP/host.
#   (c) the time of `cellctl policy apply` of a signed policy that flips the vpn device
#       class (exclusive <-> no-access) between two VPs (as tests/integration/devices_vp.sh
#       does), on two agents side by side: one with both VPs stopped, one with both
#       running, applies alternating between them; median over FLIPS applies each, and
#       `cellctl ping` as the floor of one control round trip. The final state is
#       checked inside the running VPs.
# Not part of ctest. Needs root, busybox-static, a C compiler with static libc,
# /dev/net/tun. Each part runs its own cellsd (--state-dir/--run-dir in a temp dir).
# Takes about 3-4 minutes on a 2-core VM. Environment: MB_PER_VP (64), SPIN (100000000),
# ROUNDS (15), FLIPS (15), SETTLE_MAX (40).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:-$SRC/build}" && pwd)
MB=${MB_PER_VP:-64}
SPIN=${SPIN:-100000000}
ROUNDS=${ROUNDS:-15}
FLIPS=${FLIPS:-15}
SETTLE_MAX=${SETTLE_MAX:-40}
KSM=/sys/kernel/mm/ksm
export PATH="$B/agent:$B/server-mock:$PATH"
die() { echo "bench_devns: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
command -v busybox >/dev/null || die "needs busybox-static"
for t in cellsd cellctl cells-mdm; do command -v $t >/dev/null || die "no $t in $B"; done
W=$(mktemp -d /tmp/cells-bench-devns.XXXXXX)
CPIDS=() CRUNS=()
KSM_RUN0=$(cat "$KSM/run" 2>/dev/null || true)

# stop_cellsds: stop the VPs of every cellsd started here, then the cellsds
stop_cellsds() {
	local i v
	for i in "${!CPIDS[@]}"; do
		for v in $(CELLS_RUN_DIR=${CRUNS[$i]} cellctl --json vp list 2>/dev/null |
			python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(sys.stdin)["vps"] if v["state"] == "running"))' 2>/dev/null); do
			CELLS_RUN_DIR=${CRUNS[$i]} cellctl vp stop "$v" >/dev/null 2>&1 || true
		done
		kill "${CPIDS[$i]}" 2>/dev/null && wait "${CPIDS[$i]}" 2>/dev/null
	done
	CPIDS=() CRUNS=()
}
finish() {
	stop_cellsds || true
	# ksmd is global: leave it as we found it
	[ -n "$KSM_RUN0" ] && echo "$KSM_RUN0" >"$KSM/run" 2>/dev/null
	rm -rf "$W"
}
trap finish EXIT

# start_cellsd NAME ARGS...: a fresh cellsd in $W/NAME; cellctl talks to it from now on
start_cellsd() {
	local n=$1
	shift
	mkdir -p "$W/$n/state" "$W/$n/run"
	export CELLS_RUN_DIR="$W/$n/run"
	cellsd --state-dir "$W/$n/state" --run-dir "$W/$n/run" --log-level warn --power-backend record \
		"$@" >"$W/$n/cellsd.log" 2>&1 &
	CPIDS+=($!) CRUNS+=("$CELLS_RUN_DIR")
	for _ in $(seq 100); do cellctl ping >/dev/null 2>&1 && return 0; sleep 0.05; done
	cat "$W/$n/cellsd.log" >&2
	die "cellsd ($n) did not come up"
}
# on NAME CMD...: run CMD against the cellsd in $W/NAME
on() { CELLS_RUN_DIR="$W/$1/run" "${@:2}"; }
ns() { date +%s%N; }
# vpjson EXPR: evaluate EXPR over the VP list (v: list of VP objects)
vpjson() { cellctl --json vp list | python3 -c "import json,sys; v=json.load(sys.stdin)['vps']; print($1)"; }
memjson() { cellctl --json device list | python3 -c "import json,sys; m=json.load(sys.stdin)['memory']; print($1)"; }
start_vp() { cellctl vp create "$1" --image "$2" >/dev/null && cellctl vp start "$1" >/dev/null; }
median() { python3 -c 'import statistics,sys; print(int(statistics.median(int(x) for x in sys.argv[1:])))' "$@"; }

# --- the load and the images ---
cc -static -O2 -o "$W/bench_devns_load" "$SRC/tests/bench/bench_devns_load.c" 2>"$W/cc.err" ||
	die "cannot build the static load: $(head -1 "$W/cc.err")"
bash "$SRC/scripts/mkimage.sh" "$W/img" "$W/bench_devns_load" >/dev/null
bash "$SRC/scripts/mkimage.sh" "$W/img-mem" "$W/bench_devns_load" >/dev/null
cat >"$W/img-mem/etc/rc.local" <<RC
#!/bin/sh
bench_devns_load hold $MB >/tmp/hold.out 2>&1 &
RC
chmod 755 "$W/img-mem/etc/rc.local"

echo "bench_devns: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MB RAM"
if [ -d "$KSM" ]; then
	echo "bench_devns: ksmd $(for f in pages_to_scan sleep_millisecs smart_scan advisor_mode; do printf '%s=%s ' $f "$(cat "$KSM/$f" 2>/dev/null || echo -)"; done)"
else
	echo "bench_devns: this kernel has no $KSM (KSM unavailable)"
fi

# ---------------------------------------------------------------- (a) memory
kb_used() { awk '/^MemTotal/ {t=$2} /^MemAvailable/ {a=$2} END {print t-a}' /proc/meminfo; }
sharing() { cat "$KSM/pages_sharing" 2>/dev/null || echo 0; }
# vp_stats: over every process in the running VPs (same pid namespace as their init):
# "PSS_KB KSM_MERGING_PAGES MERGE_ANY_PROCS PROCS" (/proc/PID/smaps_rollup, ksm_stat)
vp_stats() {
	vpjson '" ".join(str(x["pid"]) for x in v if x["state"] == "running")' | python3 -c '
import os, sys
nss = {os.readlink(f"/proc/{p}/ns/pid") for p in sys.stdin.read().split()}
pss = merging = anyp = procs = 0
for p in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.readlink(f"/proc/{p}/ns/pid") not in nss:
            continue
        pss += sum(int(l.split()[1]) for l in open(f"/proc/{p}/smaps_rollup") if l.startswith("Pss:"))
        st = dict(l.rstrip().replace(":", "").split(None, 1) for l in open(f"/proc/{p}/ksm_stat"))
        merging += int(st.get("ksm_merging_pages", 0))
        anyp += st.get("ksm_merge_any") == "yes"
        procs += 1
    except (OSError, ValueError):
        pass
print(pss, merging, anyp, procs)'
}
# wait_held N: every one of the N running VPs holds its data (the load printed "held MB"
# into the VP's /tmp; the cgroups cannot tell: with KSM, merged pages leave them)
wait_held() {
	local pids p ok
	pids=$(vpjson '" ".join(str(x["pid"]) for x in v if x["state"] == "running")')
	[ "$(echo "$pids" | wc -w)" = "$1" ] || die "expected $1 running VPs, have pids '$pids'"
	for _ in $(seq 150); do
		ok=0
		for p in $pids; do grep -qx "held $MB" "/proc/$p/root/tmp/hold.out" 2>/dev/null && ok=$((ok + 1)); done
		[ "$ok" = "$1" ] && return 0
		sleep 0.1
	done
	die "the VPs' data did not appear ($ok of $1)"
}
KSM_NOTE=""
mem_mode() {
	local mode=$1 have=0 n i u0 t0 waited ksmd
	start_cellsd "mem-$mode" --ksm "$mode"
	if [ "$mode" = on ] && [ "$(memjson "m['ksm']")" != True ]; then
		KSM_NOTE="KSM unavailable: cellsd --ksm on fell back to off ($(grep -m1 ksm "$W/mem-$mode/cellsd.log" || echo 'see its log')); the 'on' column is KSM off"
	fi
	u0=$(kb_used)
	for n in 1 2 3 5; do
		for ((i = have + 1; i <= n; i++)); do start_vp "m$i" "$W/img-mem" || die "VP m$i did not start"; done
		have=$n
		wait_held "$n"
		t0=$(ns)
		if [ "$mode" = on ] && [ -z "$KSM_NOTE" ]; then
			# cellsd stops ksmd once the merge rate falls below its threshold
			sleep 2
			for _ in $(seq "$SETTLE_MAX"); do [ "$(memjson "m['ksmd_running']")" = False ] && break; sleep 1; done
		else
			sleep 3
		fi
		waited=$((($(ns) - t0) / 1000000))
		ksmd=$(cat "$KSM/run" 2>/dev/null || echo -)
		echo "  ksm $mode, $n VPs: settled after $waited ms ($SECONDS s)" >&2
		echo "$mode $n $(vpjson "sum(x.get('memory_bytes', 0) for x in v if x['state'] == 'running') // 1024") $(vp_stats) $(sharing) $(($(kb_used) - u0)) $waited $ksmd" >>"$W/mem.tsv"
	done
	stop_cellsds
}
echo "(a) memory: running... ($SECONDS s)" >&2
mem_mode off
mem_mode on

# ---------------------------------------------------------------- (b) CPU
echo "(b) CPU: running... ($SECONDS s)" >&2
start_cellsd cpu
start_vp fvp "$W/img" || die "VP fvp did not start"
[ "$(vpjson "[x['name'] for x in v if x['foreground']]")" = "['fvp']" ] || die "fvp is not the FVP"
"$W/bench_devns_load" spin "$SPIN" >/dev/null # warm-up
cellctl vp exec fvp -- bench_devns_load spin "$SPIN" >/dev/null
for k in 0 1 2 3 4; do
	[ "$k" -gt 0 ] && { start_vp "b$k" "$W/img" || die "VP b$k did not start"; }
	sleep 1
	[ "$(vpjson "sum(1 for x in v if x['state'] == 'running')")" = $((k + 1)) ] || die "expected $((k + 1)) running VPs"
	h=() f=()
	for _ in $(seq "$ROUNDS"); do
		h+=("$("$W/bench_devns_load" spin "$SPIN" | cut -d' ' -f1)")
		f+=("$(cellctl vp exec fvp -- bench_devns_load spin "$SPIN" | cut -d' ' -f1)")
	done
	[ "$(vpjson "[x['name'] for x in v if x['foreground']]")" = "['fvp']" ] || die "fvp left the foreground"
	echo "$k $(median "${h[@]}") $(median "${f[@]}") $(printf '%s,' "${h[@]}") $(printf '%s,' "${f[@]}")" >>"$W/cpu.tsv"
done
stop_cellsds

# ---------------------------------------------------------------- (c) device-mode change
echo "(c) policy apply: running... ($SECONDS s)" >&2
[ -c /dev/net/tun ] || die "this host has no /dev/net/tun (the vpn class's node)"
export CELLS_MDM_STATE_DIR="$W/mdm"
# two agents side by side: dev0 with the VPs defined but stopped, dev1 with them running;
# the applies alternate between them
start_cellsd dev0 --device-profile "$SRC/profiles/devhost.json"
start_cellsd dev1 --device-profile "$SRC/profiles/devhost.json"
cells-mdm init >/dev/null
cells-mdm export-root >"$W/root.pem"
NPOL=$((FLIPS + 1))
for a in dev0 dev1; do
	on $a cellctl trust pin "$W/root.pem" >/dev/null
	cells-mdm policy example --device "$(on $a cellctl device id)" >"$W/$a/example.json"
	# policy v: vpn exclusive to work for odd v, to personal for even v (v1: warm-up)
	python3 - "$W/$a/example.json" "$W/$a" "$NPOL" <<'PY'
import json, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for ver in range(1, n + 1):
    p = json.load(open(src))
    p["version"] = ver
    owner = "work" if ver % 2 else "personal"
    for r in p["vps"]:
        r["devices"] = {"vpn": "exclusive" if r["name"] == owner else "no-access"}
        r["password"] = {"required": False, "min_length": 0, "max_failed_attempts": 0, "wipe_on_limit": False}
    json.dump(p, open(f"{out}/p{ver}.json", "w"))
PY
	for v in $(seq "$NPOL"); do cells-mdm policy sign "$W/$a/p$v.json" -o "$W/$a/p$v.bin" >/dev/null; done
	for v in work personal; do on $a cellctl vp create "$v" --image "$W/img" >/dev/null; done
done
for v in work personal; do on dev1 cellctl vp start "$v" >/dev/null; done
# the devices are given once each VP's root is ready (its /dev/cells/power exists)
for v in work personal; do
	for _ in $(seq 100); do on dev1 cellctl vp exec $v -- test -c /dev/cells/power 2>/dev/null && break; sleep 0.1; done
done
[ "$(on dev0 cellctl --json vp list | python3 -c 'import json,sys; print(sum(x["state"] == "running" for x in json.load(sys.stdin)["vps"]))')" = 0 ] ||
	die "dev0 runs a VP"
[ "$(on dev1 cellctl --json vp list | python3 -c 'import json,sys; print(sum(x["state"] == "running" for x in json.load(sys.stdin)["vps"]))')" = 2 ] ||
	die "dev1 does not run both VPs"
on dev0 cellctl policy apply "$W/dev0/p1.bin" >/dev/null # warm-up
on dev1 cellctl policy apply "$W/dev1/p1.bin" >/dev/null
# apply A V: time one apply of policy V on agent A, appended to the array named A
apply() {
	local t
	t=$(ns)
	on "$1" cellctl policy apply "$W/$1/p$2.bin" >/dev/null || die "$1: policy v$2 did not apply"
	eval "$1+=($(($(ns) - t)))"
}
pings=() dev0=() dev1=()
for v in $(seq 2 "$NPOL"); do
	if [ $((v % 2)) = 0 ]; then apply dev0 "$v"; apply dev1 "$v"; else apply dev1 "$v"; apply dev0 "$v"; fi
	t=$(ns); on dev1 cellctl ping >/dev/null; pings+=($(($(ns) - t)))
done
# the last policy is in force in both agents, and inside dev1's running VPs
owner=work other=personal
[ $((NPOL % 2)) = 0 ] && owner=personal other=work
for a in dev0 dev1; do
	[ "$(on $a cellctl --json device list | python3 -c "import json,sys; print(json.load(sys.stdin)['policy_version'])")" = "$NPOL" ] ||
		die "$a: policy v$NPOL is not in force"
done
on dev1 cellctl vp exec $owner -- test -c /dev/net/tun || die "$owner has no /dev/net/tun after the last flip"
! on dev1 cellctl vp exec $other -- test -e /dev/net/tun || die "$other still has /dev/net/tun after the last flip"
stopped=("${dev0[@]}") running=("${dev1[@]}")
stop_cellsds

# ---------------------------------------------------------------- report
python3 - "$W/mem.tsv" "$W/cpu.tsv" "$MB" "$SPIN" "$ROUNDS" "$KSM_NOTE" \
	"$(median "${pings[@]}")" "$(median "${stopped[@]}")" "$(median "${running[@]}")" \
	"$(printf '%s,' "${stopped[@]}")" "$(printf '%s,' "${running[@]}")" <<'PY'
import sys
memf, cpuf, mb, spin, rounds, note, ping, stopped, running, sall, rall = sys.argv[1:]
mem = {}
for l in open(memf):
    mode, n, cg, pss, merging, anyp, procs, shr, used, waited, ksmd = l.split()
    mem[(mode, int(n))] = dict(cg=int(cg) / 1024, pss=int(pss) / 1024, merging=int(merging), anyp=int(anyp),
                               procs=int(procs), shr=int(shr), used=int(used) / 1024, waited=int(waited) / 1000,
                               ksmd=ksmd)
def r(a, b):
    return f"{a / b:.2f}" if b > 0 else "-"
print(f"\n(a) memory: N running VPs, each holding the same {mb} MB (cellsd --ksm off vs on)")
if note:
    print("    " + note)
print(" VPs | cgroups MB off    on on/off | PSS MB off    on on/off | VP merged pages off     on | pages_sharing off     on |"
      " used MB +off  +on | merge-any procs off  on | on: settle s")
for n in (1, 2, 3, 5):
    f, o = mem[("off", n)], mem[("on", n)]
    print(f" {n:3d} | {f['cg']:11.0f} {o['cg']:5.0f} {r(o['cg'], f['cg']):>6} | {f['pss']:10.0f} {o['pss']:5.0f} {r(o['pss'], f['pss']):>6} |"
          f" {f['merging']:19d} {o['merging']:6d} | {f['shr']:17d} {o['shr']:6d} | {f['used']:12.0f} {o['used']:4.0f} |"
          f" {f['anyp']:3d}/{f['procs']:<2d}{o['anyp']:6d}/{o['procs']:<2d} | {o['waited']:5.1f}")
print("     cgroups: sum of the VPs' memory.current; PSS and merged pages (/proc/PID/ksm_merging_pages): every")
print("     process in the VPs; pages_sharing: /sys/kernel/mm/ksm (global, updated only while ksmd scans: with")
print("     --ksm off cellsd never starts ksmd and it stays what the last scan left); used: MemTotal-MemAvailable growth")
print("     since that cellsd started (global: other work on the machine shows there too); settle: until cellsd")
print("     stopped ksmd (merge rate below its threshold)")
print(f"\n(b) CPU: spin {spin} iterations, {rounds} runs alternating host / FVP: median and minimum")
print(" BVPs | host ms median   min |  FVP ms median   min | FVP/host median   min")
for l in open(cpuf):
    k, h, f, hs, fs = l.split()
    hmin = min(int(x) for x in hs.strip(",").split(","))
    fmin = min(int(x) for x in fs.strip(",").split(","))
    print(f" {int(k):4d} | {int(h) / 1e6:14.1f} {hmin / 1e6:5.1f} | {int(f) / 1e6:13.1f} {fmin / 1e6:5.1f} |"
          f" {int(f) / int(h):15.3f} {fmin / hmin:5.3f}")
print("\n(c) device-mode change: cellctl policy apply flipping vpn (exclusive <-> no-access) between work and personal")
print(f"     (two agents side by side, applies alternating; {len(sall.strip(',').split(','))} flips each)")
print(f"     cellctl ping (floor)          median {int(ping) / 1e6:7.2f} ms")
print(f"     apply, both VPs stopped       median {int(stopped) / 1e6:7.2f} ms  ({len(sall.strip(',').split(','))} applies)")
print(f"     apply, both VPs running       median {int(running) / 1e6:7.2f} ms  ({len(rall.strip(',').split(','))} applies)")
print(f"     ratio running/stopped         {int(running) / int(stopped):.2f}")
PY
