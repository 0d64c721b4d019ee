#!/usr/bin/env bash
# Management identity and trust against a compromised network process (issue 13 items
# 1, 3, 7, 8): cellsd runs tests/integration/relay_net.py as its network process; it
# relays the real cellsd-net and tampers with what passes. The enrollment token names
# the MDM's trust root by digest: a swapped root is refused, nothing is pinned. The key
# the network process holds is the TLS key, not the identity key: what it signs (audit
# checkpoints, wipe receipts) the MDM refuses. Audit-upload acknowledgements are signed
# by the MDM: a bare or forged Ack moves no cursor. All checked from outside the agent
# (state DB, MDM database and log, key files).
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
PORT=$(free_port)
URL="wss://localhost:$PORT"
R="$T/relay"
mkdir -p "$R" && chmod 777 "$R" && chmod 711 "$T"
# the relay runs as cellsd-net's uid with an empty environment: its settings are written
# into its own copy, and the real cellsd-net is copied where that uid can run it (the
# build may live under a 0700 directory)
cp "$CELLS_BUILD/agent/cellsd-net" "$R/cellsd-net" && chmod 755 "$R/cellsd-net"
sed -e "s|@RELAY_DIR@|$R|" -e "s|@RELAY_REAL@|$R/cellsd-net|" \
	"$CELLS_SRC/tests/integration/relay_net.py" >"$R/relay_net.py"
chmod 755 "$R/relay_net.py"
install -m 644 "$CELLS_SRC/tests/integration/pbwire.py" "$R/pbwire.py"
mode() { echo "$1" >"$R/mode"; }
sdb() { sqlite3 "$CELLS_STATE/state.db" "$1"; }
mdb() { mdm_sql "$1"; }
raw_pub() { openssl pkey -in "$1" -pubout -outform DER 2>/dev/null | tail -c 32 | od -An -tx1 | tr -d ' \n'; }
acked() { sdb "select acked_seq from audit_upload"; }
export -f sdb acked

cells-mdm init >/dev/null || exit 1
cells-mdm ca-cert >"$T/ca.pem"
start_mdm || exit 1
mode pass
start_cellsd --net-helper "$R/relay_net.py" || exit 1
DEV=$(cellctl device id)
echo "$DEV" >"$R/device"
check "the relay runs as the network process" wait_for 10 test -s "$R/netkey"

# --- 13.1: the token carries the root's digest; the device pins only that root
TOKEN=$(cells-mdm enroll-token --ttl 600 | tail -1)
check "the token is SECRET.ROOTDIGEST" grep -qE '^[0-9a-f]{48}\.[0-9a-f]{64}$' <<<"$TOKEN"
check_fails "a token without a digest is refused by the device" "no trust-root digest" \
	cellctl enroll "$URL" "${TOKEN%%.*}" --ca "$T/ca.pem"
check_fails "a token with a malformed digest is refused" "not 64 lowercase hex" \
	cellctl enroll "$URL" "${TOKEN%%.*}.$(printf 'A%.0s' $(seq 64))" --ca "$T/ca.pem"
check_fails "a token whose digest was changed is refused" "refused|unknown|not the one" \
	cellctl enroll "$URL" "${TOKEN%%.*}.$(printf '0%.0s' $(seq 64))" --ca "$T/ca.pem"
mode swap-root
TOKEN=$(cells-mdm enroll-token --ttl 600 | tail -1)
check_fails "an EnrollResponse with a swapped trust root is refused" "trust root is not the one the token names" \
	cellctl enroll "$URL" "$TOKEN" --ca "$T/ca.pem"
check "...the relay did swap it" grep -q "swapped the trust root" "$R/log"
check_eq "...nothing pinned (state DB)" 0 "$(sdb 'select count(*) from policy_root')"
check_eq "...no enrollment stored" 0 "$(sdb 'select count(*) from mgmt_enrollment')"
check_eq "...no delegation taken" 0 "$(sdb 'select count(*) from policy_delegation')"
check_eq "...audited as a refused mgmt.enroll with the reason" 1 \
	"$(audit_count mgmt.enroll "outcome='refused' and details like '%trust root is not the one%'")"
check_eq "...no trust.pin audited" 0 "$(audit_count trust.pin)"

# --- 13.3: a genuine enrollment: identity key bound to a separate TLS key
mode pass
TOKEN=$(cells-mdm enroll-token --ttl 600 | tail -1)
check "enroll through the relay (nothing tampered)" cellctl enroll "$URL" "$TOKEN" --ca "$T/ca.pem"
check "connected" wait_for 20 connected
check_eq "the root pinned is the MDM's" 1 "$(sdb 'select count(*) from policy_root')"
ID_PUB=$(raw_pub "$CELLS_STATE/device.key")
TLS_PUB=$(raw_pub "$CELLS_STATE/device-tls.key")
check_eq "device-tls.key is mode 0600" 600 "$(stat -c %a "$CELLS_STATE/device-tls.key")"
check "the TLS key is not the identity key" test "$ID_PUB" != "$TLS_PUB"
check_eq "the network process holds the TLS key, not the identity key" "$TLS_PUB" "$(tail -1 "$R/netkey")"
sdb "select cert_pem from mgmt_enrollment" >"$T/dev.pem"
check "the certificate's CN is the device id (hash of the identity key)" \
	bash -c "openssl x509 -in '$T/dev.pem' -noout -subject | grep -q 'CN *= *$DEV'"
check_eq "the certificate carries the TLS key" "$TLS_PUB" \
	"$(openssl x509 -in "$T/dev.pem" -noout -pubkey | openssl pkey -pubin -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n')"
check_eq "the MDM stored the identity key in its registry" "$ID_PUB" \
	"$(mdb "select $(mdm_hex identity_key) from device_keys where id='$DEV'")"
check_eq "...and the TLS key" "$TLS_PUB" "$(mdb "select $(mdm_hex tls_key) from device_keys where id='$DEV'")"

# --- 13.3: audit acknowledgements are signed by the MDM
check "the first upload is acknowledged with a signed ack: the cursor moves" \
	wait_for 30 bash -c '[ "$(acked)" -gt 0 ]'
mode bare-ack
: >"$R/log"
C0=$(acked)
check "request an upload (signed command)" cells-mdm audit request "$DEV"
check "the relay stripped the signed ack" wait_for 30 grep -q "stripped the audit_ack" "$R/log"
sleep 1
check_eq "a bare Ack moves no cursor (state DB)" "$C0" "$(acked)"
check "...refused and audited" wait_for 5 bash -c "[ \$(audit_count audit.upload.ack_refused) -ge 1 ]"
check_eq "...the batch stays queued" 1 "$(sdb "select count(*) from mgmt_outbox o join audit_upload u on o.message_id=u.inflight_id")"
mode forged-ack
kill -9 "$(mgmt_field net_pid)" # reconnect: the batch is sent again
check "the relay forged the ack's signature" wait_for 40 grep -q "forged the audit_ack" "$R/log"
sleep 1
check_eq "a forged Ack moves no cursor" "$C0" "$(acked)"
check "...audited with the signature failure" wait_for 5 bash -c \
	"[ \$(audit_count audit.upload.ack_refused \"details like '%signature%'\") -ge 1 ]"
mode pass
kill -9 "$(mgmt_field net_pid)"
check "a genuine signed ack moves it" wait_for 40 bash -c "[ \"\$(acked)\" -gt $C0 ]"
check "...and the uploads drain from the outbox" wait_for 30 bash -c \
	"[ \$(sdb \"select count(*) from mgmt_outbox where message_id like 'au-%'\") = 0 ]"

# --- 13.3: what the network process can sign (TLS key) the MDM refuses
mode resign-tls
: >"$R/log"
check "request an upload" cells-mdm audit request "$DEV"
check "the relay re-signed a checkpoint with the TLS key" wait_for 30 grep -q "re-signed an audit checkpoint" "$R/log"
check "the MDM refused the batch (checkpoint not by the identity key)" \
	wait_for 10 grep -qE "audit batch .* refused.*checkpoint" "$T/mdm.log"
cells-mdm policy example --device "$DEV" --version 2 >"$T/p2.json"
PID2=$(cells-mdm --json policy push "$DEV" "$T/p2.json" | json_get "d[0]['id']")
check "the relay attached a TLS-signed wipe receipt to the policy's result" \
	wait_for 30 grep -q "attached a wipe receipt signed with the TLS key" "$R/log"
check "the MDM refused it: the entry failed" wait_for 15 entry_is "$PID2" failed
check "...with a receipt reason" bash -c "cells-mdm --json command list | grep '$PID2' | grep -q 'receipt'"
check_eq "...the forged receipt is not stored as verified" 0 \
	"$(mdb "select count(*) from receipts where device='$DEV' and verified=1")"

# --- 18.3: compliance computed from the device's state, shown at the MDM
mode pass
reasons() { cells-mdm --json devices | json_get "','.join(r for x in d if x['device_id']=='$DEV' for r in x['compliance_reasons'])"; }
compliance() { cells-mdm --json devices | json_get "[x['compliance'] for x in d if x['device_id']=='$DEV'][0]"; }
reasons_are() { [ "$(reasons)" = "$1" ]; }
export -f reasons reasons_are compliance
export DEV
check "policy 2 (no expiry; work needs a password) reported: password-not-set:work" \
	wait_for 30 reasons_are "password-not-set:work"
echo "work-password-1" >"$T/pw"
check "set work's password" cellctl vp password work --new-password-file "$T/pw"
check "a fixed device goes back to compliant at the MDM" wait_for 30 reasons_are ""
check_eq "...compliance says so" compliant "$(compliance)"
cells-mdm policy example --device "$DEV" --version 3 |
	python3 -c 'import json,sys,time; d=json.load(sys.stdin); d["expires_at"]=int(time.time())+6; print(json.dumps(d))' >"$T/p3.json"
ID3=$(cells-mdm --json policy push "$DEV" "$T/p3.json" | json_get "d[0]['id']")
check "a policy expiring in 6 s is acknowledged" wait_for 15 entry_is "$ID3" acknowledged
check "after its expiry the MDM shows policy-expired" wait_for 40 reasons_are "policy-expired"
check_eq "...compliance says so" policy-expired "$(compliance)"
ID1=$(cells-mdm --json policy push "$DEV" "$T/p2.json" | json_get "d[0]['id']")
check "a rollback policy is refused" wait_for 15 entry_is "$ID1" failed
check "the MDM shows policy-refused" wait_for 30 bash -c 'reasons | grep -q policy-refused'
cells-mdm policy example --device "$DEV" --version 5 >"$T/p5.json"
ID5=$(cells-mdm --json policy push "$DEV" "$T/p5.json" | json_get "d[0]['id']")
check "a valid policy 5 is acknowledged" wait_for 15 entry_is "$ID5" acknowledged
check "...and the device is compliant again at the MDM" wait_for 30 reasons_are ""
: >"$R/log"
kill -9 "$(mgmt_field net_pid)"
check "on a new session the ServerHello names the latest policy version (5)" \
	wait_for 30 grep -q "server hello: latest_policy_version=5" "$R/log"
check "the compliance changes were status updates (no reconnect)" \
	bash -c "[ \$(grep -c 'mgmt: connected' '$T/cellsd.log') -le 5 ]"

# --- 13.8: the MDM flags an audit head that goes backwards
check "the MDM knows the device's audit head" wait_for 10 bash -c \
	"[ \$(cells-mdm --json devices | json_get \"d[0]['audit_head_seq']\") -gt 0 ]"
check_eq "no audit flag yet" "" "$(cells-mdm --json devices | json_get "d[0]['audit_flag']")"
check "stop the agent" stop_cellsd
HEAD=$(sqlite3 "$CELLS_STATE/audit.db" "select max(seq) from audit")
CUT=$((HEAD - 10))
sqlite3 "$CELLS_STATE/audit.db" "delete from audit where seq>$CUT; delete from audit_checkpoint where seq>$CUT"
sdb "update audit_upload set acked_seq=min(acked_seq, $CUT), inflight_id='', inflight_first=0, inflight_last=0"
start_cellsd --net-helper "$R/relay_net.py" || exit 1
check "after root cut the log's tail the MDM flags the device" wait_for 30 bash -c \
	"cells-mdm --json devices | json_get \"d[0]['audit_flag']\" | grep -q 'went backwards'"
check "...and logged it" grep -q "AUDIT ALERT: audit head went backwards" "$T/mdm.log"

check "clean shutdown" stop_cellsd
[ "$FAIL" -eq 0 ] || { tail -40 "$T/cellsd.log"; tail -30 "$T/mdm.log"; cat "$R/log"; }
finish
