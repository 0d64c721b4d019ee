#!/usr/bin/env bash
# bench_switch.sh [BUILD_DIR] [N] - foreground switch latency through the agent, with
# real VPs: cellsd with the 1080x2400 shm panel, two VPs drawing their colour
# continuously (tests/tools/cells-draw), N switches with bench_switch --agent (from the
# control request to the new frame on the panel, against a memcpy of one frame measured
# in the same run), then the module-level bench_switch for the breakdown. Needs root.
# Takes about a minute or two on a 2-core VM.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
N=${2:-100}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$B/agent:$PATH"
W=$(mktemp -d /tmp/cells-bench-switch.XXXXXX)
export CELLS_RUN_DIR="$W/run"
cleanup() {
	cellctl vp stop bw >/dev/null 2>&1 || true
	cellctl vp stop bp >/dev/null 2>&1 || true
	[ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
bash "$SRC/scripts/mkimage.sh" "$W/img" "$B/tests/tools/cells-draw" >/dev/null
mkdir -p "$W/state" "$W/run"
cellsd --state-dir "$W/state" --run-dir "$W/run" --display shm:1080x2400 --log-level warn \
	>"$W/cellsd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
for v in bw:1f4e9a bp:f0a030; do
	cellctl vp create "${v%%:*}" --image "$W/img" >/dev/null
	cellctl vp start "${v%%:*}" >/dev/null
	cellctl vp exec "${v%%:*}" -- sh -c "cells-draw ${v##*:} >/dev/null 2>&1 &" >/dev/null
done
sleep 1
"$B/tests/bench/bench_switch" --agent "$W/run" bw 1f4e9a bp f0a030 "$N"
echo
"$B/tests/bench/bench_switch" "$((N * 2))" 2>/dev/null | grep -v ' info: '
