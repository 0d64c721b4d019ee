#!/usr/bin/env bash
# mgmt_keys.sh - the key lifecycle over the channel (issue 19, docs/PROTOCOL.md "Trust
# updates"), with a real `cells-mdm serve` and a real cellsd on loopback:
# - `cells-mdm keys rotate-root` + `keys push`: the device walks the chain from its root
#   (state DB: the pinned root changes), and a policy signed under the new root applies
#   (the MDM sees its version reported; the device enforces its password length);
# - `keys revoke` of the current serial + push: a policy signed with the revoked key is
#   refused (the entry fails with the reason, the version stays, audited on the device);
# - a replayed old trust update is refused (audited, root unchanged);
# - a token made before the rotation is refused before it is consumed;
# - `serve --renew-before` renews a short-lived signing key (`keys delegate --lifetime`)
#   before it lapses and pushes it: the device takes the new serial, policies still apply.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
command -v sqlite3 >/dev/null || skip "sqlite3 not installed"
sdb() { sqlite3 "$CELLS_STATE/state.db" "$1"; }
mdb() { mdm_sql "$1"; }
export -f sdb

check "enrolled, the channel is up" setup_enrolled
export DEV
OLD_TOKEN=$(cells-mdm enroll-token --ttl 600 | tail -1)

root_pinned() { sdb "select hex(root) from policy_root"; }
dels_held() { sdb "select group_concat(serial) from policy_delegation order by serial"; }
dev_version() { cells-mdm --json devices | json_get "[x['policy_version'] for x in d if x['device_id']=='$DEV'][0]"; }
entry_reason() { cells-mdm --json command list | json_get "[e['reason'] for e in d if e['id']=='$1'][0]"; }
mkpolicy() { # VERSION MIN_LENGTH > file
	cells-mdm policy example --device "$DEV" --version "$1" |
		python3 -c "import json,sys; d=json.load(sys.stdin); d['vps'][0]['password']['min_length']=$2; print(json.dumps(d))"
}
push_policy() { cells-mdm --json policy push "$DEV" "$1" | json_get "d[0]['id']"; }
push_keys() { cells-mdm --json keys push "$DEV" "$@" | json_get "d[0]['id']"; }
export -f dev_version

mkpolicy 2 8 >"$T/p2.json"
ID=$(push_policy "$T/p2.json")
check "policy 2 under root v1 is acknowledged" wait_for 20 entry_is "$ID" acknowledged
check_eq "the device holds delegation serial 1" 1 "$(dels_held)"
ROOT1=$(root_pinned)

# --- root rotation ---
check "keys rotate-root" cells-mdm keys rotate-root
check_eq "the server's root is version 2" 2 "$(cells-mdm --json keys status | json_get "d['root_version']")"
check_eq "rotation-2.bin carries two signatures (the old root's and the new one's)" 2 \
	"$(python3 -c "import sys; sys.path.insert(0,'$CELLS_SRC/tests/integration'); import pbwire; print(len(pbwire.by_field(open('$CELLS_MDM_STATE_DIR/rotation-2.bin','rb').read()).get(3,[])))")"
check "keys delegate: a new signing key under the new root (serial 3)" cells-mdm keys delegate
mkpolicy 3 12 >"$T/p3.json"
cells-mdm policy sign "$T/p3.json" -o "$T/p3.bin" >/dev/null
ID=$(push_policy "$T/p3.bin")
check "before the trust update, a policy signed under the new root is refused" \
	wait_for 20 entry_is "$ID" failed
check "...as signed by a key the device does not know" bash -c "cells-mdm --json command list | grep '$ID' | grep -q 'unknown key'"
check_eq "...the device keeps policy 2" 2 "$(dev_version)"
TU1=$(push_keys -o "$T/tu-rot.bin")
check "the trust update (rotation) is acknowledged" wait_for 20 entry_is "$TU1" acknowledged
check "the pinned root changed (state DB)" test "$(root_pinned)" != "$ROOT1"
check_eq "the device holds the new root's delegation (serial 3) only" 3 "$(dels_held)"
check_eq "audited trust.update ok" 1 "$(audit_count trust.update "outcome='ok' and details like '%\"root_version\":2%'")"
ID=$(push_policy "$T/p3.json")
check "policy 3 signed under the new root is acknowledged" wait_for 20 entry_is "$ID" acknowledged
check "the MDM sees the device report policy 3" wait_for 20 bash -c '[ "$(dev_version)" = 3 ]'
printf 'abcdefghij' >"$T/pw10"
printf 'abcdefghijkl' >"$T/pw12"
check_fails "policy 3 is enforced: a 10-character work password is refused" "shorter than 12" \
	cellctl vp password work --new-password-file "$T/pw10"
check "...a 12-character one is taken" cellctl vp password work --new-password-file "$T/pw12"

# --- a token made before the rotation: refused before it is consumed ---
check_fails "a token naming the old root is refused by the server" "another trust root" \
	cellctl enroll "$URL" "$OLD_TOKEN" --ca "$T/ca.pem"
check_eq "...and it is not consumed" 1 "$(mdb "select count(*) from tokens where used=0 and expires > $(date +%s)")"
check "the channel comes back" wait_for 20 connected

# --- revocation ---
cp -a "$CELLS_MDM_STATE_DIR" "$T/mdm-old" # the signing key about to be revoked
check "keys revoke 3 (the current serial: a new key)" cells-mdm keys revoke 3
check_eq "the server's delegation is serial 4" 4 "$(cells-mdm --json keys status | json_get "d['serial']")"
TU2=$(push_keys)
check "the trust update (revocation) is acknowledged" wait_for 20 entry_is "$TU2" acknowledged
check_eq "the device holds serial 4 only" 4 "$(dels_held)"
mkpolicy 4 12 >"$T/p4.json"
cells-mdm --state-dir "$T/mdm-old" policy sign "$T/p4.json" -o "$T/p4-revoked.bin" >/dev/null
RJ0=$(audit_count policy.rejected)
ID=$(push_policy "$T/p4-revoked.bin")
check "a policy signed with the revoked key is refused" wait_for 20 entry_is "$ID" failed
check "...the reason names the unknown key" bash -c "cells-mdm --json command list | grep '$ID' | grep -q 'unknown key'"
check "...audited on the device" wait_for 5 bash -c "[ \$(audit_count policy.rejected) -gt $RJ0 ]"
check_eq "...the device keeps policy 3" 3 "$(dev_version)"
ID=$(push_policy "$T/p4.json")
check "the same policy signed with the new key is acknowledged" wait_for 20 entry_is "$ID" acknowledged
check "the MDM sees policy 4" wait_for 20 bash -c '[ "$(dev_version)" = 4 ]'

# --- a replayed old trust update ---
ROOT2=$(root_pinned)
RF0=$(audit_count trust.update "outcome='refused'")
ID=$(push_keys --from "$T/tu-rot.bin")
check "a replayed old trust update is refused" wait_for 20 entry_is "$ID" failed
check "...as revoked or not newer" bash -c "cells-mdm --json command list | grep '$ID' | grep -qE 'revoked|nothing newer'"
check "...audited trust.update refused" wait_for 5 bash -c "[ \$(audit_count trust.update \"outcome='refused'\") -gt $RF0 ]"
check_eq "...the root is unchanged" "$ROOT2" "$(root_pinned)"
check_eq "...the delegation held is unchanged" 4 "$(dels_held)"

# --- automatic renewal by serve ---
check "keys delegate --lifetime 40 (a short-lived new key)" cells-mdm keys delegate --lifetime 40
ID=$(push_keys)
check "...pushed and acknowledged" wait_for 20 entry_is "$ID" acknowledged
check_eq "the device holds serial 5" 5 "$(dels_held)"
stop_mdm
MDM_ARGS=(--renew-before 30)
start_mdm || exit 1
check "serve renews the key within 30 s of its expiry" wait_for 40 grep -q "renew (automatic) serial 6" "$CELLS_MDM_STATE_DIR/keys.log"
check "...and pushes it: the device takes serial 6 (or later)" wait_for 30 bash -c '[ "$(sdb "select max(serial) from policy_delegation")" -ge 6 ]'
check "...logged by the server" grep -q "signing key was renewed" "$T/mdm.log"
sleep 12 # past the first key's 40 s: only the renewed delegation is valid
mkpolicy 5 12 >"$T/p5.json"
ID=$(push_policy "$T/p5.json")
check "a policy signed after the first lifetime lapsed is acknowledged" wait_for 20 entry_is "$ID" acknowledged
check "the MDM sees policy 5" wait_for 20 bash -c '[ "$(dev_version)" = 5 ]'

check "clean shutdown" stop_cellsd
[ "$FAIL" -eq 0 ] || { tail -40 "$T/cellsd.log"; tail -30 "$T/mdm.log"; cat "$CELLS_MDM_STATE_DIR/keys.log"; }
finish
