#!/usr/bin/env bash
# Wipe of the work VP: canary gone from the raw image, kernel key absent, wrapped key
# gone from the state DB file and WAL, signed receipt verifies, the personal VP's data
# and processes are untouched, a process using the work data is killed.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"

wipe_use_instance a
start_cellsd || exit 1
check "signed policy applied, work password set" wipe_policy
W=$(cellctl wipe prepare work)
P=$(cellctl wipe prepare personal)
check "work storage is in the encrypted image" bash -c "[[ '$W' == '$CELLS_RUN_DIR/wipe/mnt/vp/work' ]]"
check "personal storage is not encrypted by default" bash -c "cellctl --json wipe prepare personal | grep -q '\"encrypted\":false'"
check "prepare is idempotent" bash -c "[ \"\$(cellctl wipe prepare work)\" = '$W' ]"
cellctl --json wipe status work >"$T/s0.json"
check_eq "work key is present in the kernel" present "$(json_get "$T/s0.json" 'j["keys"][0]["kernel_key_status"]')"

CANARY="CANARY-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
"$PY" -c "import sys; open(sys.argv[1],'w').write((sys.argv[2]+'\n')*20000)" "$W/canary.txt" "$CANARY"
mkdir -p "$W/upper/data" && echo "$CANARY" >"$W/upper/data/$CANARY"
echo "personal-keep-$CANARY" >"$P/keep.txt"
# positive control: plaintext written to the image's unencrypted root is found by grep
echo "PLAINCONTROL-$$-$RANDOM-CONTROL" >"$T/marker"; cat "$T/marker" >"$CELLS_RUN_DIR/wipe/mnt/control.txt"
sync
check "grep finds plaintext in the raw image (control)" env LC_ALL=C grep -qazFf "$T/marker" "$(wipe_image)"
check_not "canary is not in the image before the wipe" env LC_ALL=C grep -qazF "$CANARY" "$(wipe_image)"

WRAPPED=$(slot_wrapped work)
KEK=$(kek_hex)
check_eq "wrapped key is stored in its key slot (93 bytes)" 186 "${#WRAPPED}"
check "wrapped key bytes are in the key-slot file (control)" file_has_hex "$CELLS_STATE/wipe.slots" "$WRAPPED"
check_not "wrapped key bytes are not in the DB files" db_files_have_hex "$WRAPPED"
check "KEK file is private" bash -c "[ \$(stat -c %a '$CELLS_STATE/wipe.kek') = 600 ]"
check "key-slot file is private" bash -c "[ \$(stat -c %a '$CELLS_STATE/wipe.slots') = 600 ]"

# a process of the "work VP" using its data, and one of the personal VP
(cd "$W/upper" && exec sleep 300) & WORKPID=$!
(cd "$P" && exec sleep 300) & PERSPID=$!
# a VP root left mounted: an overlay whose upper layer is in the work storage, in use
mkdir -p "$T/lower" "$T/merged" "$W/ovl-upper" "$W/ovl-work" && echo base >"$T/lower/base"
mount -t overlay overlay -o "lowerdir=$T/lower,upperdir=$W/ovl-upper,workdir=$W/ovl-work" "$T/merged"
WIPE_MOUNTS=("$T/merged" "${WIPE_MOUNTS[@]}")
echo "$CANARY" >"$T/merged/vpfile"
(cd "$T/merged" && exec sleep 300) & OVLPID=$!
# an unrelated process in a mount namespace made now holds a copy of that overlay
unshare -m --propagation private sleep 300 & NSPID=$!
PIDS+=("$WORKPID" "$PERSPID" "$OVLPID" "$NSPID")
sleep 0.2

printf '\n' >"$T/empty.pw"
echo "wrong-password" >"$T/bad.pw"
check_fails "wipe without the password is refused" "password" cellctl vp wipe work --password-file "$T/empty.pw"
check_fails "wipe with a wrong password is refused" "wrong password" cellctl vp wipe work --password-file "$T/bad.pw"
check_eq "refusals are audited" 2 "$(audit_count "event='wipe.refused'")"
check "work data survives a refused wipe" test -f "$W/canary.txt"

check "cellctl vp wipe work" cellctl vp wipe work --password-file "$T/pw"
wait "$WORKPID"; rc=$?
check_eq "the process using the work data was killed" 137 "$rc"
wait "$OVLPID"; rc=$?
check_eq "the process in the overlay over the work data was killed" 137 "$rc"
check_not "the overlay over the work data was unmounted" mountpoint -q "$T/merged"
check "the unrelated process keeps running" kill -0 "$NSPID"
check_not "its copy of the overlay was detached" grep -qF "$T/merged" "/proc/$NSPID/mountinfo"
check "the personal VP's process still runs" kill -0 "$PERSPID"
check_eq "the personal VP's data is intact" "personal-keep-$CANARY" "$(cat "$P/keep.txt")"

cellctl --json wipe status work >"$T/s1.json"
check_eq "wipe is done" done "$(json_get "$T/s1.json" 'j["ops"][0]["state"]')"
check_eq "receipt says key absent" absent "$(json_get "$T/s1.json" 'j["ops"][0]["key_status"]')"
check_eq "FS_IOC_GET_ENCRYPTION_KEY_STATUS: absent" absent "$(json_get "$T/s1.json" 'j["ops"][0]["kernel_key_status"]')"
check_eq "no key slot left for work" "" "$(slot_wrapped work)"
check_not "wrapped key bytes gone from the key-slot file" file_has_hex "$CELLS_STATE/wipe.slots" "$WRAPPED"
check_not "wrapped key bytes gone from state.db and its WAL" db_files_have_hex "$WRAPPED"
check_not "the old KEK is gone from wipe.kek (rotated)" file_has_hex "$CELLS_STATE/wipe.kek" "$KEK"
check_eq "receipt states the method" crypto-erase "$(json_get "$T/s1.json" 'j["ops"][0]["method"]')"
check "work data directory is gone" bash -c "[ ! -e '$W' ]"
sync
check_not "canary is not in the raw image after the wipe" env LC_ALL=C grep -qazF "$CANARY" "$(wipe_image)"
check "receipt verifies with the device public key" verify_receipt "$T/s1.json"
check "a tampered receipt does not verify" tamper_receipt_fails "$T/s1.json"
# the MDM's verifier (cells-mdm receipt verify) accepts it and refuses a tampered copy
"$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); open(sys.argv[2],'wb').write(bytes.fromhex(j['ops'][0]['receipt']))" "$T/s1.json" "$T/r.bin"
openssl pkey -in "$CELLS_STATE/device.key" -pubout -out "$T/dev.pub" 2>/dev/null
check "cells-mdm receipt verify accepts the receipt" cells-mdm receipt verify "$T/r.bin" --device-key "$T/dev.pub"
cells-mdm receipt verify "$T/r.bin" --device-key "$T/dev.pub" >"$T/rv.out" 2>&1
check "cells-mdm shows the key absent" grep -q "key_status: absent" "$T/rv.out"
"$PY" -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[20]^=1; open(sys.argv[2],'wb').write(b)" "$T/r.bin" "$T/r.bad"
check_fails "cells-mdm refuses a tampered receipt" "receipt" cells-mdm receipt verify "$T/r.bad" --device-key "$T/dev.pub"
check_eq "one receipt stored" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from wipe_receipts")"
check_eq "every step is audited" 8 "$(audit_count "event='wipe.step' and outcome='ok'")"
check_eq "completion is audited" 1 "$(audit_count "event='wipe.done'")"

# leave-absent, then a new VP gets a new key; --recreate gives an empty encrypted dir
W2=$(cellctl wipe prepare work)
cellctl --json wipe status work >"$T/s2.json"
check "a re-created work VP gets a fresh key" bash -c "[ '$(json_get "$T/s2.json" 'j["keys"][0]["key_id"]')' != '$(sqlite3 "$CELLS_STATE/state.db" "select hex(key_id) from wipe_ops limit 1" | tr A-F a-f)' ]"
echo again >"$W2/again.txt"
check "wipe --recreate" cellctl vp wipe work --recreate --password-file "$T/pw"
check "recreated work dir exists and is empty" bash -c "[ -d '$W2' ] && [ -z \"\$(ls -A '$W2')\" ]"
cellctl --json wipe status work >"$T/s3.json"
check_eq "recreated VP has its key present" present "$(json_get "$T/s3.json" 'j["keys"][0]["kernel_key_status"]')"
check "second receipt verifies" verify_receipt "$T/s3.json" 1
# the policy's failed-password limit wipes the VP (and recreates it empty)
echo still-here >"$W2/x.txt"
for _ in 1 2 3; do cellctl vp wipe work --password-file "$T/bad.pw" >/dev/null 2>&1; done
check_eq "password limit triggered a wipe" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from wipe_ops where command_id like 'password-limit:%' and state='done'")"
check "password-limit wipe removed the data" bash -c "[ ! -e '$W2/x.txt' ]"
check "personal process survived every wipe" kill -0 "$PERSPID"
check "clean shutdown" stop_cellsd
finish
