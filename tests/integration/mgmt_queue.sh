#!/usr/bin/env bash
# mgmt_queue.sh - re-enrollment and the server's queue states that never reach a device,
# with a real cells-mdm and a real cellsd on loopback:
# - a second `cellctl enroll` with the used token is refused and the device stays on its
#   channel; with a new token it succeeds: same device id, same installed policy, the
#   channel reconnects with the new certificate;
# - an entry whose expiry passed before delivery becomes `expired` (by the server's
#   sweep while the device is offline, and when the server restarts with it already
#   past: never handed out) and is never delivered;
# - a cancelled entry is never delivered;
# each proven by a later entry that IS delivered on the same reconnection;
# - a server killed with SIGKILL right after acknowledgements loses none of them and
#   has nothing applied twice (each entry id delivered and applied once);
# - the server's keepalive: pings keep an idle session, a silent device is hung up on;
# - the window: answers to entries cancelled while delivered free their slots.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
command -v sqlite3 >/dev/null || skip "sqlite3 not installed"

# setup_enrolled, keeping the token
PORT=$(free_port)
URL="wss://localhost:$PORT"
cells-mdm init >/dev/null || exit 1
cells-mdm ca-cert >"$T/ca.pem"
start_mdm || exit 1
start_cellsd || exit 1
DEV=$(cellctl device id)
TOKEN=$(cells-mdm enroll-token | tail -1)
check "enroll" cellctl enroll "$URL" "$TOKEN" --ca "$T/ca.pem"
check "the channel is up" wait_for 15 connected

push() {
	cells-mdm policy example --device "$DEV" --version "$1" >"$T/p$1.json" &&
		cells-mdm --json policy push "$DEV" "$T/p$1.json" | json_get "d[0]['id']"
}
# delivered ID: how many times the agent recorded the message (its inbox)
delivered() { sqlite3 "$CELLS_STATE/state.db" "select count(*) from mgmt_inbox where message_id='$1'"; }
accepted() { audit_count policy.accepted "details like '%\"version\":$1,%' or details like '%\"version\":$1}%'"; }
dev_field() { cells-mdm --json devices | json_get "[x['$1'] for x in d if x['device_id']=='$DEV'][0]"; }
ID3=$(push 3)
check "policy v3 is acknowledged" wait_for 20 entry_is "$ID3" acknowledged
check_eq "the agent runs policy v3" 3 "$(mgmt_field policy_version)"

# --- re-enrollment ---
CERT0=$(sqlite3 "$CELLS_STATE/state.db" "select hex(cert_pem) from mgmt_enrollment")
check_fails "re-enrolling with the used token is refused" "unknown or already used" \
	cellctl enroll "$URL" "$TOKEN" --ca "$T/ca.pem"
check_eq "...and the device keeps its certificate" "$CERT0" \
	"$(sqlite3 "$CELLS_STATE/state.db" "select hex(cert_pem) from mgmt_enrollment")"
check "...and its channel comes back" wait_for 20 connected
TOKEN2=$(cells-mdm enroll-token | tail -1)
check "re-enrolling with a new token succeeds" cellctl enroll "$URL" "$TOKEN2" --ca "$T/ca.pem"
check "the device certificate was replaced" bash -c \
	"[ \"\$(sqlite3 '$CELLS_STATE/state.db' 'select hex(cert_pem) from mgmt_enrollment')\" != '$CERT0' ]"
check_eq "the device keeps its id" "$DEV" "$(cellctl device id)"
check "the channel reconnects with the new certificate" wait_for 20 connected
check_eq "the device keeps policy v3" 3 "$(mgmt_field policy_version)"
check_eq "the MDM lists the device once" 1 "$(cells-mdm --json devices | json_get "len([x for x in d if x['device_id']=='$DEV'])")"
check "the MDM sees it online with policy v3" wait_for 10 bash -c \
	"[ \"\$(cells-mdm --json devices | python3 -c 'import json,sys; print([(x[\"online\"], x[\"policy_version\"]) for x in json.load(sys.stdin) if x[\"device_id\"]==\"$DEV\"][0])')\" = '(True, 3)' ]"
ID4=$(push 4)
check "a push after re-enrollment is acknowledged" wait_for 20 entry_is "$ID4" acknowledged
check_eq "the agent runs policy v4, installed once" "4 1" "$(mgmt_field policy_version) $(accepted 4)"

# --- expiry by the server's sweep while the device is offline ---
check "stop the device (its connection goes)" stop_cellsd
check "the MDM sees it offline" wait_for 10 bash -c "[ \"\$(cells-mdm --json devices | python3 -c 'import json,sys; print([x[\"online\"] for x in json.load(sys.stdin) if x[\"device_id\"]==\"$DEV\"][0])')\" = False ]"
ID5=$(push 5)
check_eq "v5 is queued" queued "$(entry_state "$ID5")"
mdm_sql "update queue set expires=$(($(date +%s) - 60)) where id='$ID5'"
check "the server's sweep marks v5 expired" wait_for 15 entry_is "$ID5" expired
check "...with a reason" bash -c "cells-mdm --json command list | python3 -c 'import json,sys; sys.exit(0 if [x for x in json.load(sys.stdin) if x[\"id\"]==\"$ID5\"][0][\"reason\"]==\"expired before delivery\" else 1)'"

# --- a cancelled entry ---
ID6=$(push 6)
check "a queued entry can be cancelled" cells-mdm command cancel "$ID6"
check_eq "it is cancelled" cancelled "$(entry_state "$ID6")"

# --- expiry already past when the server starts (before its first sweep) ---
stop_mdm
ID7=$(push 7)
mdm_sql "update queue set expires=$(($(date +%s) - 60)) where id='$ID7'"
# ...and one the device should get, queued last: it proves the reconnection delivers
ID8=$(push 8)
start_mdm || exit 1
start_cellsd || exit 1
check "the device reconnects" wait_for 20 connected
check "v8 (queued after them) is delivered and acknowledged" wait_for 20 entry_is "$ID8" acknowledged
check "v7 (expired while the server was down) goes to expired" wait_for 15 entry_is "$ID7" expired
check_eq "v5 stays expired, v6 cancelled" "expired cancelled" "$(entry_state "$ID5") $(entry_state "$ID6")"
check_eq "the agent never received v5, v6 or v7 (its inbox), but v8" "0 0 0 1" \
	"$(delivered "$ID5") $(delivered "$ID6") $(delivered "$ID7") $(delivered "$ID8")"
check_eq "...never installed them (audit)" "0 0 0 1" "$(accepted 5) $(accepted 6) $(accepted 7) $(accepted 8)"
check "...never logged them" bash -c "! grep -E 'policy:[567]\\b|$ID5|$ID6|$ID7' '$T/cellsd.log'"
check_eq "the agent runs policy v8" 8 "$(mgmt_field policy_version)"
check_eq "cells-mdm devices shows v8" 8 "$(dev_field policy_version)"

# --- a SIGKILLed server right after acknowledgements (serve commits the acks of a loop
# turn in one transaction and sends them only after that commit): after the restart
# every entry is acknowledged, each delivered into the agent's inbox and applied once ---
IDS=()
for v in 9 10 11 12; do IDS+=("$(push "$v")"); done
check "the first of four pushes is acknowledged" wait_for 20 entry_is "${IDS[0]}" acknowledged
kill -9 "$MDM_PID"
wait "$MDM_PID" 2>/dev/null
start_mdm || exit 1
for i in 0 1 2 3; do
	check "v$((i + 9)) is acknowledged after the restart" wait_for 30 entry_is "${IDS[$i]}" acknowledged
done
check_eq "each id reached the agent's inbox once" "1 1 1 1" \
	"$(delivered "${IDS[0]}") $(delivered "${IDS[1]}") $(delivered "${IDS[2]}") $(delivered "${IDS[3]}")"
check_eq "...and was applied once (audit)" "1 1 1 1" "$(accepted 9) $(accepted 10) $(accepted 11) $(accepted 12)"
check_eq "the agent runs policy v12" 12 "$(mgmt_field policy_version)"

# --- the server's keepalive (here a ping after 2 s idle, hang-up after 6 s): an idle
# device that answers the pings keeps its session; one that stops answering (its network
# process stopped) is hung up on ---
stop_mdm
CELLS_MDM_KEEPALIVE=2,6 start_mdm || exit 1
check "the channel is up again" wait_for 20 connected
sessions() { grep -c "device $DEV: silent for" "$T/mdm.log"; }
sleep 9
check_eq "an idle device answering pings is not hung up on" 0 "$(sessions)"
check "...and stays connected" connected
NETPID=$(mgmt_field net_pid)
# PostgreSQL: the hang-up (from lws's timers, before the loop waits) must not leave its
# requeue's transaction open across the wait (it would hold the front end's notifications
# and the rows' locks): sampled every 50 ms, none idle in a transaction for over 100 ms
if [ -n "${CELLS_MDM_DB:-}" ]; then
	for _ in $(seq 1 300); do
		pg_sql "select count(*) from pg_stat_activity where state like 'idle in transaction%' and now() - state_change > interval '100 ms'"
		sleep 0.05
	done >"$T/idle_tx" 2>/dev/null &
	SAMPLER=$!
fi
kill -STOP "$NETPID"
check "a device silent past the hang-up time is closed" wait_for 15 bash -c "grep -q 'device $DEV: silent for' '$T/mdm.log'"
if [ -n "${CELLS_MDM_DB:-}" ]; then
	sleep 1.5
	kill "$SAMPLER" 2>/dev/null
	wait "$SAMPLER" 2>/dev/null
	check_eq "no transaction left open across the wait by the hang-up ($(wc -l <"$T/idle_tx") looks)" 0 "$(awk '{n += $1} END {print n + 0}' "$T/idle_tx")"
fi
kill -CONT "$NETPID"
check "...and it reconnects" wait_for 30 connected

# --- the window: an answer to an entry cancelled while it was delivered still frees its
# slot. 17 `audit request`s while the device cannot answer: each replaces (cancels) the
# one before, 16 fill the window; the answers to the cancelled ones come back once it
# can; a later policy must still go out on the same session ---
hellos() { grep -c "device $DEV: hello" "$T/mdm.log"; }
H0=$(hellos)
NETPID=$(mgmt_field net_pid)
kill -STOP "$NETPID"
for i in $(seq 1 17); do
	RID=$(cells-mdm --json audit request "$DEV" | json_get "d['id'] if isinstance(d, dict) else d[0]['id']")
	[ "$i" -le 16 ] && wait_for 10 entry_is "$RID" delivered
done
check_eq "the 17th waits queued (the window of 16 is full)" queued "$(entry_state "$RID")"
kill -CONT "$NETPID"
check "the 17th is acknowledged once the 16 are answered" wait_for 30 entry_is "$RID" acknowledged
cells-mdm policy example --device "$DEV" --version 77 >"$T/p77.json"
ID77=$(cells-mdm --json policy push "$DEV" "$T/p77.json" | json_get "d[0]['id']")
check "a later policy is acknowledged on the same session" wait_for 20 entry_is "$ID77" acknowledged
check_eq "...without a reconnection (no new HELLO)" "$H0" "$(hellos)"
check "clean shutdown" stop_cellsd
finish
