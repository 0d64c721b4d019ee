#!/usr/bin/env bash
# bench_policy.sh [BUILD_DIR] - policy decode+verify rate against `openssl speed ed25519`
# verify in the same run (goal >= 0.9x; both are rates per CPU second, as openssl speed
# measures user CPU time unless -elapsed is given), and the end-to-end time of `cellctl policy
# apply` through cellsd: verify + persist (fsync) + apply + audit, without VPs and with
# two running VPs whose device access changes live with each version.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
export PATH="$B/agent:$B/server-mock:$PATH"
echo "== openssl speed -seconds 3 ed25519"
ossl=$(openssl speed -seconds 3 ed25519 2>/dev/null | awk '/Ed25519/ && $NF ~ /^[0-9.]+$/ {v=$NF} END {print v}')
echo "openssl_verify_per_s $ossl"
echo "== bench_policy 3"
out=$("$B/tests/bench/bench_policy" 3)
echo "$out"
path=$(awk '/^policy_decode_verify_per_s/ {print $2}' <<<"$out")
full=$(awk '/^bundle_with_delegation_per_s/ {print $2}' <<<"$out")
python3 -c "import sys; o,p,f=map(float,sys.argv[1:]); print('ratio decode+verify / openssl verify = %.3f (goal >= 0.9)' % (p/o)); print('ratio bundle (2 verifies) / openssl verify = %.3f (expected ~0.5)' % (f/o))" "$ossl" "$path" "$full"

echo "== cellctl policy apply through cellsd: no VP, then two running VPs (20 versions each)"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/cells-bench.XXXXXX)
cleanup() {
	for vp in work personal; do cellctl vp destroy $vp >/dev/null 2>&1 || true; done
	kill $pid 2>/dev/null; wait $pid 2>/dev/null
	umount "$W/run/wipe/mnt" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
export CELLS_MDM_STATE_DIR="$W/mdm" CELLS_RUN_DIR="$W/run"
cells-mdm init >/dev/null
mkdir -p "$W/state" "$W/run"
# the development host's profile: the vpn class (/dev/net/tun) is a real device cgroup rule
cellsd --state-dir "$W/state" --run-dir "$W/run" --device-profile "$SRC/profiles/devhost.json" \
	--power-backend record >"$W/cellsd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
cells-mdm export-root >"$W/root.pub"; cellctl trust pin "$W/root.pub" >/dev/null
id=$(cellctl device id)
for v in $(seq 1 40); do
	# every device mode of both VPs changes between odd and even versions; vpn moves
	# between work and personal
	cells-mdm policy example --device "$id" --version "$v" | python3 -c '
import json, sys
p = json.load(sys.stdin); odd = int(sys.argv[1]) % 2
for r in p["vps"]:
    d = r["devices"]
    if not odd:
        for k in d:
            if d[k] == "shared": d[k] = "no-access"
    mine = (r["name"] == "work") == bool(odd)
    d["vpn"] = "exclusive" if mine else "no-access"
json.dump(p, sys.stdout)' "$v" >"$W/p.json"
	cells-mdm policy sign "$W/p.json" -o "$W/p$v.bin" >/dev/null
done
measure() {
	python3 - "$W" "$1" "$2" <<'PY'
import subprocess, sys, time
w, first, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]; ts = []
for v in range(first, first + 20):
    t = time.perf_counter()
    subprocess.run(["cellctl", "policy", "apply", f"{w}/p{v}.bin"], check=True, stdout=subprocess.DEVNULL)
    ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print("cellctl policy apply, %s: median %.1f ms, p90 %.1f ms, max %.1f ms" % (what, ts[10], ts[18], ts[-1]))
PY
}
measure 1 "no VP running"
if [ "$(id -u)" = 0 ] && command -v busybox >/dev/null; then
	bash "$SRC/scripts/mkimage.sh" "$W/img" >/dev/null
	for vp in work personal; do
		cellctl vp create $vp --image "$W/img" --net none >/dev/null
		cellctl vp start $vp >/dev/null
	done
	measure 21 "two running VPs (device cgroups and /dev change live)"
	tun() { cellctl vp exec "$1" -- sh -c '[ -c /dev/net/tun ] && echo yes || echo no'; }
	echo "after the last apply (version 40: vpn is personal's): TUN in work: $(tun work), in personal: $(tun personal)"
else
	echo "(two running VPs: needs root and busybox-static)"
fi
