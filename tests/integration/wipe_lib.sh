# wipe_lib.sh - helpers shared by the wipe_*.sh tests (sourced after tests/lib.sh).
# Needs root, loop devices and mkfs.ext4; uses a small image for the encrypted area.
need_root
[ -e /dev/loop-control ] || skip "no /dev/loop-control"
command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 missing (e2fsprogs)"
export CELLS_WIPE_STORAGE=image CELLS_WIPE_IMAGE_MB=${CELLS_WIPE_IMAGE_MB:-256}
WIPE_MOUNTS=()
# the system python (a version-manager shim costs a second per call)
PY=$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)

# Unmount every encrypted area a test mounted before lib.sh removes $T.
wipe_cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	PIDS=()
	for m in "${WIPE_MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	cleanup
}
trap wipe_cleanup EXIT

# wipe_use_instance NAME: point CELLS_STATE/CELLS_RUN_DIR at a fresh instance.
wipe_use_instance() {
	export CELLS_STATE="$T/$1/state" CELLS_RUN_DIR="$T/$1/run"
	mkdir -p "$CELLS_STATE" "$CELLS_RUN_DIR"
	WIPE_MOUNTS+=("$CELLS_RUN_DIR/wipe/mnt")
}

wipe_image() { echo "$CELLS_STATE/wipe/vpdata.img"; }

# json_get FILE PYEXPR: evaluate a Python expression over the JSON document `j`.
json_get() { "$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# file_has_hex FILE HEX: does FILE contain these bytes?
file_has_hex() {
	"$PY" -c "import sys; sys.exit(0 if bytes.fromhex(sys.argv[2]) in open(sys.argv[1],'rb').read() else 1)" "$1" "$2"
}

# slot_wrapped VP: hex of VP's wrapped key in STATE/wipe.slots (agent/vp/wipe_key.h layout:
# 160-byte slots, used(1) gen(8) name(33) key id(16) wrapped(93)); empty when none.
slot_wrapped() {
	"$PY" - "$CELLS_STATE/wipe.slots" "$1" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
for i in range(0, len(b), 160):
    s = b[i:i + 160]
    if s[0] == 1 and s[9:42].rstrip(b"\0").decode() == sys.argv[2]:
        print(s[58:151].hex())
PY
}

# kek_hex: hex of the current KEK in STATE/wipe.kek (two entries: gen(8 LE) || key(32)).
kek_hex() {
	"$PY" - "$CELLS_STATE/wipe.kek" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
e = [b[0:40], b[40:80]]
g = [int.from_bytes(x[:8], "little") for x in e]
print(e[0 if g[0] >= g[1] else 1][8:].hex())
PY
}

# db_files_have_hex HEX: the bytes are in the state DB or its WAL
db_files_have_hex() {
	local f
	for f in "$CELLS_STATE/state.db" "$CELLS_STATE/state.db-wal" "$CELLS_STATE/state.db-journal"; do
		[ -f "$f" ] && file_has_hex "$f" "$1" && return 0
	done
	return 1
}

# verify_receipt STATUS_JSON [OP_INDEX]: the op's signed receipt verifies with the device
# public key over "cells.v1.wipe-receipt" || 0x00 || payload (docs/PROTOCOL.md).
verify_receipt() {
	local js=$1 i=${2:-0} d="$T/rcpt.$$"
	mkdir -p "$d"
	openssl pkey -in "$CELLS_STATE/device.key" -pubout -out "$d/pub.pem" 2>/dev/null || return 1
	"$PY" - "$js" "$i" "$d" <<'PY' || return 1
import json, sys
j = json.load(open(sys.argv[1])); op = j["ops"][int(sys.argv[2])]; d = sys.argv[3]
open(d + "/msg", "wb").write(b"cells.v1.wipe-receipt\0" + bytes.fromhex(op["receipt_payload"]))
open(d + "/sig", "wb").write(bytes.fromhex(op["receipt_signature"]))
PY
	openssl pkeyutl -verify -pubin -inkey "$d/pub.pem" -rawin -in "$d/msg" -sigfile "$d/sig" >/dev/null 2>&1
}

# tamper_receipt_fails STATUS_JSON: a one-bit change of the payload must not verify.
tamper_receipt_fails() {
	local d="$T/rcpt.$$"
	verify_receipt "$1" || return 1
	"$PY" - "$d/msg" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 1; open(p, "wb").write(b)
PY
	! openssl pkeyutl -verify -pubin -inkey "$d/pub.pem" -rawin -in "$d/msg" -sigfile "$d/sig" >/dev/null 2>&1
}

audit_count() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where $1"; }

# check_not DESC CMD...: passes when CMD fails (for predicates, no output expected)
check_not() { local d=$1; shift; if "$@" >"$T/last.out" 2>&1; then not_ok "$d (succeeded)"; sed 's/^/    /' "$T/last.out"; else ok "$d"; fi; }

# wipe_policy: pin a fresh MDM root, apply its example policy (work: encrypted, password
# required, limit 3 failed attempts then wipe) and set the work VP password ($T/pw).
wipe_policy() {
	local m="$CELLS_STATE/../mdm"
	cells-mdm --state-dir "$m" init >/dev/null || return 1
	cells-mdm --state-dir "$m" export-root >"$m.root.pem" || return 1
	cellctl trust pin "$m.root.pem" >/dev/null || return 1
	cells-mdm --state-dir "$m" policy example --device "$(cellctl device id)" |
		sed 's/"max_failed_attempts": 10/"max_failed_attempts": 3/' >"$m.json"
	cells-mdm --state-dir "$m" policy sign "$m.json" -o "$m.bin" >/dev/null || return 1
	cellctl policy apply "$m.bin" >/dev/null || return 1
	echo "work-password-1" >"$T/pw"
	cellctl vp password work --new-password-file "$T/pw" >/dev/null
}
