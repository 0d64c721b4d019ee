#!/usr/bin/env bash
# bench_policy.sh [BUILD_DIR] - policy decode+verify rate against `openssl speed ed25519`
# verify in the same run (goal >= 0.9x; both are rates per CPU second, as openssl speed
# measures user CPU time unless -elapsed is given), and the end-to-end time of `cellctl policy
# apply` through cellsd (no VP enforcer is registered in this build: it measures
# verify + persist (fsync) + apply bookkeeping + audit).
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

echo "== cellctl policy apply through cellsd (20 versions)"
W=$(mktemp -d /tmp/cells-bench.XXXXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$W"' EXIT
export CELLS_MDM_STATE_DIR="$W/mdm" CELLS_RUN_DIR="$W/run"
cells-mdm init >/dev/null
mkdir -p "$W/state" "$W/run"
cellsd --state-dir "$W/state" --run-dir "$W/run" >"$W/cellsd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
cells-mdm export-root >"$W/root.pub"; cellctl trust pin "$W/root.pub" >/dev/null
id=$(cellctl device id)
for v in $(seq 1 20); do
	cells-mdm policy example --device "$id" --version "$v" >"$W/p.json"
	# every device mode of both VPs changes between odd and even versions
	if [ $((v % 2)) = 0 ]; then sed -i 's/"shared"/"no-access"/g' "$W/p.json"; fi
	cells-mdm policy sign "$W/p.json" -o "$W/p$v.bin" >/dev/null
done
python3 - "$W" <<'PY'
import subprocess, sys, time
w = sys.argv[1]; ts = []
for v in range(1, 21):
    t = time.perf_counter()
    subprocess.run(["cellctl", "policy", "apply", f"{w}/p{v}.bin"], check=True, stdout=subprocess.DEVNULL)
    ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print("cellctl policy apply: median %.1f ms, max %.1f ms (20 versions, modes flip each time)" % (ts[10], ts[-1]))
PY
