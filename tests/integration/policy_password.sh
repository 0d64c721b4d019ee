#!/usr/bin/env bash
# VP configuration passwords: policy minimum length, tightening only within the policy's
# bounds, throttle delays that survive a restart of cellsd, the failure limit locks the
# VP's configuration (audited), local configuration persists and is in the effective
# policy.
. "$CELLS_SRC/tests/lib.sh"
export CELLS_MDM_STATE_DIR="$T/mdm"
show() { cellctl --json policy show | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
audit_count() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='$1'"; }

cells-mdm init >/dev/null || exit 1
start_cellsd || exit 1
ID=$(cellctl device id)
cells-mdm export-root >"$T/root.pub" && cellctl trust pin "$T/root.pub" >/dev/null
# work: password required, min 8, limit 5 failures; personal: optional, unlimited
cells-mdm policy example --device "$ID" | sed 's/"max_failed_attempts": 10/"max_failed_attempts": 5/' >"$T/p.json"
cells-mdm policy sign "$T/p.json" -o "$T/p.bin" >/dev/null
cellctl policy apply "$T/p.bin" >/dev/null || exit 1
printf 'correct horse battery\n' >"$T/pw"; printf 'wrong-password\n' >"$T/bad"; printf 'short\n' >"$T/short"
printf 'personal-secret\n' >"$T/ppw"; printf 'another-secret\n' >"$T/pw2"

check_fails "VP not named by the policy" "no policy in force names VP ghost" cellctl vp password ghost --new-password-file "$T/pw"
check_fails "work config needs a password first" "needs a configuration password first" cellctl vp config work net=none
check_fails "policy minimum length" "shorter than 8" cellctl vp password work --new-password-file "$T/short"
check "set the work password" cellctl vp password work --new-password-file "$T/pw"
check_fails "changing it needs the old one" "wrong password" cellctl vp password work --new-password-file "$T/pw2" --password-file "$T/bad"
check "change it with the old one" cellctl vp password work --new-password-file "$T/pw2" --password-file "$T/pw"
check "stored hash is Argon2id m=19456 KiB t=2 p=1, 16-byte salt" bash -c "sqlite3 '$CELLS_STATE/state.db' \"select m_kib, t, p, length(salt), length(hash) from vp_password where vp='work'\" | grep -qx '19456|2|1|16|32'"
check_fails "config with a wrong password refused" "wrong password for VP work" cellctl vp config work net=none --password-file "$T/bad"
check "tighten work: net=none, camera shared" cellctl vp config work net=none device.camera=shared --password-file "$T/pw2"
check_eq "effective policy has the tightening" "none shared" "$(show 'd["effective"]["vps"][0]["net"], d["effective"]["vps"][0]["devices"]["camera"]' | tr -d "(),'")"
check_eq "the MDM policy is untouched" "nat exclusive" "$(show 'd["policy"]["vps"][0]["net"], d["policy"]["vps"][0]["devices"]["camera"]' | tr -d "(),'")"
check_fails "loosening beyond the policy refused" "looser than the policy's no-access" cellctl vp config personal device.camera=shared
check_fails "unknown setting refused" "unknown setting" cellctl vp config personal colour=blue
check_fails "unknown device class refused" "unknown device class" cellctl vp config personal device.toaster=shared
check "personal (no password required) tightens without one" cellctl vp config personal device.gps=no-access

# throttle on personal (unlimited attempts): 5 failures -> 30 s delay, kept over a restart
check "set the personal password" cellctl vp password personal --new-password-file "$T/ppw"
for i in 1 2 3 4; do cellctl vp config personal net=none --password-file "$T/bad" >/dev/null 2>&1; done
check_fails "5th failure announces the delay" "5 failed attempts; next try in 30 s" cellctl vp config personal net=none --password-file "$T/bad"
check_fails "inside the delay even the right password is refused" "try again in [0-9]+ s" cellctl vp config personal net=none --password-file "$T/ppw"
check "failure counter is in the state DB" bash -c "sqlite3 '$CELLS_STATE/state.db' \"select failures from vp_password where vp='personal'\" | grep -qx 5"
stop_cellsd
start_cellsd || exit 1
check_fails "the delay survives a restart" "try again in [0-9]+ s" cellctl vp config personal net=none --password-file "$T/ppw"
check "throttled attempts are audited" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='password.throttled'\") -ge 2 ]"

# the limit on work: 5 failures lock it
for i in 1 2 3 4; do cellctl vp config work net=none --password-file "$T/bad" >/dev/null 2>&1; done
check_fails "5th failure reaches the limit" "the limit: configuration locked" cellctl vp config work net=none --password-file "$T/bad"
check_fails "locked: the right password no longer works" "locked after 5 failed" cellctl vp config work net=none --password-file "$T/pw2"
check_eq "the limit is audited once" 1 "$(audit_count password.limit)"
grep -q "limit of failed password attempts reached" "$T/cellsd.log"; check_eq "password_limit_reached() was called" 0 $?
stop_cellsd
start_cellsd || exit 1
check_fails "still locked after a restart" "locked" cellctl vp password work --new-password-file "$T/pw" --password-file "$T/pw2"
check_eq "local configuration survives a restart" "none shared" "$(show 'd["effective"]["vps"][0]["net"], d["effective"]["vps"][0]["devices"]["camera"]' | tr -d "(),'")"
check "clean shutdown" stop_cellsd
finish
