#!/usr/bin/env bash
# A wipe removes an unencrypted VP's data wherever it lives, and its receipt says what
# was done: the personal VP (unencrypted) writes a canary from inside; after `cellctl vp
# wipe` the canary's bytes are nowhere under the state directory (grep from outside),
# and the signed receipt's method is "delete" with the files and bytes the test counted
# itself. Data an older version kept in STATE/vp/NAME/upper is moved to the VP's data
# directory at start, and a destroy wipes it (with a receipt). (A VP without data gets
# "nothing": tests/unit/test_fscrypt_wipe.c.)
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"

wipe_use_instance u
start_cellsd || exit 1
check "signed policy applied, work password set" wipe_policy
echo "personal-pw-1" >"$T/ppw"
check "personal password set" cellctl vp password personal --new-password-file "$T/ppw"
check "create personal (unencrypted)" cellctl vp create personal --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "start personal" cellctl vp start personal --password-file "$T/ppw"
CANARY="CANARY-$$-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
check "personal writes a canary from inside" cellctl vp exec personal --password-file "$T/ppw" -- sh -c \
	"mkdir -p /data/sub && i=0; while [ \$i -lt 500 ]; do echo $CANARY; i=\$((i+1)); done >/data/sub/canary.txt && echo $CANARY >/c2.txt"
sync
D="$CELLS_STATE/vpdata/personal"
check_eq "the VP's data is in its data directory" "$CANARY" "$(head -1 "$D/upper/data/sub/canary.txt" 2>&1)"
check "grep finds the canary under the state dir (control)" grep -rqaF "$CANARY" "$CELLS_STATE"
check "stop personal" cellctl vp stop personal
# what the test expects the wipe to remove, counted from outside
FILES=$(find "$D" | wc -l)
BYTES=$(find "$D" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
check "the canary files are counted (control)" bash -c "[ $BYTES -ge $((500 * ${#CANARY})) ] && [ $FILES -ge 5 ]"

check "wipe personal" bash -c "cellctl vp wipe personal --password-file '$T/ppw' >'$T/w.out'"
check "cellctl says what was removed" grep -q "deleted $FILES files, $BYTES bytes" "$T/w.out"
sync
check_not "the canary's bytes are nowhere under the state dir" grep -rqaF "$CANARY" "$CELLS_STATE"
check_not "the data directory is gone" test -e "$D"
check_not "the VP is gone (left absent)" cellctl vp status personal
cellctl --json wipe status personal >"$T/s1.json"
check_eq "wipe done" done "$(json_get "$T/s1.json" 'j["ops"][0]["state"]')"
check "receipt verifies with the device key" verify_receipt "$T/s1.json"
# the signed payload itself (not the agent's JSON) says what was done
"$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); open(sys.argv[2],'wb').write(bytes.fromhex(j['ops'][0]['receipt']))" "$T/s1.json" "$T/r1.bin"
decode_receipt() {
	"$PY" - "$1" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["CELLS_SRC"], "tests", "integration"))
from pbwire import by_field
def fields(b):
    return {f: v[0] for f, v in by_field(b).items()}
signed = fields(open(sys.argv[1], "rb").read())
r = fields(signed[2])  # Signed.payload = WipeReceipt
print(r.get(9, b"").decode(), r.get(10, 0), r.get(11, 0))
PY
}
read -r METHOD NFILES NBYTES <<<"$(decode_receipt "$T/r1.bin")"
check_eq "signed receipt: method delete" delete "$METHOD"
check_eq "signed receipt: files removed = what the test counted" "$FILES" "$NFILES"
check_eq "signed receipt: bytes removed = what the test counted" "$BYTES" "$NBYTES"
check_eq "audited: wipe.done" 1 "$(audit_count "event='wipe.done' and vp='personal'")"

# data an older version left in STATE/vp/NAME/upper
check "create personal again" cellctl vp create personal --image "$IMG" --init /bin/sh -c 'sleep 100000'
OLD="OLDCANARY-$$-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
mkdir -p "$CELLS_STATE/vp/personal/upper" "$CELLS_STATE/vp/personal/work"
echo "$OLD" >"$CELLS_STATE/vp/personal/upper/legacy.txt"
check "start it" cellctl vp start personal --password-file "$T/ppw"
check_eq "the VP sees its older data" "$OLD" "$(cellctl vp exec personal --password-file "$T/ppw" -- cat /legacy.txt 2>&1)"
check "the older data moved to the data directory" test -f "$D/upper/legacy.txt"
check_not "nothing stays in the old place" test -e "$CELLS_STATE/vp/personal/upper"
check "destroy personal (a wipe: it has data)" cellctl vp destroy personal --password-file "$T/ppw"
sync
check_not "the older canary is nowhere under the state dir" grep -rqaF "$OLD" "$CELLS_STATE"
cellctl --json wipe status personal >"$T/s2.json"
check_eq "the destroy left a receipt: delete" delete "$(json_get "$T/s2.json" 'j["ops"][-1]["method"]')"
check "its receipt verifies" verify_receipt "$T/s2.json" 1

check "stop cellsd" stop_cellsd
finish
