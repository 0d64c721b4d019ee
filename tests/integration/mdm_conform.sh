#!/usr/bin/env bash
# cells-mdm against an independent client written from docs/PROTOCOL.md (ws_client.py:
# TLS, websocket framing and protobuf by hand): error codes and close codes (§1-§3, §8),
# pre-authentication bounds (§3, §16), results for another device's queue entry (§17),
# a refused wipe receipt followed by the genuine one (§14), and signed LockVp commands
# (`cells-mdm lock/unlock`). Devices are test-made identities: an Ed25519 client
# certificate issued with the MDM's CA and a row in its registry.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
M=$CELLS_MDM_STATE_DIR
PY=$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
"$PY" -c 'import cryptography' 2>/dev/null || skip "python3-cryptography missing (scripts/deps.sh)"
WS="$CELLS_SRC/tests/integration/ws_client.py"
ws() { "$PY" "$WS" "$@"; }
PORT=$(free_port)
cells-mdm init >/dev/null || exit 1
cells-mdm ca-cert >"$T/ca.pem"
CA=$T/ca.pem

# enroll_row DEVICE PREFIX: the registry row enrollment would have made (and the device's
# identity key where the registry keeps one)
enroll_row() {
	sqlite3 "$M/mdm.db" "insert into devices(id, cert_serial, enrolled_at) values('$1', 'test', strftime('%s','now'))" || return 1
	local col
	col=$(sqlite3 "$M/mdm.db" "select name from pragma_table_info('devices') where name like '%identity%' or name like '%device_key%' limit 1")
	[ -z "$col" ] || sqlite3 "$M/mdm.db" "update devices set $col=x'$(cat "$2.raw")' where id='$1'"
}
A=$(ws mkdev "$M" "$T/a") && B=$(ws mkdev "$M" "$T/b") || exit 1
enroll_row "$A" "$T/a" && enroll_row "$B" "$T/b" || exit 1
start_mdm || exit 1
ok "cells-mdm serving, two test devices registered"

# --- §2/§7/§8: version and body errors; §3: size; §1: text frames
check "version 2 -> Error{2}; unknown body -> Error{2}; garbage -> Error{1}" ws version2 "$PORT" "$CA" "$T/b"
check "a message over 1 MiB -> Error{3}, close 1009" ws oversize "$PORT" "$CA" "$T/b"
check "a text frame -> close frame 1003" ws text "$PORT" "$CA" "$T/b"
check "the server logged the refusals in one line each" bash -c "grep -q 'Error 2' '$T/mdm.log' && grep -q 'message over the limit' '$T/mdm.log' && grep -q 'text frame' '$T/mdm.log'"

# --- pre-authentication bounds
check "/v1/enroll: 1 MiB announced -> refused at the header (Error{3}, 1009)" ws enroll-limit "$PORT" "$CA"
check "before the upgrade: 1 MiB of header bytes -> connection closed" ws header-limit "$PORT" "$CA"
# RSS is measured without ASan's quarantine (which keeps every freed block resident)
stop_mdm
ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0" start_mdm || exit 1
ws rss "$PORT" "$CA" "$MDM_PID" 8192 >"$T/rss.out" 2>&1
RC=$?
sed 's/^/    /' "$T/rss.out"
check_eq "server RSS grows < 8 MiB with 50 concurrent 1 MiB pre-auth connections" 0 "$RC"
stop_mdm
start_mdm || exit 1
check "the server still serves a device afterwards" ws version2 "$PORT" "$CA" "$T/b"

# --- §17: a result for another device's queue entry
EA=$(cells-mdm --json wipe "$A" work | json_get "d['id']")
CID=$("$PY" - "$M/mdm.db" "$EA" <<'PY'
import sqlite3, sys
sys.path.insert(0, __import__("os").environ["CELLS_SRC"] + "/tests/integration")
from ws_client import parse, one
b = sqlite3.connect(sys.argv[1]).execute("select blob from queue where id=?", (sys.argv[2],)).fetchone()[0]
print(one(parse(one(parse(b), 2)), 1).decode())
PY
)
check_eq "device A's wipe is queued" queued "$(entry_state "$EA")"
check "device B's result for A's entry -> Error{8}" ws foreign "$PORT" "$CA" "$T/b" "$EA" "$CID"
check_eq "A's entry is unchanged" queued "$(entry_state "$EA")"
check_eq "no receipt was stored" 0 "$(sqlite3 "$M/mdm.db" "select count(*) from receipts")"
check "the refusal is logged as refused, not acknowledged" bash -c "grep -q 'refused: no queue entry $EA' '$T/mdm.log' && ! grep -q '$EA acknowledged' '$T/mdm.log'"
cells-mdm command cancel "$EA" >/dev/null

# --- §14: a refused receipt, then the genuine one
EB=$(cells-mdm --json wipe "$B" work | json_get "d['id']")
CONFORM_OUT=$T/entry CONFORM_PAUSE=$T/go ws receipt "$PORT" "$CA" "$T/b" >"$T/receipt.out" 2>&1 &
RP=$!
wait_for 20 test -s "$T/entry"
check_eq "after the forged receipt: the entry is failed" failed "$(entry_state "$EB")"
check "...with the reason" bash -c "cells-mdm --json command list | grep -q 'receipt refused'"
check_eq "...and the receipt is kept unverified" "0" "$(sqlite3 "$M/mdm.db" "select verified from receipts where device='$B'")"
touch "$T/go"
wait "$RP"
check_eq "the genuine receipt is acknowledged" 0 "$?"
sed 's/^/    /' "$T/receipt.out"
check_eq "the entry is acknowledged" acknowledged "$(entry_state "$EB")"
check_eq "the stored receipt is verified" "1" "$(sqlite3 "$M/mdm.db" "select verified from receipts where device='$B'")"
check_eq "the verified receipt is listed" True "$(cells-mdm --json receipts "$B" | json_get "d[0]['verified']")"

# --- issue 18: cells-mdm lock/unlock DEVICE VP
SPUB=$("$PY" -c 'import sys; from cryptography.hazmat.primitives import serialization as s
k = s.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
print(k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex())' "$M/signing.key")
check "lock --help" bash -c "cells-mdm lock --help | grep -q 'DEVICE VP'"
check_fails "lock needs DEVICE VP" "usage" cells-mdm lock "$B"
check_fails "lock of an unknown device is refused" "no such enrolled device" cells-mdm lock 0123456789abcdef0123456789abcdef work
check_fails "lock of a bad VP name is refused" "." cells-mdm lock "$B" "Bad/Name"
L=$(cells-mdm --json lock "$B" work)
check_eq "lock --json: queued, what" "queued lock work" "$(echo "$L" | json_get "d['state'] + ' ' + d['what']")"
check "the device receives a signed LockVp{work, lock}" ws lock "$PORT" "$CA" "$T/b" "$SPUB" work 0
check "unlock is queued" cells-mdm unlock "$B" work
check "the device receives a signed LockVp{work, unlock}" ws lock "$PORT" "$CA" "$T/b" "$SPUB" work 1
check_eq "both are acknowledged" "acknowledged acknowledged" "$(cells-mdm --json command list "$B" | json_get "' '.join(e['state'] for e in d if e['what'].split()[0] in ('lock','unlock'))")"
# a lock queued while an older unlock waits replaces it (the admin's last word)
U=$(cells-mdm --json unlock "$B" work | json_get "d['id']")
L2=$(cells-mdm --json lock "$B" work | json_get "d['id']")
check_eq "a newer lock replaces a queued unlock" "cancelled queued" "$(entry_state "$U") $(entry_state "$L2")"
finish
