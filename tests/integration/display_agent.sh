#!/usr/bin/env bash
# The display/input control surface of a running agent (no VP needed): screenshot of the
# shm panel as a real PNG, switch and input refusals, display status, bad options.
. "$CELLS_SRC/tests/lib.sh"
need_root
PNG="python3 $CELLS_SRC/tests/integration/display_png.py"

check_fails "a bad --display is refused at start" "display 'vga'" \
	cellsd --state-dir "$T/bad" --run-dir "$T/badrun" --display vga
check_fails "a missing evdev device is refused at start" "evdev /nonexistent" \
	cellsd --state-dir "$T/bad" --run-dir "$T/badrun" --input evdev:/nonexistent

start_cellsd --display shm:120x80 || exit 1
check "display status" cellctl display status
check_eq "status --json names the screen" "shm:120x80 120 80" \
	"$(cellctl --json display status | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["screen"], d["width"], d["height"])')"
check "the panel exists and is private" bash -c "[ \$(stat -c %a '$CELLS_RUN_DIR/display/panel') = 600 ]"

check "screenshot with no VP running" cellctl screenshot "$T/black.png"
check_eq "the screenshot is a 120x80 black PNG" "120 80|000000 9600" \
	"$($PNG "$T/black.png" | paste -sd'|')"
check "the screenshot file is private" bash -c "[ \$(stat -c %a '$T/black.png') = 600 ]"
check "screenshot is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='display.screenshot'\" | grep -qx 1"
check_fails "screenshot into a missing directory fails cleanly" "No such file" \
	cellctl screenshot "$T/nodir/x.png"

check_fails "switch to a VP that does not run" "not running" cellctl switch work
check_fails "switch to a bad name" "switch" cellctl switch ../etc
check "refused switch is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='fg.switch' and outcome='refused'\" | grep -qx 1"

check_fails "input key needs a code" "usage|CODE" cellctl input key
check_fails "input key code out of range" "CODE must be" cellctl input key 99999
check_fails "touch off the screen is refused" "off the 120x80 screen" cellctl input touch 500 10
check_eq "a key with no VP in front reaches nobody" "0" \
	"$(cellctl --json input key 30 | python3 -c 'import json,sys; print(json.load(sys.stdin)["delivered"])')"
check "switch --help" cellctl switch --help
check "agent still answers" cellctl ping
check "clean shutdown on SIGTERM" stop_cellsd
finish
