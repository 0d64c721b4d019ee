#!/usr/bin/env bash
# bench_wipe.sh - wipe time of the work VP (crypto-erase: remove the fscrypt key, destroy
# the wrapped key, rotate the KEK (rotate_s: that step alone), delete, FITRIM) for
# 100 MiB and 1 GiB of data, next to a plain
# one-pass overwrite (shred -n1 -u: random pass, fsync, unlink) of the same amount of
# data on the same loop-mounted image, in the same run. Prints seconds and ratios.
# Usage: tests/bench/bench_wipe.sh [BUILD_DIR] [SIZES_MIB...]   (root; default build/)
# Not part of ctest (a benchmark): run it by hand.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build}
shift || true
SIZES=${*:-100 1024}
[ "$(id -u)" = 0 ] || { echo "bench_wipe: needs root" >&2; exit 1; }
export PATH="$BUILD/agent:$BUILD/server-mock:$PATH"
T=$(mktemp -d /tmp/cells-bench-wipe.XXXXXX)
PID=
finish() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	umount "$T/run/wipe/mnt" 2>/dev/null || umount -l "$T/run/wipe/mnt" 2>/dev/null || true
	rm -rf "$T"
}
trap finish EXIT
export CELLS_RUN_DIR="$T/run"
mkdir -p "$T/state" "$T/run"
cellsd --state-dir "$T/state" --run-dir "$T/run" --wipe-storage image --wipe-image-mb 4096 --log-level warn >"$T/cellsd.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
# `cellctl vp wipe` needs the VP's password: a signed policy naming work, and a password
export CELLS_MDM_STATE_DIR="$T/mdm"
cells-mdm init >/dev/null
cells-mdm export-root >"$T/root.pem"
cellctl trust pin "$T/root.pem" >/dev/null
cells-mdm policy example --device "$(cellctl device id)" >"$T/p.json"
cells-mdm policy sign "$T/p.json" -o "$T/p.bin" >/dev/null
cellctl policy apply "$T/p.bin" >/dev/null
echo "bench-password-1" >"$T/pw"
cellctl vp password work --new-password-file "$T/pw" >/dev/null
now() { date +%s.%N; }

# fill DIR MIB: MIB of random data in 64 MiB files, flushed to the image
fill() {
	local dir=$1 left=$2 i=0 n
	mkdir -p "$dir"
	while [ "$left" -gt 0 ]; do
		n=$((left < 64 ? left : 64))
		head -c $((n << 20)) /dev/urandom >"$dir/f$i"
		left=$((left - n)); i=$((i + 1))
	done
	sync
}

# key_gone_s: from the wipe request to the key being absent (audit record times)
key_gone() {
	sqlite3 "$T/state/audit.db" "select (max(case when details like '%\"remove-key\"%' then time_us end) - max(case when event='wipe.requested' then time_us end)) / 1e6 from audit where event in ('wipe.requested','wipe.step')"
}
# rotate_s: the rotate-kek step alone (from the destroy-wrapped-key record to its own)
rotate_s() {
	sqlite3 "$T/state/audit.db" "select coalesce((max(case when details like '%\"rotate-kek\"%' then time_us end) - max(case when details like '%\"destroy-wrapped-key\"%' then time_us end)) / 1e6, 0) from audit where event='wipe.step'"
}
printf '%-9s %11s %9s %14s %14s %10s\n' "data" "key_gone_s" "rotate_s" "crypto-erase_s" "overwrite_s" "ratio"
for mib in $SIZES; do
	W=$(cellctl wipe prepare work)
	fill "$W/upper" "$mib"
	t0=$(now)
	cellctl vp wipe work --password-file "$T/pw" >/dev/null
	t1=$(now)
	kg=$(key_gone)
	rs=$(rotate_s)
	# the peer: the same data in a plain directory of the same image, overwritten once
	P="$T/run/wipe/mnt/plain-peer"
	fill "$P" "$mib"
	t2=$(now)
	find "$P" -type f -exec shred -n 1 -u {} +
	sync
	t3=$(now)
	rm -rf "$P"
	awk -v m="$mib" -v k="$kg" -v r="$rs" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" \
		'BEGIN { printf "%-9s %11.3f %9.3f %14.3f %14.3f %9.1fx\n", m " MiB", k, r, b - a, d - c, (d - c) / (b - a) }'
done
cellctl --json wipe status work | grep -q '"kernel_key_status":"absent"' && echo "(every wipe: key absent, receipt signed)"
