#!/usr/bin/env bash
# cellsd against a hostile network process (issue 13 items 2 and 5): a --net-helper
# (net_relay.py) that runs the real cellsd-net behind itself and relays, then
# (a) floods forged commands and policies, (b) never reads what cellsd sends,
# (c) replays earlier messages, (d) sends oversized / truncated / out-of-state
# datagrams. Each time: refused or survived, nothing changed (policy version, commands),
# nothing lost (results still delivered once the helper is replaced), `cellctl ping`
# keeps answering, the state and audit tables stay bounded, refusals and stalls audited
# once per burst.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
. "$CELLS_SRC/tests/integration/net_lib.sh"
need_root
relay_setup
RELAY=(--net-helper "$T/relay/net_relay.py")
setup_enrolled "${RELAY[@]}" || { cat "$T/cellsd.log" "$T/mdm.log" "$T/relay/relay.log"; exit 1; }
ok "enrolled and connected through the relay"
relay_setup # now with the device id
cells-mdm policy example --device "$DEV" --version 2 >"$T/p2.json"
ID2=$(cells-mdm --json policy push "$DEV" "$T/p2.json" | json_get "d[0]['id']")
check "policy v2 acknowledged through the relay" wait_for 20 entry_is "$ID2" acknowledged
AID=$(cells-mdm --json audit request "$DEV" | json_get "d[0]['id']" 2>/dev/null || true)
[ -n "$AID" ] && check "an audit request acknowledged through the relay" wait_for 20 entry_is "$AID" acknowledged
check "the relay recorded the server's messages" bash -c "[ \$(ls '$T/relay/rec' | wc -l) -ge 2 ]"
ping_ms 20 >"$T/ping_idle.txt"
IDLE99=$(pct 99 <"$T/ping_idle.txt")
echo "idle: ping p50 $(pct 50 <"$T/ping_idle.txt") ms, p99 $IDLE99 ms" >>"$T/latency.txt"
STARTED=$(audit_count mgmt.command.started)
ACCEPTED=$(audit_count policy.accepted)

# restart cellsd with the relay in MODE (a fresh restart backoff for each case)
with_mode() {
	stop_cellsd
	relay_mode "$1"
	start_cellsd "${RELAY[@]}" || exit 1
}
unchanged() { # unchanged CASE
	check_eq "$1: the policy did not change" 2 "$(mgmt_field policy_version)"
	check_eq "$1: no policy was installed again" "$ACCEPTED" "$(audit_count policy.accepted)"
	check_eq "$1: no command was started" "$STARTED" "$(audit_count mgmt.command.started)"
}
latency_ok() { # latency_ok CASE FILE: every ping answered, p99 under 1 s (or 3x idle's)
	local p99 max lim=1000
	p99=$(pct 99 <"$2"); max=$(pct 100 <"$2")
	[ $((3 * IDLE99)) -gt $lim ] && lim=$((3 * IDLE99))
	echo "$1: ping p50 $(pct 50 <"$2") ms, p99 $p99 ms, max $max ms" >>"$T/latency.txt"
	check "$1: cellctl ping answered throughout (p99 ${p99} ms < $lim)" test "$max" -lt 99999 -a "$p99" -lt "$lim"
}

# --- (c) replay: every message of the session sent again, three times
A0=$(audit_rows)
with_mode replay
check "replay: the relay replayed" wait_for 30 test -e "$T/relay/done.replay"
sleep 2
unchanged replay
check "replay: still connected" wait_for 20 connected
check "replay: at most a few audit records" bash -c "[ \$((\$(audit_rows) - $A0)) -lt 60 ]"

# --- (a) flood: forged commands and policies as fast as the relay can write
A0=$(audit_rows); O0=$(rows mgmt_outbox); I0=$(rows mgmt_inbox)
with_mode flood
ping_ms 40 >"$T/ping_flood.txt" &
PP=$!
check "flood: the flood was cut off and audited" wait_for 30 bash -c "[ \$(audit_count mgmt.ipc.flood) -ge 1 ]"
wait "$PP"
latency_ok flood "$T/ping_flood.txt"
check "flood: the network process was restarted" wait_for 30 connected
sleep 3
check_eq "flood: audited once for the burst" 1 "$(audit_count mgmt.ipc.flood)"
unchanged flood
check "flood: outbox bounded (<= 256 + 16)" bash -c "[ \$(rows mgmt_outbox) -le 272 ]"
check "flood: inbox grew by at most one burst (<= 64 + 16)" bash -c "[ \$((\$(rows mgmt_inbox) - $I0)) -le 80 ]"
check "flood: audit log grew by at most one burst (< 300)" bash -c "[ \$((\$(audit_rows) - $A0)) -lt 300 ]"
echo "flood: outbox $O0 -> $(rows mgmt_outbox), inbox $I0 -> $(rows mgmt_inbox), audit +$(($(audit_rows) - A0))" >>"$T/latency.txt"

# --- (b) never reads: results pile up; cellsd does not block, stalls are audited once
with_mode noread
ping_ms 30 >"$T/ping_noread.txt" &
PP=$!
check "noread: the relay stopped reading" wait_for 30 test -e "$T/relay/done.noread"
cells-mdm policy example --device "$DEV" --version 3 >"$T/p3.json"
ID3=$(cells-mdm --json policy push "$DEV" "$T/p3.json" | json_get "d[0]['id']")
check "noread: the stall was detected and audited" wait_for 60 bash -c "[ \$(audit_count mgmt.net.stalled) -ge 1 ]"
wait "$PP"
latency_ok noread "$T/ping_noread.txt"
check "noread: the replaced network process delivers the queued result (v3 acknowledged)" wait_for 60 entry_is "$ID3" acknowledged
check_eq "noread: the agent runs v3" 3 "$(mgmt_field policy_version)"
check_eq "noread: one stall audited for the burst" 1 "$(audit_count mgmt.net.stalled)"
check "noread: outbox bounded" bash -c "[ \$(rows mgmt_outbox) -le 272 ]"
ACCEPTED=$(audit_count policy.accepted)

# --- (d) oversized, truncated and out-of-state datagrams
R0=$(audit_count mgmt.ipc.refused)
with_mode bad
check "bad: three rounds ran" wait_for 60 test -e "$T/relay/done.bad"
check "bad: each was refused and audited" wait_for 20 bash -c "[ \$(audit_count mgmt.ipc.refused) -ge $((R0 + 3)) ]"
check "bad: oversized refused" grep -q "over the size limit" "$T/cellsd.log"
check "bad: out-of-state refused" grep -q "enroll_result: not permitted\|not permitted in the channel" "$T/cellsd.log"
check "bad: the network process is back" wait_for 40 connected
check_eq "bad: the policy did not change" 3 "$(mgmt_field policy_version)"
check "bad: cellctl ping" cellctl ping
check "clean shutdown" stop_cellsd
cat "$T/latency.txt"
[ "$FAIL" -eq 0 ] || { tail -30 "$T/relay/relay.log"; grep -E "refused|stalled|flood|restart" "$T/cellsd.log" | tail -40; }
finish
