#!/usr/bin/env bash
# bench_ctl.sh [BUILD_DIR] [N] [STALLED] - the control socket with stalled peers (issue 13
# item 6): cellsd alone, then with STALLED (default 50) peers that each sent half a
# request and stopped. Side by side, for each: N raw ping requests on fresh connections
# (the agent's round trip, p50/p99/max) and N whole `cellctl ping` runs (process start
# included, p50/p99), then the ratios stalled/idle. The stalled peers are re-opened
# before each sample, so they are always the live ones the agent is holding (it closes a
# stalled peer after 3 s). Needs nothing but a build; takes well under a minute.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
N=${2:-200}
STALLED=${3:-50}
export PATH="$B/agent:$PATH"
W=$(mktemp -d /tmp/cells-bench-ctl.XXXXXX)
cleanup() {
	[ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/state" "$W/run"
cellsd --state-dir "$W/state" --run-dir "$W/run" --log-level error >"$W/cellsd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do cellctl --run-dir "$W/run" ping >/dev/null 2>&1 && break; sleep 0.1; done

python3 - "$W/run" "$N" "$STALLED" <<'PY'
import socket, struct, subprocess, sys, time
run, n, nstall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = run + "/control.sock"
PING = bytes.fromhex("08015200")  # CtlRequest{version: 1, ping {}}

def raw_ping():
    t = time.perf_counter()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(60)
    c.connect(path)
    c.sendall(struct.pack(">I", len(PING)) + PING)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
        d = c.recv(65536)
        if not d:
            raise SystemExit("cellsd closed the connection")
        buf += d
    c.close()
    return time.perf_counter() - t

def cellctl_ping():
    t = time.perf_counter()
    subprocess.run(["cellctl", "--run-dir", run, "ping"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t

def stall(k):
    socks = []
    for _ in range(k):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(struct.pack(">I", 100) + b"\x08\x01")  # 6 of 104 bytes, then nothing
        socks.append(s)
    return socks

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]

def run_case(k):
    raw, cli, socks, opened = [], [], [], 0.0
    ncli = max(10, n // 10)
    for i in range(n):
        if k and time.monotonic() - opened > 1.5:  # keep them live (closed after 3 s)
            for s in socks:
                s.close()
            socks, opened = stall(k), time.monotonic()
            time.sleep(0.05)
        raw.append(raw_ping())
        if i < ncli:
            cli.append(cellctl_ping())
    for s in socks:
        s.close()
    return raw, cli

idle_raw, idle_cli = run_case(0)
st_raw, st_cli = run_case(nstall)
ms = lambda x: "%8.2f ms" % (x * 1000)
print("control socket: %d raw pings, %d cellctl pings per case; %d stalled peers"
      % (n, len(idle_cli), nstall))
print("%-28s %14s %14s %8s" % ("", "idle", "%d stalled" % nstall, "ratio"))
for name, a, b, p in [
    ("raw round trip p50", idle_raw, st_raw, 50), ("raw round trip p99", idle_raw, st_raw, 99),
    ("raw round trip max", idle_raw, st_raw, 100),
    ("cellctl ping p50", idle_cli, st_cli, 50), ("cellctl ping p99", idle_cli, st_cli, 99)]:
    x, y = pct(a, p), pct(b, p)
    print("%-28s %14s %14s %7.2fx" % (name, ms(x), ms(y), y / x if x else float("nan")))
PY
