#!/usr/bin/env bash
# The MDM wipes the work VP end to end: `cells-mdm wipe DEV work` -> signed command ->
# cellsd verifies it -> crash-safe wipe -> the command's result carries the signed
# receipt -> the server verifies it with the device certificate's key and stores it ->
# its acknowledgement marks the receipt acked on the device. A redelivered wipe is
# answered from the stored receipt, not run again; a forged receipt is refused.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh" # its json_get (stdin) and audit_count win
FORGE="$CELLS_BUILD/tests/integration/receipt_forge"
[ -x "$FORGE" ] || skip "receipt_forge not built"
wipe_use_instance m
setup_enrolled || { cat "$T/cellsd.log" "$T/mdm.log"; exit 1; }
cells-mdm export-root >"$T/root.pub"
check "enrollment pinned the MDM's signing root" bash -c "cellctl --json policy show | grep -q '\"trust_root\"'"
cells-mdm policy example --device "$DEV" >"$T/p1.json"
PID1=$(cells-mdm --json policy push "$DEV" "$T/p1.json" | json_get "d[0]['id']")
check "the policy (and the command key's delegation) is acknowledged" wait_for 20 entry_is "$PID1" acknowledged

# the wipe module's per-VP storage (work: its own fscrypt key in the encrypted image)
W=$(cellctl wipe prepare work)
P=$(cellctl wipe prepare personal)
check "work storage is in the encrypted image" bash -c "[[ '$W' == '$CELLS_RUN_DIR/wipe/mnt/vp/work' ]]"
CANARY="CANARY-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
"$PY" -c "import sys; open(sys.argv[1],'w').write((sys.argv[2]+'\n')*2000)" "$W/secret.txt" "$CANARY"
echo "personal-keep-$CANARY" >"$P/keep.txt"
check_eq "work's key is present before" present "$(cellctl --json wipe status work | json_get "d['keys'][0]['kernel_key_status']")"
check "create work VP" cellctl vp create work --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "create personal VP" cellctl vp create personal --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "start work" cellctl vp start work
check "start personal" cellctl vp start personal
check "work writes data" cellctl vp exec work -- sh -c 'echo secret-work >/secret.txt'
check "personal writes data" cellctl vp exec personal -- sh -c 'echo keep-me >/keep.txt'
check_eq "work reads its data back" secret-work "$(cellctl vp exec work -- cat /secret.txt)"
check_eq "what work writes lands in its encrypted directory" secret-work "$(cat "$W/upper/secret.txt" 2>&1)"
PPID0=$(vp_field personal pid)
check "personal init has a pid" bash -c "[ '${PPID0:-0}' -gt 0 ]"

WID=$(cells-mdm --json wipe "$DEV" work | json_get "d['id']")
check "the wipe command is acknowledged by the agent" wait_for 60 entry_is "$WID" acknowledged
CID=$(sqlite3 "$CELLS_STATE/state.db" "select command_id from wipe_ops where vp='work' order by id desc limit 1")
check "the agent ran the MDM's command id" bash -c "[[ '$CID' == c-* ]]"
cellctl --json wipe status work >"$T/s.json"
st() { json_get "$1" <"$T/s.json"; }
check_eq "the wipe is done" done "$(st "d['ops'][0]['state']")"
check_eq "the receipt says the key is absent" absent "$(st "d['ops'][0]['key_status']")"
check_eq "the kernel reports the old key absent" absent "$(st "d['ops'][0]['kernel_key_status']")"
check "the receipt verifies with the device key" verify_receipt "$T/s.json"
check "the device shows the receipt acknowledged" wait_for 10 bash -c "[ \"\$(cellctl --json wipe status work | json_get \"d['ops'][0]['receipt_acked']\")\" = True ]"
check_eq "no separate receipt message was queued" 0 "$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from mgmt_outbox")"
check_not "work's stored data is gone" test -e "$W/secret.txt"
check_not "what work wrote inside the VP is gone" test -e "$W/upper/secret.txt"
sync
check_not "the canary is not readable in the raw image" env LC_ALL=C grep -qazF "$CANARY" "$(wipe_image)"
check_eq "personal's stored data is intact" "personal-keep-$CANARY" "$(cat "$P/keep.txt")"
check_eq "personal keeps running" running "$(vp_field personal state)"
check_eq "personal init is the same process" "$PPID0" "$(vp_field personal pid)"
check_eq "personal data intact" keep-me "$(cellctl vp exec personal -- cat /keep.txt)"

cells-mdm --json receipts "$DEV" >"$T/r.json"
rj() { json_get "$1" <"$T/r.json"; }
check_eq "the server stored one receipt" 1 "$(rj "len(d)")"
check_eq "...verified, for work, for that command" "True work $CID $WID" "$(rj "' '.join(str(x) for x in (d[0]['verified'], d[0]['vp'], d[0]['command_id'], d[0]['queue_id']))")"
check_eq "...saying the key is absent" absent "$(rj "d[0]['key_status']")"
check "the text listing shows it verified" bash -c "cells-mdm receipts | grep '$CID' | grep -q ' yes '"
rj "d[0]['receipt']" | "$PY" -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read().strip()))' >"$T/receipt.bin"
openssl pkey -in "$CELLS_STATE/device.key" -pubout -out "$T/device.pub" 2>/dev/null
check "the stored receipt verifies offline" bash -c "cells-mdm receipt verify '$T/receipt.bin' --device-key '$T/device.pub' | grep -qx 'command: $CID'"
cp "$T/receipt.bin" "$T/bad.bin"
"$PY" -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[-1]^=1; open(p,"wb").write(b)' "$T/bad.bin"
check_fails "a flipped bit fails offline" "receipt" cells-mdm receipt verify "$T/bad.bin" --device-key "$T/device.pub"
check_eq "the wipe started once" 1 "$(audit_count wipe.requested)"

# the server loses its acknowledgement and sends the wipe again: answered from the stored
# receipt, not carried out again
stop_mdm
mdm_sql "update queue set state=0 where id='$WID'"
check_eq "the server no longer counts the wipe as acknowledged" queued "$(entry_state "$WID")"
start_mdm
check "the redelivered wipe is acknowledged again" wait_for 30 entry_is "$WID" acknowledged
check_eq "...with the stored receipt (still one, verified)" "1 True" "$(cells-mdm --json receipts "$DEV" | json_get "' '.join(str(x) for x in (len(d), d[0]['verified']))")"
check "the agent answered it as a replay" grep -q "command $CID is a replay" "$T/cellsd.log"
check_eq "the wipe was not started again" 1 "$(audit_count wipe.requested)"
check_eq "one wipe op on the device" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from wipe_ops")"
check_eq "personal still untouched" "$PPID0 keep-me" "$(vp_field personal pid) $(cellctl vp exec personal -- cat /keep.txt)"

# a forged receipt: a local wipe queues its own receipt message while the server is
# down; one bit of its signature is flipped in the agent's outbox and it is made to
# answer a queued command. The server refuses it and never stores it as verified.
stop_mdm
check "stop personal" cellctl vp stop personal
echo "personal-password-1" >"$T/pw"
check "set personal's VP password" cellctl vp password personal --new-password-file "$T/pw"
check "wipe personal locally (MDM down)" cellctl vp wipe personal --password-file "$T/pw" --recreate
LID=$(sqlite3 "$CELLS_STATE/state.db" "select command_id from wipe_ops where vp='personal'")
check_eq "the local wipe's receipt waits in the outbox" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from mgmt_outbox where message_id like 'wipe-receipt-%'")"
FID=$(cells-mdm --json voip assign "$DEV" work +15550199 1 | json_get "d['id']")
check "stop the agent" stop_cellsd
sqlite3 "$CELLS_STATE/state.db" "select writefile('$T/o.bin', envelope) from mgmt_outbox where message_id like 'wipe-receipt-%'" >/dev/null
check "forge the queued receipt" "$FORGE" "$T/o.bin" "$T/f.bin" "$FID"
sqlite3 "$CELLS_STATE/state.db" "update mgmt_outbox set envelope=readfile('$T/f.bin') where message_id like 'wipe-receipt-%'"
start_mdm
start_cellsd || exit 1
check "the command the forgery answers is marked failed" wait_for 30 entry_is "$FID" failed
check "...with the reason" bash -c "cells-mdm --json command list | grep '$FID' | grep -q 'receipt refused'"
check "the server logged one line for the refusal" grep -q "refused: receipt refused: .*signature" "$T/mdm.log"
check_eq "the forged receipt is not stored as verified" "False" "$(cells-mdm --json receipts "$DEV" | json_get "str([r['verified'] for r in d if r['command_id']=='$LID'])[1:-1]")"
check_eq "the genuine one still is" "True" "$(cells-mdm --json receipts "$DEV" | json_get "str([r['verified'] for r in d if r['command_id']=='$CID'])[1:-1]")"
check_eq "the device keeps the refused receipt unacknowledged" False "$(cellctl --json wipe status personal | json_get "d['ops'][0]['receipt_acked']")"
check "clean shutdown" stop_cellsd
[ "$FAIL" -eq 0 ] || { tail -30 "$T/cellsd.log"; tail -20 "$T/mdm.log"; }
finish
