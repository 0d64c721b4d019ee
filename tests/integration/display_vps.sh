#!/usr/bin/env bash
# Display and input across two running VPs (issue 8): each VP draws its own colour
# continuously; the screen shows only the FVP's; switching flips it; the BVP's latest
# frame shows when it returns; input reaches only the FVP, also around a switch; a VP
# denied the display by a signed policy cannot map it and its running drawer is cut
# off; a VP the policy keeps out of the foreground cannot be switched to.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v busybox >/dev/null || skip "busybox-static not installed"
PNG="python3 $CELLS_SRC/tests/integration/display_png.py"
TOOLS="$CELLS_BUILD/tests/tools"
IMG="$T/img"
bash "$CELLS_SRC/scripts/mkimage.sh" "$IMG" "$TOOLS/cells-draw" "$TOOLS/cells-input-read" >/dev/null || exit 1
export CELLS_MDM_STATE_DIR="$T/mdm"
WH="90 60"
N=5400

start_cellsd --display shm:90x60 || exit 1
fvp() { cellctl --json display status | python3 -c 'import json,sys; print(json.load(sys.stdin)["foreground"])'; }
# screen: the screenshot's colours, "RRGGBB COUNT" lines joined by commas
screen() { cellctl screenshot "$T/s.png" >/dev/null && $PNG "$T/s.png" | tail -n +2 | paste -sd, -; }
# wait_screen EXPECTED: poll the screen for up to 5 s
wait_screen() { for _ in $(seq 50); do [ "$(screen)" = "$1" ] && return 0; sleep 0.1; done; return 1; }
draw() { cellctl vp exec "$1" -- sh -c "echo $2 >/tmp/colour; cells-draw --file /tmp/colour >/dev/null 2>&1 &" >/dev/null; }

for v in a b; do
	check "create and start VP $v" bash -c "cellctl vp create $v --image '$IMG' >/dev/null && cellctl vp start $v >/dev/null"
done
check_eq "the first VP to start is in front" a "$(fvp)"
check_eq "VP a is told it is in front" foreground "$(cellctl vp exec a -- cat /dev/cells/fb0.state)"
check_eq "VP b is told it is in the background" background "$(cellctl vp exec b -- cat /dev/cells/fb0.state)"
check_eq "a VP sees its geometry" "90 60 360 XRGB8888" "$(cellctl vp exec b -- cat /dev/cells/fb0.geometry)"

draw a ff0000
draw b 00ff00
check "the screen shows only the FVP's colour (red)" wait_screen "ff0000 $N"
check "switch to b" cellctl switch b
check_eq "b is in front" b "$(fvp)"
check_eq "the screen shows only b's colour (green) at once" "00ff00 $N" "$(screen)"
check_eq "and a PNG of the screen's size" "$WH" "$(cellctl screenshot "$T/s.png" >/dev/null && $PNG "$T/s.png" | head -1)"
cellctl vp exec a -- sh -c 'echo 0000ff >/tmp/colour' >/dev/null
sleep 0.3
check_eq "a's new frames (blue) stay off the screen while it is in the background" "00ff00 $N" "$(screen)"
check "switch back to a" cellctl switch a
check_eq "the screen shows a's latest frame (blue)" "0000ff $N" "$(screen)"
check_eq "a is told it is in front again" foreground "$(cellctl vp exec a -- cat /dev/cells/fb0.state)"
check "switches are audited" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='fg.switch' and outcome='ok' and actor like 'uid:%'\") -ge 2 ]"

# input: only the FVP (a) reads the key
cellctl vp exec a -- cells-input-read --count 2 --timeout 3 >"$T/in_a" 2>&1 &
ra=$!
cellctl vp exec b -- cells-input-read --count 2 --timeout 2 >"$T/in_b" 2>&1 &
rb=$!
sleep 0.5
check "inject a key" cellctl input key 30
wait $ra; wait $rb
check_eq "the FVP got the key and the SYN" "1 30 1|0 0 0" "$(paste -sd'|' "$T/in_a")"
check_eq "the BVP got nothing" "" "$(cat "$T/in_b")"

# around a switch: a key queued for a but not read before the switch never reaches a
check "inject a key nobody reads yet" cellctl input key 31
check "switch to b" cellctl switch b
cellctl vp exec a -- cells-input-read --timeout 1 >"$T/in_a2" 2>&1
check_eq "the VP that left never sees the key queued for it" "" "$(cat "$T/in_a2")"
cellctl vp exec b -- cells-input-read --timeout 1 >"$T/in_b2" 2>&1
check_eq "nor does the new FVP" "" "$(cat "$T/in_b2")"
cellctl input touch 10 20 >/dev/null
cellctl vp exec b -- cells-input-read --count 6 --timeout 2 >"$T/in_b3" 2>&1
check_eq "a tap reaches the new FVP" "3 0 10|3 1 20|1 330 1|0 0 0|1 330 0|0 0 0" "$(paste -sd'|' "$T/in_b3")"

# policy: b may not use the display nor be in front; a keeps both
check "b's drawer is running before the policy" cellctl vp exec b -- pidof cells-draw
cells-mdm init >/dev/null
cells-mdm export-root >"$T/root.pem"
check "pin the MDM root" cellctl trust pin "$T/root.pem"
cat >"$T/p.json" <<J
{"version": 1, "device": "$(cellctl device id)", "vps": [
 {"name": "a", "devices": {"display": "exclusive", "input": "exclusive"}, "foreground": {"may_be_foreground": true}},
 {"name": "b", "devices": {}, "foreground": {"may_be_foreground": false}}]}
J
cells-mdm policy sign "$T/p.json" -o "$T/p.bin" >/dev/null
check "apply a policy denying b the display and the foreground" cellctl policy apply "$T/p.bin"
for _ in $(seq 30); do [ "$(fvp)" = a ] && break; sleep 0.1; done
check_eq "b had to leave the foreground" a "$(fvp)"
check "the screen shows a (blue) again" wait_screen "0000ff $N"
check_eq "b's display is denied" denied "$(cellctl vp exec b -- cat /dev/cells/fb0.state)"
check_fails "b cannot map the display" "fb0" cellctl vp exec b -- cells-draw --frames 1 00ff00
check "b's running drawer was cut off (SIGBUS on its old mapping)" bash -c "! cellctl vp exec b -- pidof cells-draw"

check_fails "switching to b is refused" "policy" cellctl switch b
check "the refusal is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='fg.switch' and outcome='refused'\" | grep -qx '[1-9][0-9]*'"
check_eq "a still draws on the screen" "0000ff $N" "$(screen)"

for v in a b; do cellctl vp stop $v >/dev/null 2>&1; cellctl vp destroy $v >/dev/null 2>&1; done
check_eq "no VP runs: no FVP" "" "$(fvp)"
check_eq "and the screen is black" "000000 $N" "$(screen)"
check "clean shutdown on SIGTERM" stop_cellsd
finish
