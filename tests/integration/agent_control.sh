#!/usr/bin/env bash
# The agent's control socket: ping, status, device id, access control, bad requests.
. "$CELLS_SRC/tests/lib.sh"

check "programs answer --help" bash -c 'for p in cellsd cellsd-net cellctl cells-mdm; do $p --help >/dev/null || exit 1; done'
check_fails "cellctl without cellsd says so" "cannot reach cellsd" cellctl ping

start_cellsd || exit 1
check "ping" cellctl ping
id1=$(cellctl device id)
check "device id is 32 hex chars" grep -qE '^[0-9a-f]{32}$' <<<"$id1"
check_eq "device id is stable" "$id1" "$(cellctl device id)"
check_eq "status --json names the device" "$id1" \
	"$(cellctl --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["device_id"])')"
check "device key is private" bash -c "[ \$(stat -c %a '$CELLS_STATE/device.key') = 600 ]"
check "control socket is not world-accessible" bash -c "[ \$(( 0\$(stat -c %a '$CELLS_RUN_DIR/control.sock') & 7 )) = 0 ]"

# garbage on the control socket: refused, audited, agent keeps running
python3 - "$CELLS_RUN_DIR/control.sock" <<'PY' >"$T/garbage.out" 2>&1
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1])
s.sendall(struct.pack(">I", 6) + b"\xff\xff\xff\xff\xff\xff")
print(s.recv(4096))
s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s2.connect(sys.argv[1])
s2.sendall(struct.pack(">I", 0x7fffffff))  # over the limit
print(s2.recv(4096))
PY
check "agent survives garbage and oversized frames" cellctl ping
check "garbage request is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='control.refused'\" | grep -qx '[1-9][0-9]*'"

# a non-root peer is refused (and audited) when no control group is configured
if id nobody >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	chmod 755 "$T" "$CELLS_RUN_DIR"; chmod 666 "$CELLS_RUN_DIR/control.sock"
	check_fails "non-root peer is refused" "cellsd|closed|reset|Broken pipe" setpriv --reuid nobody --regid nogroup --clear-groups cellctl --run-dir "$CELLS_RUN_DIR" ping
	check "refusal of non-root peer is audited" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='control.denied'\" | grep -qx '[1-9][0-9]*'"
fi
check "clean shutdown on SIGTERM" stop_cellsd
finish
