#!/usr/bin/env bash
# devices.sh - cellsd's device namespaces at agent level: the device profile is loaded
# and listed by `cellctl device list`, a bad profile or option stops the agent with one
# line. (The per-VP enforcement is tested on the kernel mechanisms in
# tests/unit/test_devmode.c, test_power.c, test_wifi.c, test_memory.c, and inside two
# running VPs under signed policies in tests/integration/devices_vp.sh.)
. "$CELLS_SRC/tests/lib.sh"
need_root
P="$CELLS_SRC/profiles"

printf '{"format":"cells-device-profile/1","name":"x","classes":[{"class":"a","modes":["shared"],"nodes":[{"path":"/dev/../etc/shadow"}]}]}' >"$T/bad.json"
mkdir -p "$CELLS_STATE" "$CELLS_RUN_DIR"
check_fails "a bad profile stops the agent with one line" "plain path under /dev" \
	cellsd --state-dir "$CELLS_STATE" --run-dir "$CELLS_RUN_DIR" --device-profile "$T/bad.json"
check_fails "an unknown power backend is refused" "auto, sysfs or record" \
	cellsd --state-dir "$CELLS_STATE" --run-dir "$CELLS_RUN_DIR" --power-backend suspendnow

start_cellsd --device-profile "$P/devhost.json" --power-backend record
check "device list answers" cellctl device list
cellctl device list >"$T/list.txt" 2>&1
check "device list shows the vpn class and its node" grep -q "^vpn .*/dev/net/tun" "$T/list.txt"
cellctl device list --json >"$T/list.json"
check_eq "json: profile name" devhost "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["profile"])' "$T/list.json")"
check_eq "json: storage refuses shared" "['no-access', 'exclusive']" \
	"$(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print([c["modes"] for c in d["classes"] if c["class"]=="storage"][0])' "$T/list.json")"
check_eq "json: power backend is the recording one" record \
	"$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["power"]["backend"])' "$T/list.json")"
check "device list --help" cellctl device list --help
finish
