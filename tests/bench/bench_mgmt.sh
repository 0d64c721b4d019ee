#!/usr/bin/env bash
# bench_mgmt.sh [BUILD_DIR] [N] [BASELINE_OUTPUT] - how many mutual-TLS device sessions
# one cells-mdm holds on this machine, its memory per connection, push->ack latency at
# N=1 and during a fan-out, and the time to fan one signed policy out to all N (last
# delivery, last ack). Loopback only. BASELINE_OUTPUT: the saved output of an earlier
# run (e.g. another build, same machine): the figures are printed side by side with
# their ratios (new/old).
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
N=${2:-10000}
BASE=${3:-}
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
echo "load before: $(uptime)"
"$B/tests/bench/bench_mgmt" "$W/mdm" localhost "$PORT" "$N" "$SP" | tee "$W/out"
echo "load after: $(uptime)"
[ -n "$BASE" ] || exit 0
python3 - "$BASE" "$W/out" <<'PY'
import re, sys
def figs(path):
    t = open(path).read()
    f = {}
    m = re.search(r"1 device pushed.*?p50=([\d.]+) ms p99=([\d.]+) ms", t)
    if m: f["push->ack p50 at N=1 (ms)"], f["push->ack p99 at N=1 (ms)"] = map(float, m.groups())
    m = re.search(r"all delivered after ([\d.]+) s, all acknowledged after ([\d.]+) s", t)
    if m: f["fan-out: last delivery (s)"], f["fan-out: last ack (s)"] = map(float, m.groups())
    m = re.search(r"([\d.]+) kB per connection", t)
    if m: f["memory per connection (kB)"] = float(m.group(1))
    return f
old, new = figs(sys.argv[1]), figs(sys.argv[2])
print("%-30s %10s %10s %7s" % ("figure", "before", "after", "ratio"))
for k in old:
    if k in new:
        print("%-30s %10.2f %10.2f %7.2f" % (k, old[k], new[k], new[k] / old[k] if old[k] else float("nan")))
PY
