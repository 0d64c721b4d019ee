#!/usr/bin/env bash
# bench_mgmt.sh [BUILD_DIR] [N] - how many mutual-TLS device sessions one cells-mdm holds
# on this machine, its memory per connection, push->ack latency at N=1 and during a
# fan-out, and the time to fan one signed policy out to all N. Loopback only.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
N=${2:-10000}
W=$(mktemp -d /tmp/cells-bench-mgmt.XXXXXX)
trap 'kill $SP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
ulimit -n "$(ulimit -Hn)"
export CELLS_MDM_STATE_DIR="$W/mdm"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$B/server-mock/cells-mdm" init >/dev/null
"$B/server-mock/cells-mdm" serve --listen "localhost:$PORT" >"$W/mdm.log" 2>&1 &
SP=$!
sleep 1
echo "cells-mdm pid $SP on localhost:$PORT, N=$N, $(nproc) cores, fd limit $(ulimit -n)"
"$B/tests/bench/bench_mgmt" "$W/mdm" localhost "$PORT" "$N" "$SP"
