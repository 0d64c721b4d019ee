#!/usr/bin/env bash
# VP configuration passwords: policy minimum length, tightening only within the policy's
# bounds, throttle delays that survive a restart of cellsd (the full wait again, also
# when cellsd restarts with its monotonic clocks a day ahead, in a time namespace), the
# failure limit locks the VP's configuration (audited), local configuration persists
# and is in the effective policy. The stored hash needs the device secret
# (STATE_DIR/password.key): a copy of state.db alone does not verify the right password
# offline (pw_offline); an older hash without it is bound to it at the next success.
. "$CELLS_SRC/tests/lib.sh"
export CELLS_MDM_STATE_DIR="$T/mdm"
show() { cellctl --json policy show | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
check_not() { local d=$1; shift; if "$@" >"$T/last.out" 2>&1; then not_ok "$d (succeeded)"; else ok "$d"; fi; }
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
# offline: a copy of state.db (what a thief of the database has) and the right password
PWO="$CELLS_BUILD/tests/integration/pw_offline"
[ -x "$PWO" ] || skip "pw_offline not built"
check "the device secret is a private 32-byte file" bash -c "[ \"\$(stat -c '%a %s' '$CELLS_STATE/password.key')\" = '600 32' ]"
sqlite3 "$CELLS_STATE/state.db" ".backup '$T/copy.db'"
check "control: the copied hash plus the device secret verifies the password" "$PWO" check "$T/copy.db" work "$T/pw2" "$CELLS_STATE/password.key"
check_fails "the copied state.db alone does not verify the right password" "mismatch" "$PWO" check "$T/copy.db" work "$T/pw2"
check_not "the device secret is not in state.db" bash -c "LC_ALL=C grep -qaF \"\$(cat '$CELLS_STATE/password.key')\" '$CELLS_STATE/state.db'"
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
# restarted with CLOCK_MONOTONIC and CLOCK_BOOTTIME one day ahead (a time namespace):
# the full wait applies from the restart, not cancelled by the jump
stop_cellsd
unshare --time --monotonic 86400 --boottime 86400 --fork --kill-child \
	cellsd --state-dir "$CELLS_STATE" --run-dir "$CELLS_RUN_DIR" >>"$T/cellsd.log" 2>&1 &
TNS=$!
PIDS+=("$TNS")
for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
TCHILD=$(pgrep -P "$TNS" cellsd)
check "cellsd's clocks are a day ahead (uptime in its time namespace)" bash -c "[ \$(nsenter -t $TCHILD -T cut -d. -f1 /proc/uptime) -ge 86400 ]"
check_fails "a day ahead: the full wait still applies" "try again in (29|30) s" cellctl vp config personal net=none --password-file "$T/ppw"
kill "$TCHILD"; wait "$TNS" 2>/dev/null
# a hash of an older version (no device secret) still works and is bound at the next
# success; the copy then no longer verifies offline
"$PWO" legacy "$CELLS_STATE/state.db" personal "$T/ppw"
sqlite3 "$CELLS_STATE/state.db" "update vp_password set failures=0 where vp='personal'"
sqlite3 "$CELLS_STATE/state.db" ".backup '$T/old.db'"
check "control: an old hash verifies offline without the secret" "$PWO" check "$T/old.db" personal "$T/ppw"
start_cellsd || exit 1
check "the old hash is accepted" cellctl vp config personal device.gps=no-access --password-file "$T/ppw"
check_eq "and bound to the device secret" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select peppered from vp_password where vp='personal'")"
sqlite3 "$CELLS_STATE/state.db" ".backup '$T/new.db'"
check_fails "after that the copied state.db alone does not verify it" "mismatch" "$PWO" check "$T/new.db" personal "$T/ppw"
check "the rebound hash verifies in cellsd" cellctl vp config personal device.gps=no-access --password-file "$T/ppw"
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
