#!/usr/bin/env bash
# Numbers by signed MDM command end to end: cells-mdm voip assign -> queue -> mutual-TLS
# channel -> cellsd verifies the signature -> tel_cmd_assign (stored, audited, applied
# live) -> a call to the number rings that VP's virtual modem.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
SIM="$CELLS_MDM_STATE_DIR/sim"
# the carrier/modem simulator runs inside the MDM server (cells-mdm serve --modem-pty)
MDM_ARGS=(--modem-pty "$T/modem" --gateway +15550000)
setup_enrolled --modem "$T/modem" || { cat "$T/cellsd.log"; exit 1; }
check "the server runs the modem simulator" grep -q "modem simulator: pty $T/modem" "$T/mdm.log"
cells-mdm export-root >"$T/root.pub"
check "pin the MDM's signing root" cellctl trust pin "$T/root.pub"
# a policy delivers the delegation of the MDM's signing key (it names no VP: calls allowed)
cells-mdm policy example --device "$DEV" | python3 -c 'import json,sys; p=json.load(sys.stdin); p["vps"]=[]; json.dump(p, sys.stdout)' >"$T/p1.json"
PID1=$(cells-mdm --json policy push "$DEV" "$T/p1.json" | json_get "d[0]['id']")
check "a policy (with the signing key's delegation) is acknowledged" wait_for 20 entry_is "$PID1" acknowledged
check "gateway serves the work number" cells-mdm gateway assign +15550101 1
tel() { cellctl --json tel status | json_get "$1"; }
check "cellsd connects to the simulated modem" wait_for 10 bash -c "[ \"\$(cellctl --json tel status | json_get \"d['modem']['connected']\")\" = True ]"
check_eq "no VP has a number yet" 0 "$(tel "len(d['vps'])")"
VID=$(cells-mdm --json voip assign "$DEV" work +15550101 1 | json_get "d['id']")
check "the signed assignment is acknowledged" wait_for 20 entry_is "$VID" acknowledged
check_eq "work answers to its number, applied live" "+15550101 1" "$(tel "' '.join(str(x) for v in d['vps'] if v['vp']=='work' for x in (v['number'], v['digit']))")"
check_eq "the assignment is audited as the MDM's" 1 "$(audit_count tel.number.assign "outcome='ok' and actor='mdm' and vp='work'")"
python3 - "$CELLS_RUN_DIR" "$SIM" >"$T/call.out" 2>&1 <<'PY'
import sys, os
sys.path.insert(0, os.path.join(os.environ["CELLS_SRC"], "tests", "integration"))
from tel_vp import Vp, sim
work = Vp(sys.argv[1] + "/tel/work.pty")
work.cmd("ATE0"); work.cmd("AT+CLIP=1")
print(sim(sys.argv[2], "call +15550101 +15557770000"))
print("\n".join(work.lines(3, lambda l: l.startswith("+CLIP"))))
print("\n".join(work.cmd("ATD+15553334444;")))
PY
check "a call to the assigned number rings work" grep -qx RING "$T/call.out"
check "caller ID arrives without the digit" grep -qx '+CLIP: "+15557770000",145' "$T/call.out"
check "without a gateway number from the MDM, work cannot dial out" bash -c "tail -1 '$T/call.out' | grep -qx ERROR"
cells-mdm modem-ctl hangup >/dev/null
VID2=$(cells-mdm --json voip assign "$DEV" personal +15550102 1 | json_get "d['id']")
check "a digit already held by work is refused by the agent" wait_for 20 entry_is "$VID2" failed
check_eq "the refusal is audited" 1 "$(audit_count tel.number.assign "outcome='refused' and vp='personal'")"
check_eq "personal got no number" 0 "$(tel "len([v for v in d['vps'] if v['vp']=='personal'])")"
RID=$(cells-mdm --json voip revoke "$DEV" work | json_get "d['id']")
check "the signed revocation is acknowledged" wait_for 20 entry_is "$RID" acknowledged
check_eq "work has no number any more, applied live" 0 "$(tel "len([v for v in d['vps'] if v['vp']=='work' and v['number']])")"
check_eq "the revocation is audited as the MDM's" 1 "$(audit_count tel.number.revoke "outcome='ok' and actor='mdm' and vp='work'")"
GID=$(cells-mdm --json voip assign "$DEV" personal +15550102 2 --gateway +15550000 | json_get "d['id']")
check "an assignment with the gateway's access number is acknowledged" wait_for 20 entry_is "$GID" acknowledged
check_eq "personal has its number and the gateway" "+15550102 +15550000" "$(tel "' '.join(v['number'] + ' ' + v.get('gateway', '') for v in d['vps'] if v['vp']=='personal')")"
check "clean shutdown" stop_cellsd
[ "$FAIL" -eq 0 ] || tail -30 "$T/cellsd.log"
finish
