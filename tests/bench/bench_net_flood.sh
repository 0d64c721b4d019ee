#!/usr/bin/env bash
# bench_net_flood.sh [BUILD_DIR] [N] - `cellctl ping` latency (p50/p99, N pings) of an
# agent whose network process floods it, side by side with an idle agent in the same
# run (pings alternate between the two, so both see the same machine load). The flood is
# tests/integration/net_relay.py in mode flood_all: the real cellsd-net behind a relay
# that adds forged acks (200/s) and forged commands/policies (3/s) for ever - just under
# cellsd's rate limits, the most a network process can make cellsd do without being
# restarted. Goal (issue 13): flooded p99 within 2x of idle and under 100 ms.
# Needs root (cellsd). Loopback only.
set -uo pipefail
export CELLS_BUILD=$(cd "${1:-build-test}" && pwd)
export CELLS_SRC=$(cd "$(dirname "$0")/../.." && pwd)
N=${2:-100}
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
. "$CELLS_SRC/tests/integration/net_lib.sh"
need_root
relay_setup
setup_enrolled --net-helper "$T/relay/net_relay.py" || { tail "$T/cellsd.log"; exit 1; }
relay_setup
# the idle peer: a second agent, not enrolled, same build, same machine
mkdir -p "$T/idle/state" "$T/idle/run"
cellsd --state-dir "$T/idle/state" --run-dir "$T/idle/run" >"$T/idle.log" 2>&1 &
PIDS+=($!)
wait_for 20 env CELLS_RUN_DIR="$T/idle/run" CELLS_STATE="$T/idle/state" cellctl ping || { echo "idle agent did not start"; exit 1; }
relay_mode flood_all
kill -9 "$(mgmt_field net_pid)"
wait_for 30 connected || { echo "the flooding network process did not connect"; exit 1; }
sleep 2
R0=$(mgmt_field received)
one() { local s e; s=$(date +%s%N); "$@" cellctl ping >/dev/null 2>&1 || echo 99999 >>"$T/err"; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
: >"$T/flood.ms"; : >"$T/idle.ms"; : >"$T/err"
T0=$(date +%s)
for _ in $(seq 1 "$N"); do
	one env >>"$T/flood.ms"
	one env CELLS_RUN_DIR="$T/idle/run" CELLS_STATE="$T/idle/state" >>"$T/idle.ms"
done
DT=$(($(date +%s) - T0))
R1=$(mgmt_field received)
FP50=$(pct 50 <"$T/flood.ms"); FP99=$(pct 99 <"$T/flood.ms")
IP50=$(pct 50 <"$T/idle.ms"); IP99=$(pct 99 <"$T/idle.ms")
echo "cellctl ping, $N pings each, $(nproc) cores, build $(basename "$CELLS_BUILD")"
echo "idle agent:     p50 ${IP50} ms  p99 ${IP99} ms"
echo "flooded agent:  p50 ${FP50} ms  p99 ${FP99} ms  ($(((R1 - R0) / (DT > 0 ? DT : 1))) forged+real messages/s processed, restarts $(mgmt_field net_restarts), errors $(wc -l <"$T/err" 2>/dev/null || echo 0))"
python3 -c "print('ratio flooded/idle: p50 %.2fx  p99 %.2fx' % ($FP50/max($IP50,1), $FP99/max($IP99,1)))"
stop_cellsd
finish
