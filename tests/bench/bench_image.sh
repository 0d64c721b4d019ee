#!/usr/bin/env bash
# bench_image.sh [BUILD_DIR] [MB] - image download throughput (issue 16): one erofs image
# of MB MiB (default 200) served over TLS on loopback by tests/integration/image_mdm.py,
# fetched (1) by `curl` with a client certificate of the MDM's CA and (2) by the device
# (Envelope.image -> cellsd-net GET -> pipe -> cellsd hashing into the partial file,
# fsync, SHA-256 check, rename), each three times; prints the best times and the ratio
# device throughput / curl throughput (goal >= 0.8). Run as root from the source tree;
# use the release build (build/).
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
MB=${2:-200}
export CELLS_BUILD=$B CELLS_SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
M=$CELLS_MDM_STATE_DIR
export CELLS_NET_RETRY_MAX_MS=1000
forge() { ASAN_OPTIONS=detect_leaks=0 "$B/tests/integration/image_forge" "$M" "$@"; }
mkenv() {
	python3 - "$@" <<'PY'
import os, sys
out, field, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def vi(n):
    b = b""
    while True:
        c = n & 0x7F; n >>= 7
        b += bytes([c | (0x80 if n else 0)])
        if not n: return b
body = open(path, "rb").read()
mid = ("bench-%s-%s" % (os.path.basename(os.path.dirname(out)), os.path.basename(out))).encode()
open(out, "wb").write(b"\x08\x01\x12" + vi(len(mid)) + mid + vi(field << 3 | 2) + vi(len(body)) + body)
PY
}
setup_enrolled --max-image-size 4G >/dev/null || { cat "$T/cellsd.log"; exit 1; }
stop_mdm
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/cli.key" \
	-subj /CN=bench -out "$T/cli.csr" 2>/dev/null
openssl x509 -req -in "$T/cli.csr" -CA "$M/ca.pem" -CAkey "$M/ca.key" -CAcreateserial \
	-days 1 -out "$T/cli.pem" 2>/dev/null
best_curl= best_dev=
forge trust /dev/null bench 1 erofs "$T/trust.bin"
for i in 1 2 3; do
	mkdir -p "$T/root$i" "$T/e$i"
	head -c $((MB << 20)) /dev/urandom >"$T/root$i/blob"
	mkfs.erofs --quiet "$T/img$i" "$T/root$i" >/dev/null
	rm -rf "$T/root$i"
	S=$(sha256sum "$T/img$i" | cut -d' ' -f1)
	forge manifest "$T/img$i" bench $i erofs "$T/m$i.bin"
	mkenv "$T/e$i/0-trust" 20 "$T/trust.bin"
	mkenv "$T/e$i/1-image" 22 "$T/m$i.bin"
	: >"$T/srv$i.log"
	python3 "$CELLS_SRC/tests/integration/image_mdm.py" "$PORT" "$M/server.pem" "$M/server.key" "$M/ca.pem" "$T/img$i" ok "$T/srv$i.log" "$T/e$i" &
	SRV=$!
	PIDS+=("$SRV")
	wait_for 60 port_open "$PORT"
	t=$(curl -s -o /dev/null -w '%{time_total}' --cacert "$M/ca.pem" --cert "$T/cli.pem" --key "$T/cli.key" "https://localhost:$PORT/v1/images/$S")
	t0=$(date +%s.%N)
	wait_for 300 grep -q "^result image:bench@$i 2" "$T/srv$i.log" || { echo "device download $i failed"; tail "$T/cellsd.log"; exit 1; }
	# the device's time: from its GET to the verified file (from cellsd's log)
	d=$(python3 - "$T/cellsd.log" "bench@$i" "$S" <<'PY'
import re, sys
t = {}
for l in open(sys.argv[1]):
    m = re.match(r"(\d+):(\d+):(\d+\.\d+) ", l)
    if not m: continue
    s = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    if "image:%s: downloading from byte 0" % sys.argv[2] in l: t["a"] = s
    if "image %s verified" % sys.argv[2] in l: t["b"] = s
print("%.3f" % (t["b"] - t["a"]))
PY
)
	echo "run $i: curl ${t}s, device ${d}s ($MB MiB)"
	[ -z "$best_curl" ] || [ "$(echo "$t < $best_curl" | bc)" = 1 ] && best_curl=$t
	[ -z "$best_dev" ] || [ "$(echo "$d < $best_dev" | bc)" = 1 ] && best_dev=$d
	kill "$SRV"; wait "$SRV" 2>/dev/null || true
	rm -f "$T/img$i"
done
echo "best: curl ${best_curl}s, device ${best_dev}s; device/curl throughput = $(echo "scale=2; $best_curl / $best_dev" | bc)"
