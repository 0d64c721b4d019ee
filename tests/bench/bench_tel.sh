#!/usr/bin/env bash
# bench_tel.sh [BUILD_DIR] [CALLS] - incoming-call routing latency of the telephony proxy
# (p50/p99 over CALLS calls, default 300) next to a bare pty hop. Needs root (cellsd).
# Not part of ctest; run: tests/bench/bench_tel.sh build 300
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:-$SRC/build}" && pwd)
N=${2:-300}
T=$(mktemp -d /tmp/cells-bench-tel.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
mkdir -p "$T/state" "$T/run"
"$B/tests/integration/tel_assign" "$T/state" assign work +15550101 1 +15550000
"$B/agent/cellsd" --state-dir "$T/state" --run-dir "$T/run" --modem "$T/modem" \
	--log-level warn >"$T/cellsd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do "$B/agent/cellctl" --run-dir "$T/run" ping >/dev/null 2>&1 && break; sleep 0.1; done
python3 "$SRC/tests/bench/bench_tel.py" "$T/modem" "$T/run" "$N"
