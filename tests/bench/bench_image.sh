#!/usr/bin/env bash
# bench_image.sh - signed VP images (docs/IMAGES.md), each figure next to a peer measured
# in the same run, with the ratio:
#   verify  `cellctl image import` of an image of SIZE_MB (copy into the store, SHA-256,
#           fsync, signature, read-only mount) vs `sha256sum` of the same file, and vs
#           `cp` + `sha256sum` + `sync` (the same work done by hand)
#   memory  page cache of two VPs that read every file of a Debian root file system
#           (scripts/mkrootfs.sh) plus a DATA_MB file, on ONE shared signed image vs on two
#           private copies of it (two images of the same tree): the sum of the two VPs'
#           memory cgroups' page cache and the host's Cached growth
#   deliver a SIZE_MB image pushed by `cells-mdm image push` to an enrolled cellsd over
#           loopback (offer -> HTTPS download by cellsd-net -> verified), vs `curl` of the
#           same file from the same endpoint with the device's certificate (throughput ratio)
#           (the device's times come from its log: from its GET, and from the offer's
#           acceptance, to the file verified)
# Usage: tests/bench/bench_image.sh [BUILD_DIR] [SIZE_MB] [DATA_MB]   (root; default build/ 200 64)
# Not part of ctest (a benchmark): run it by hand.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build}
SIZE_MB=${2:-200}
DATA_MB=${3:-64}
[ "$(id -u)" = 0 ] || { echo "bench_image: needs root" >&2; exit 1; }
command -v mkfs.erofs >/dev/null || { echo "bench_image: mkfs.erofs missing (apt-get install erofs-utils)" >&2; exit 1; }
export PATH="$BUILD/agent:$BUILD/server-mock:$PATH"
T=$(mktemp -d /tmp/cells-bench-image.XXXXXX)
PIDS=()
finish() {
	cellctl vp stop work >/dev/null 2>&1 || true
	cellctl vp stop personal >/dev/null 2>&1 || true
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	for m in $(awk -v t="$T" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap finish EXIT
export CELLS_RUN_DIR="$T/run" CELLS_MDM_STATE_DIR="$T/mdm"
mkdir -p "$T/state" "$T/run"
now() { date +%s.%N; }
dt() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b if b else 0))" "$1" "$2"; }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
start_cellsd() {
	cellsd --state-dir "$T/state" --run-dir "$T/run" --log-level info "$@" >>"$T/cellsd.log" 2>&1 &
	CELLSD=$!
	PIDS+=("$CELLSD")
	for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "bench_image: cellsd did not start" >&2
	cat "$T/cellsd.log" >&2
	exit 1
}
cells-mdm init >/dev/null
start_cellsd
ID=$(cellctl device id)
cells-mdm export-root >"$T/root.pub"
cellctl trust pin "$T/root.pub" >/dev/null
img() { # NAME VERSION TREE: build and sign
	cells-mdm image build "$3" -o "$T/$1-$2.img" --name "$1" --version "$2" >/dev/null
	cells-mdm image sign "$T/$1-$2.img" >/dev/null
}

# --- verify: import vs sha256sum ---
mkdir -p "$T/big"
head -c $((SIZE_MB * 1048576)) /dev/urandom >"$T/big/data"
img big 1 "$T/big"
BYTES=$(stat -c %s "$T/big-1.img")
sync
t0=$(now)
sha256sum "$T/big-1.img" >/dev/null
t1=$(now)
cp "$T/big-1.img" "$T/big.copy" && sha256sum "$T/big.copy" >/dev/null && sync
t2=$(now)
rm -f "$T/big.copy"
cellctl image import "$T/big-1.img" "$T/big-1.img.bundle" >/dev/null
t3=$(now)
sha=$(dt "$t0" "$t1")
byhand=$(dt "$t1" "$t2")
imp=$(dt "$t2" "$t3")
echo "verify: image of $BYTES bytes"
printf '  %-44s %8s s  %7.0f MB/s\n' "sha256sum" "$sha" "$(python3 -c "print($BYTES / 1e6 / $sha)")"
printf '  %-44s %8s s  %7.0f MB/s\n' "cp + sha256sum + sync" "$byhand" "$(python3 -c "print($BYTES / 1e6 / $byhand)")"
printf '  %-44s %8s s  %7.0f MB/s\n' "cellctl image import (copy, hash, verify, mount)" "$imp" "$(python3 -c "print($BYTES / 1e6 / $imp)")"
echo "  ratio import / sha256sum: $(ratio "$imp" "$sha")   import / (cp + sha256sum + sync): $(ratio "$imp" "$byhand")"

# --- memory: two VPs on one shared image vs two private copies ---
bash "$SRC/scripts/mkrootfs.sh" "$T/deb" >/dev/null
head -c $((DATA_MB * 1048576)) /dev/urandom >"$T/deb/data"
cp -a "$T/deb" "$T/deb2" && echo copy >"$T/deb2/etc/cells-copy"
img deb 1 "$T/deb"
img debcopy 1 "$T/deb2"
cellctl image import "$T/deb-1.img" "$T/deb-1.img.bundle" >/dev/null
cellctl image import "$T/debcopy-1.img" "$T/debcopy-1.img.bundle" >/dev/null
for v in work personal; do cellctl vp create "$v" --image "$T/deb" >/dev/null; done
echo 1 >"$T/pv"
policy() { # WORK_IMAGE PERSONAL_IMAGE (measure runs in a subshell: the version lives in a file)
	local pv=$(($(cat "$T/pv") + 1))
	echo "$pv" >"$T/pv"
	cells-mdm policy example --version "$pv" --device "$ID" >"$T/p.json"
	python3 - "$T/p.json" "$1" "$2" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
for r in p["vps"]:
    r["image"] = sys.argv[2] if r["name"] == "work" else sys.argv[3]
json.dump(p, open(sys.argv[1], "w"))
PY
	cells-mdm policy sign "$T/p.json" -o "$T/p.bin" >/dev/null
	cellctl policy apply "$T/p.bin" >/dev/null
}
cache_of() { # VP: page cache charged to its memory cgroup (bytes; v1 "cache", v2 "file")
	local cg d
	cg=$(cellctl --json vp status "$1" | jget 'd["cgroup"]')
	d=$(find /sys/fs/cgroup/memory /sys/fs/cgroup/unified /sys/fs/cgroup -maxdepth 5 -type d -name "$cg" 2>/dev/null | head -1)
	awk '$1 == "cache" || $1 == "file" {print $2; exit}' "$d/memory.stat" 2>/dev/null || echo 0
}
host_cached() { awk '$1 == "Cached:" {print $2 * 1024}' /proc/meminfo; }
readall='find / -xdev -type f -exec cat {} + >/dev/null 2>&1; true'
measure() { # WORK_IMAGE PERSONAL_IMAGE -> "vp_cache host_growth"
	cellctl vp stop work >/dev/null 2>&1 || true
	cellctl vp stop personal >/dev/null 2>&1 || true
	policy "$1" "$2"
	cellctl vp start work >/dev/null
	cellctl vp start personal >/dev/null
	sync
	echo 3 >/proc/sys/vm/drop_caches
	local h0 h1 c
	h0=$(host_cached)
	cellctl vp exec work -- /bin/sh -c "$readall"
	cellctl vp exec personal -- /bin/sh -c "$readall"
	h1=$(host_cached)
	c=$(($(cache_of work) + $(cache_of personal)))
	echo "$c $((h1 - h0))"
}
measure deb@1 deb@1 >"$T/m.shared"
measure deb@1 debcopy@1 >"$T/m.private"
read -r sc sh <"$T/m.shared"
read -r pc ph <"$T/m.private"
mb() { python3 -c "import sys; print('%.1f' % (int(sys.argv[1]) / 1048576))" "$1"; }
echo "memory: two VPs reading every file of a Debian rootfs + ${DATA_MB} MB ($(du -sh "$T/deb" | cut -f1) in all)"
printf '  %-34s %10s %14s\n' "" "VPs' cache" "host Cached +"
printf '  %-34s %7s MB %11s MB\n' "one shared image (deb@1 twice)" "$(mb "$sc")" "$(mb "$sh")"
printf '  %-34s %7s MB %11s MB\n' "two private copies (deb@1, debcopy@1)" "$(mb "$pc")" "$(mb "$ph")"
echo "  ratio private / shared: VPs' cache $(ratio "$pc" "$sc"), host Cached $(ratio "$ph" "$sh")"
cellctl vp stop work >/dev/null 2>&1 || true
cellctl vp stop personal >/dev/null 2>&1 || true

# --- deliver: cells-mdm image push -> cellsd (offer, HTTPS GET by cellsd-net, verified)
# vs curl of the same file from the same endpoint with a device certificate ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cells-mdm ca-cert >"$T/ca.pem"
cells-mdm serve --listen "localhost:$PORT" >"$T/mdm.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
cellctl enroll "wss://localhost:$PORT" "$(cells-mdm enroll-token | tail -1)" --ca "$T/ca.pem" >/dev/null
for _ in $(seq 1 100); do cellctl --json mgmt status | jget 'd["connected"]' | grep -q True && break; sleep 0.1; done
# curl's identity: a device certificate of the MDM's CA, enrolled in the MDM's registry
CID=$(PYTHONPATH="$SRC/tests/integration" python3 "$SRC/tests/integration/ws_client.py" mkdev "$CELLS_MDM_STATE_DIR" "$T/curl")
sqlite3 "$CELLS_MDM_STATE_DIR/mdm.db" "insert into devices(id, cert_serial, enrolled_at) values('$CID', 'bench', 0)"
mkdir -p "$T/bigd"
head -c $((SIZE_MB * 1048576)) /dev/urandom >"$T/bigd/data"
img bigd 1 "$T/bigd"
S=$(sha256sum "$T/bigd-1.img" | cut -d' ' -f1)
BYTES=$(stat -c %s "$T/bigd-1.img")
cells-mdm image push --all "$T/bigd-1.img" >/dev/null
for _ in $(seq 1 3000); do
	grep -q "image bigd@1 verified\|image:bigd@1: .*fail" "$T/cellsd.log" && break
	sleep 0.02
done
grep -q "image bigd@1 verified" "$T/cellsd.log" || { echo "bench_image: the device's download failed" >&2; tail -5 "$T/cellsd.log" >&2; exit 1; }
# the device's times from its log: offer accepted, GET sent, file verified (SHA-256 and
# size, fsync'd, renamed)
read -r offer dev < <(python3 - "$T/cellsd.log" <<'PY'
import re, sys
t = {}
for l in open(sys.argv[1]):
    m = re.match(r"(\d+):(\d+):(\d+\.\d+) ", l)
    if not m:
        continue
    s = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    if "image bigd@1 (" in l and "accepted" in l: t["a"] = s
    if "image:bigd@1: downloading from byte 0" in l: t["g"] = s
    if "image bigd@1 verified" in l: t["v"] = s
print("%.3f %.3f" % (t["v"] - t["a"], t["v"] - t["g"]))
PY
)
best=
for _ in 1 2 3; do
	c=$(curl -s -o "$T/curl.out" -w '%{time_total}' --cacert "$T/ca.pem" --cert "$T/curl.pem" --key "$T/curl.key" "https://localhost:$PORT/v1/images/$S")
	cmp -s "$T/curl.out" "$T/bigd-1.img" || { echo "bench_image: curl got other bytes" >&2; exit 1; }
	[ -z "$best" ] || [ "$(python3 -c "print(int($c < $best))")" = 1 ] && best=$c
done
rm -f "$T/curl.out"
echo "deliver: image of $BYTES bytes over loopback from cells-mdm serve"
printf '  %-44s %8s s  %7.0f MB/s\n' "curl (best of 3, to a file)" "$best" "$(python3 -c "print($BYTES / 1e6 / $best)")"
printf '  %-44s %8s s  %7.0f MB/s\n' "device: GET -> verified (SHA-256 as it writes)" "$dev" "$(python3 -c "print($BYTES / 1e6 / $dev)")"
printf '  %-44s %8s s\n' "device: offer accepted -> verified" "$offer"
echo "  ratio device / curl throughput: $(ratio "$best" "$dev")"
