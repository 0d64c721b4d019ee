#!/usr/bin/env bash
# The telephony proxy: cellsd --modem on the carrier/modem simulator's pty; work and
# personal are real running VPs whose virtual modems the scenario opens from the host
# through /proc/PID/root (tel_scenario.py says what is checked); the other numbers'
# VPs are not running (host-level endpoints RUN_DIR/tel/NAME.pty).
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
export CELLS_MDM_STATE_DIR="$T/mdm" PATH="$CELLS_BUILD/tests/integration:$PATH"
SIM="$T/mdm/sim"
check "gateway serves the work number (digit 1)" cells-mdm gateway assign +15550101 1
check "gateway serves the personal number (digit 2)" cells-mdm gateway assign +15550102 2
cells-mdm modem-sim --pty "$T/modem" --gateway +15550000 >"$T/sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$SIM/modem.sock" ] && break; sleep 0.1; done
check "modem simulator links its pty" test -L "$T/modem"
check_fails "a call to an unknown number is refused" "serves no number" cells-mdm call +15559999999
mkdir -p "$CELLS_STATE"
check "assign work its number" tel_assign "$CELLS_STATE" assign work +15550101 1 +15550000
check "assign personal its number" tel_assign "$CELLS_STATE" assign personal +15550102 2 +15550000
for i in 3 4 5 6 7 8; do tel_assign "$CELLS_STATE" assign "extra$i" "+1555010$i" "$i" +15550000 >/dev/null; done
check_fails "a digit cannot serve two VPs" "already assigned" tel_assign "$CELLS_STATE" assign other +15550103 1 +15550000
check_fails "a bad number is refused" "E.164" tel_assign "$CELLS_STATE" assign other 12ab 3 +15550000
check "assignment and refusals are audited" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='tel.number.assign'\") = 10 ]"

start_cellsd --modem "$T/modem" || exit 1
check "cellctl tel status" cellctl tel status
check "create work" ctl vp create work --image "$IMG" --net none
check "create personal" ctl vp create personal --image "$IMG" --net none
check "start personal (first: it takes the foreground)" ctl vp start personal
check "start work" ctl vp start work
# modem_path VP: the VP's /dev/cells/modem as the host reaches it
modem_path() {
	local pid t
	pid=$(vp_field "$1" pid)
	for _ in $(seq 50); do
		t=$(cellctl vp exec "$1" -- readlink -f /dev/cells/modem 2>/dev/null) && [ -n "$t" ] && break
		sleep 0.1
	done
	echo "/proc/$pid/root$t"
}
export TEL_WORK=$(modem_path work) TEL_PERSONAL=$(modem_path personal)
check "the VPs' modems are reachable from the host" test -c "$TEL_WORK" -a -c "$TEL_PERSONAL"
python3 "$CELLS_SRC/tests/integration/tel_scenario.py" "$CELLS_RUN_DIR" "$SIM" >"$T/scen.out" 2>&1
while IFS= read -r l; do
	case $l in
	"ok - "*) ok "${l#ok - }" ;;
	"not ok - "*) not_ok "${l#not ok - }" ;;
	*) echo "    $l" ;;
	esac
done <"$T/scen.out"
# the VP policy: work may not receive or place calls; personal's calls do not switch
cells-mdm init >/dev/null
cells-mdm export-root >"$T/root.pub"
check "pin the MDM root" cellctl trust pin "$T/root.pub"
cells-mdm policy example --device "$(cellctl device id)" | python3 -c '
import json, sys
p = json.load(sys.stdin)
for v in p["vps"]:
    if v["name"] == "work":
        v["calls"] = {"allow_incoming": False, "allow_outgoing": False}
    else:
        v["foreground"]["incoming_call_switches"] = False
json.dump(p, sys.stdout)' >"$T/policy.json"
cells-mdm policy sign "$T/policy.json" -o "$T/policy.bin" >/dev/null
check "install the signed policy" cellctl policy apply "$T/policy.bin"
python3 "$CELLS_SRC/tests/integration/tel_policy.py" "$CELLS_RUN_DIR" "$SIM" >"$T/pol.out" 2>&1
while IFS= read -r l; do
	case $l in
	"ok - "*) ok "${l#ok - }" ;;
	"not ok - "*) not_ok "${l#not ok - }" ;;
	*) echo "    $l" ;;
	esac
done <"$T/pol.out"
check "the rejected incoming call is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='tel.call.incoming' and outcome='refused' and details like '%policy%'\" | grep -qx 1"
check "a refused dial is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='tel.call.outgoing' and outcome='refused' and vp='work'\" | grep -qx '[1-9][0-9]*'"
check "the allowed dial is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='tel.call.outgoing' and outcome='ok' and vp='personal'\" | grep -qx 1"
check "bad AT input is audited (rate-limited)" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='tel.at.rejected' and vp='work'\" | grep -qx '[1-9]'"
check "incoming calls are audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='tel.call.incoming' and outcome='ok'\" | grep -qx 4"
check "cellsd still answers" cellctl ping
check "clean shutdown" stop_cellsd
[ "$FAIL" -eq 0 ] || tail -30 "$T/cellsd.log"
finish
