#!/usr/bin/env bash
# Audit uploads over the management channel: the device's records reach the MDM as
# AuditBatch envelopes (details per the policy), `cells-mdm audit` shows them and
# `cells-mdm audit verify` verifies them; `cells-mdm audit request` triggers an upload,
# so do AUDIT_UPLOAD_THRESHOLD new records and the policy's period; the device's cursor
# advances only on the server's Ack (the server dies after storing, before acking:
# nothing is lost or stored twice); a batch with a tampered record is refused with a
# reason, audited on the device, not stored, and the server stays up.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
command -v sqlite3 >/dev/null || skip "needs the sqlite3 shell"
setup_enrolled || { cat "$T/cellsd.log" "$T/mdm.log"; exit 1; }
ok "enrolled and connected"
MDB="$CELLS_MDM_STATE_DIR/audit.db"

up() { cellctl --json mgmt status | json_get "d['audit_upload']['$1']"; }
acked_at_least() { [ "$(up acked_seq)" -ge "$1" ]; }
head_seq() { sqlite3 "$CELLS_STATE/audit.db" "select max(seq) from audit"; }
# server_events N / device_events N: "seq event outcome vp" lines of records 1..N
server_events() {
	cells-mdm --json audit "$DEV" --limit 100000 |
		json_get "'\n'.join('%d %s %s %s' % (r['seq'], r['event'], r['outcome'], r['vp']) for r in d['records'] if r['seq'] <= $1)"
}
device_events() { sqlite3 -separator ' ' "$CELLS_STATE/audit.db" "select seq, event, outcome, vp from audit where seq <= $1 order by seq"; }
server_count() { sqlite3 "$MDB" "select count(*) from mdm_audit_record where device_id='$DEV' and seq <= $1"; }
server_max() { sqlite3 "$MDB" "select coalesce(max(seq),0) from mdm_audit_record where device_id='$DEV'"; }
# policy VERSION INTERVAL: push the example policy with that upload period, wait for it
policy() {
	cells-mdm policy example --device "$DEV" --version "$1" |
		python3 -c "import json,sys; p=json.load(sys.stdin); p['audit_upload_interval_s']=$2; print(json.dumps(p))" >"$T/p$1.json"
	local id
	id=$(cells-mdm --json policy push "$DEV" "$T/p$1.json" | json_get "d[0]['id']")
	check "policy v$1 (upload every $2 s) acknowledged" wait_for 20 entry_is "$id" acknowledged
}
# audited requests of the employee/admin: refused VP starts (VP records) and exports
# (device-wide records)
make_records() {
	for i in $(seq 1 "$1"); do
		cellctl vp start "nosuch$i" >/dev/null 2>&1
		cellctl audit export "$T/x.bundle" >/dev/null
	done
}

# --- the connect upload: the enrollment's records are on the server
H0=$(head_seq)
check "after connecting, the records so far are uploaded and acknowledged" wait_for 20 acked_at_least "$H0"

# --- no period, no threshold: nothing moves until `cells-mdm audit request`
policy 2 3600
make_records 3
H1=$(head_seq)
sleep 3
check "without a trigger the new records are not uploaded (cursor below head)" bash -c "[ $(up acked_seq) -lt $H1 ]"
RQ=$(cells-mdm --json audit request "$DEV" | json_get "d['id']")
check "cells-mdm audit request: acknowledged by the device" wait_for 20 entry_is "$RQ" acknowledged
check "cells-mdm audit request: the records reach the server" wait_for 20 acked_at_least "$H1"
A=$(up acked_seq)
check_eq "the server holds exactly the device's records 1..$A" "$(device_events "$A")" "$(server_events "$A")"
check_eq "count on the server = count on the device for 1..$A" "$(sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where seq <= $A")" "$(server_count "$A")"
check "cells-mdm audit verify DEVICE succeeds" cells-mdm audit verify "$DEV"
NS=$(cells-mdm --json audit "$DEV" --vp nosuch1 --limit 10 | json_get "[r['details'] for r in d['records']][0]")
check_eq "a VP without an upload rule: details withheld" "(withheld)" "$NS"
check "device-wide records: details uploaded" bash -c "cells-mdm --json audit $DEV --type mgmt.enrolled | grep -q 'url'"
check_fails "audit request for an unknown device is refused" "no such enrolled device" cells-mdm audit request 0123456789abcdef0123456789abcdef
check_fails "audit request with a bad --since is refused" "sequence number" cells-mdm audit request "$DEV" --since -1

# --- the threshold: AUDIT_UPLOAD_THRESHOLD (100) new records upload without a period
B=$(up acked_seq)
"$CELLS_BUILD/tests/integration/audit_tool" bulk "$CELLS_STATE/audit.db" 105 >/dev/null
check "105 new records are uploaded without waiting for the period" wait_for 20 acked_at_least $((B + 100))

# --- the period: policy v3 uploads every 2 s
policy 3 2
make_records 1
H2=$(head_seq)
check "with a 2 s period new records arrive by themselves" wait_for 15 acked_at_least "$H2"

# --- the cursor advances only on the Ack: the server dies after storing, before acking
stop_mdm
make_records 2
A0=$(up acked_seq)
H3=$(head_seq)
MDM_ARGS=(--test-crash-at mdm-audit-before-ack) # a test build's crash point (testhook.h)
start_mdm
MDM_ARGS=()
check "the server stored the batch and died before acking" wait_for 20 bash -c "! kill -0 $MDM_PID 2>/dev/null"
check "the server holds the batch" bash -c "[ $(server_max) -ge $H3 ]"
check_eq "the device's cursor did not advance without the Ack" "$A0" "$(up acked_seq)"
check "the batch is still in flight in the device's outbox" bash -c "[ -n \"\$(cellctl --json mgmt status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"audit_upload\"][\"inflight\"])')\" ]"
start_mdm
check "after the restart the batch is acknowledged" wait_for 20 acked_at_least "$H3"
A=$(up acked_seq)
check_eq "nothing lost, nothing twice: the server holds exactly 1..$A" "$(device_events "$A")" "$(server_events "$A")"
check_eq "one row per record on the server" "$A" "$(server_count "$A")"
check "cells-mdm audit verify DEVICE still succeeds" cells-mdm audit verify "$DEV"

# --- a tampered record: refused, audited, not stored, the server stays up
stop_mdm
make_records 2
A1=$(up acked_seq)
M1=$(server_max)
T1=$(sqlite3 "$CELLS_STATE/audit.db" "select min(seq) from audit where seq > $A1 and event='audit.exported'")
sqlite3 "$CELLS_STATE/audit.db" "update audit set details='{\"forged\":1}' where seq=$T1"
REF0=$(audit_count audit.upload.refused)
start_mdm
check "the tampered batch is refused (the device saw the Error)" wait_for 20 bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='audit.upload.refused'\") -gt $REF0 ]"
check "the refusal is one line in the server log naming the record" grep -qE "audit batch .* refused.*record $T1" "$T/mdm.log"
check "the refusal's reason is in the device's audit record" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select details from audit where event='audit.upload.refused'\" | grep -q 'record $T1'"
check_eq "nothing of the tampered batch was stored" "$M1" "$(server_max)"
check_eq "the device's cursor did not move" "$A1" "$(up acked_seq)"
check "the server stays up" bash -c "kill -0 $MDM_PID && cells-mdm devices >/dev/null"
check "the device stays connected" connected
check_fails "cells-mdm audit verify DEVICE reports the refused batch" "BROKEN|alert" cells-mdm audit verify "$DEV"
check "clean shutdown" stop_cellsd
finish
