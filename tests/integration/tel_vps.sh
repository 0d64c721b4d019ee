#!/usr/bin/env bash
# The telephony proxy through real VPs: each running VP's virtual modem is
# /dev/cells/modem (a pty of its own devpts instance); calls ring only the right VP.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
export CELLS_MDM_STATE_DIR="$T/mdm" PATH="$CELLS_BUILD/tests/integration:$PATH"
SIM="$T/mdm/sim"
cells-mdm gateway assign +15550101 1 >/dev/null
cells-mdm gateway assign +15550102 2 >/dev/null
cells-mdm modem-sim --pty "$T/modem" --gateway +15550000 >"$T/sim.log" 2>&1 &
PIDS+=($!)
mkdir -p "$CELLS_STATE"
check "assign work its number" tel_assign "$CELLS_STATE" assign work +15550101 1 +15550000
check "assign personal its number" tel_assign "$CELLS_STATE" assign personal +15550102 2 +15550000
start_cellsd --modem "$T/modem" || exit 1
check "create work" ctl vp create work --image "$IMG" --net none
check "create personal" ctl vp create personal --image "$IMG" --net none
check "start work" ctl vp start work
check "start personal" ctl vp start personal
modem_in() { cellctl vp exec "$1" -- sh -c 'test -c "$(readlink -f /dev/cells/modem)"'; }
for _ in $(seq 50); do modem_in work && modem_in personal && break; sleep 0.1; done
check "work has /dev/cells/modem (a pty of its own devpts)" modem_in work
check "personal has /dev/cells/modem" modem_in personal
check "no host-level endpoint for a real VP" test ! -e "$CELLS_RUN_DIR/tel/work.pty"
# at VP SECS CMDS...: send the AT commands from inside the VP, print what came back
at() {
	local vp=$1 secs=$2; shift 2
	local cmds=""
	for c in "$@"; do cmds="$cmds$c\\r"; done
	cellctl vp exec "$vp" -- sh -c "exec 3<>/dev/cells/modem; printf '$cmds' >&3; timeout $secs cat <&3" | tr -d '\r'
}
out=$(at work 1 ATE0 AT+CIMI)
check "AT+CIMI inside work" grep -q "^001010123456789$" <<<"$out"
out=$(at personal 1 ATE0 AT+CIMI AT+CSQ)
check "AT+CIMI and AT+CSQ inside personal" bash -c "grep -q '^001010123456789$' <<<'$out' && grep -q '^+CSQ: 24,99$' <<<'$out'"
check_eq "real modem saw AT+CIMI once" 1 "$(grep -cx 'AT+CIMI' "$SIM/modem.log")"

fvp() { cellctl --json display status | python3 -c 'import json,sys; print(json.load(sys.stdin)["foreground"])'; }
check "the employee switches to personal" cellctl switch personal
check_eq "personal is the FVP" personal "$(fvp)"
at work 4 ATE0 AT+CLIP=1 >"$T/work.out" &
W=$!
at personal 4 ATE0 AT+CLIP=1 >"$T/pers.out" &
P=$!
sleep 1.5
check "call the work number" cells-mdm call +15550101 --from +15557770000
wait $W $P
check "work rings" grep -qx "RING" "$T/work.out"
check "work sees the caller ID without the digit" grep -qx '+CLIP: "+15557770000",145' "$T/work.out"
check "personal's reader worked (it got its OKs)" grep -qx OK "$T/pers.out"
check "personal does not ring" bash -c "! grep -q RING '$T/pers.out'"
check_eq "the call brought work to the foreground (the real FVP: screen and input)" work "$(fvp)"
check "the switch is audited as the telephony's" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='fg.switch' and actor='tel' and vp='work' and outcome='ok'\" | grep -qx 1"
cells-mdm modem-ctl hangup >/dev/null
out=$(at personal 1 ATE0 'ATD+15553334444;')
check "background personal may not dial" grep -qx ERROR <<<"$out"
out=$(at work 3 ATE0 'ATD+15553334444;')
check "foreground work dials" bash -c "tail -1 <<<'$out' | grep -qx OK"
check "callee sees work's number" grep -q "from=+15550101 to=+15553334444" "$SIM/calls.log"
at work 1 ATE0 ATH >/dev/null
cells-mdm modem-ctl hangup >/dev/null 2>&1
check "the employee switches back to personal" cellctl switch personal
out=$(at work 1 ATE0 'ATD+15553334445;')
check "now work, in the background, may not dial" grep -qx ERROR <<<"$out"
out=$(at personal 3 ATE0 'ATD+15553334445;')
check "and personal, in front, dials" bash -c "tail -1 <<<'$out' | grep -qx OK"
at personal 1 ATE0 ATH >/dev/null

check "stop work" ctl vp stop work
check "work's modem is gone from tel status" bash -c "cellctl --json tel status | python3 -c 'import json,sys; v=[x for x in json.load(sys.stdin)[\"vps\"] if x[\"vp\"]==\"work\"][0]; sys.exit(v[\"pty\"]!=\"\")'"
check "start work again" ctl vp start work
for _ in $(seq 50); do modem_in work && break; sleep 0.1; done
out=$(at work 1 ATE0 AT)
check "work's modem is back after a restart" grep -qx OK <<<"$out"
check "clean shutdown" stop_cellsd
[ "$FAIL" -eq 0 ] || tail -20 "$T/cellsd.log"
finish
