# mgmt_lib.sh - helpers of the management channel tests (sourced after tests/lib.sh).
export CELLS_MDM_STATE_DIR="$T/mdm"
export CELLS_NET_RETRY_MAX_MS=${CELLS_NET_RETRY_MAX_MS:-1000}
# MDM_DB=pg: the same test with cells-mdm on a private PostgreSQL (tests/lib.sh pg_start)
if [ "${MDM_DB:-sqlite}" = pg ]; then pg_start || exit 1; fi
# mdm_sql SQL: a statement on the MDM's database, whichever backend
mdm_sql() { if [ -n "${CELLS_MDM_DB:-}" ]; then pg_sql "$1"; else sqlite3 -cmd ".timeout 5000" "$CELLS_MDM_STATE_DIR/mdm.db" "$1"; fi; }
# mdm_hex COLUMN: SQL for a blob column as lowercase hex, whichever backend
mdm_hex() { if [ -n "${CELLS_MDM_DB:-}" ]; then echo "encode($1,'hex')"; else echo "lower(hex($1))"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port_open() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$1"; }

start_mdm() {
	cells-mdm serve --listen "localhost:$PORT" ${MDM_ARGS[@]+"${MDM_ARGS[@]}"} >>"$T/mdm.log" 2>&1 &
	MDM_PID=$!
	PIDS+=("$MDM_PID")
	wait_for 10 port_open "$PORT" || { echo "cells-mdm did not start:"; cat "$T/mdm.log"; return 1; }
}
stop_mdm() { kill "$MDM_PID" 2>/dev/null; wait "$MDM_PID" 2>/dev/null; true; }

# jq-less JSON field access: json_get EXPR (python expression on `d`) < json
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

mgmt_field() { cellctl --json mgmt status | json_get "d['$1']"; }
connected() { [ "$(mgmt_field connected)" = True ]; }
not_connected() { [ "$(mgmt_field connected)" = False ]; }
# entry_state ID: the MDM's state of a queue entry
entry_state() { cells-mdm --json command list | json_get "[e['state'] for e in d if e['id']=='$1'][0]"; }
entry_is() { [ "$(entry_state "$1")" = "$2" ]; }
audit_count() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='$1'${2:+ and $2}"; }
export -f json_get mgmt_field connected not_connected entry_state entry_is audit_count

# setup_enrolled: an initialised MDM serving on $PORT and a running cellsd enrolled with it.
setup_enrolled() {
	PORT=$(free_port)
	URL="wss://localhost:$PORT"
	cells-mdm init >/dev/null || return 1
	cells-mdm ca-cert >"$T/ca.pem"
	start_mdm || return 1
	start_cellsd "$@" || return 1
	DEV=$(cellctl device id)
	cellctl enroll "$URL" "$(cells-mdm enroll-token | tail -1)" --ca "$T/ca.pem" >/dev/null || return 1
	wait_for 15 connected
}
