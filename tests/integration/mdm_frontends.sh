#!/usr/bin/env bash
# Several cells-mdm front ends on one PostgreSQL (a private server, tests/lib.sh
# pg_start): two `serve` processes, a TCP load balancer in front of them (loopback,
# TLS passes through: a new connection goes to the first front end that accepts it),
# a real cellsd enrolled through it.
# A command queued by the CLI reaches the device on whichever front end holds it (the
# front end is woken by LISTEN/NOTIFY). The front end holding the device is SIGKILLed
# with one entry in flight (delivered, not acknowledged) and one queued: the device
# reconnects to the other front end and each is applied exactly once (by its id), as
# the agent's own audit log and the database rows show. A fan-out that commits after a
# later push (PostgreSQL numbers inserts, not commits) still wakes its devices. A session
# a front end still holds after the device moved (half-open) takes nothing.
. "$CELLS_SRC/tests/lib.sh"
MDM_DB=pg
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
PORT=$(free_port)
URL="wss://localhost:$PORT"

check "cells-mdm init (keys in the state dir, tables in PostgreSQL)" cells-mdm init
check_eq "the store's tables are in PostgreSQL" 4 "$(pg_sql "select count(*) from information_schema.tables where table_name in ('queue','devices','tokens','receipts')")"
check "no sqlite store was made" test ! -e "$CELLS_MDM_STATE_DIR/mdm.db"
# the same schema on both backends: every table's columns, in order, as a sqlite store
# (cells-mdm init without --db) has them. A store made when the translation to
# PostgreSQL's words took the column name blob for the type had queue.bytea: the next
# open renames it.
pg_sql "alter table queue rename column blob to bytea"
check "a store opened again (cells-mdm devices)" cells-mdm devices
CELLS_MDM_DB= CELLS_MDM_STATE_DIR="$T/lite" cells-mdm init >/dev/null
lite_cols() {
	for f in mdm.db audit.db; do
		sqlite3 "$T/lite/$f" "select m.name || ':' || (select group_concat(name, ',') from (select name from pragma_table_info(m.name) order by cid)) from sqlite_master m where m.type='table' and m.name not like 'sqlite_%'"
	done | sort -u
}
pg_cols() { pg_sql "select table_name || ':' || string_agg(column_name, ',' order by ordinal_position) from information_schema.columns where table_schema=current_schema() group by table_name" | sort; }
check_eq "PostgreSQL's tables and columns are sqlite's (queue.blob included)" "$(lite_cols)" "$(pg_cols)"
cells-mdm ca-cert >"$T/ca.pem"

P0=$(free_port)
P1=$(free_port)
FE=()
start_fe() {
	local p=$P0
	[ "$1" = 1 ] && p=$P1
	cells-mdm serve --listen "localhost:$p" >>"$T/fe$1.log" 2>&1 &
	FE[$1]=$!
	PIDS+=("${FE[$1]}")
	wait_for 10 port_open "$p" || { cat "$T/fe$1.log"; return 1; }
}
start_fe 0 || exit 1
start_fe 1 || exit 1
# the balancer: each connection to PORT is spliced to the first front end that answers
# ($T/lb/prefer: a port tried first); $T/lb/halfopen-PORT makes the connections to that
# front end half-open: the device's side is closed, the front end's kept (it sees nothing,
# as when a phone changes networks)
mkdir -p "$T/lb"
python3 - "$PORT" "$T/lb" "$P0" "$P1" <<'PY' >>"$T/lb.log" 2>&1 &
import asyncio, os, sys
port, flags, backs = int(sys.argv[1]), sys.argv[2], [int(p) for p in sys.argv[3:]]
def flag(n): return os.path.exists(os.path.join(flags, n))
async def pipe(r, w, st):
    try:
        while (b := await r.read(65536)):
            if st["half"]:
                continue
            w.write(b)
            await w.drain()
    except Exception:
        pass
    finally:
        if not st["half"]:
            w.close()
async def watch(p, cw, st):
    while not st["half"]:
        await asyncio.sleep(0.05)
        if flag("halfopen-%d" % p):
            st["half"] = True
            print("half-open: a connection to %d" % p, flush=True)
            cw.close()
async def conn(cr, cw):
    order = list(backs)
    try:
        pref = int(open(os.path.join(flags, "prefer")).read())
        order.sort(key=lambda p: p != pref)
    except (OSError, ValueError):
        pass
    for p in order:
        try:
            br, bw = await asyncio.open_connection("127.0.0.1", p)
        except OSError:
            continue
        st = {"half": False}
        w = asyncio.ensure_future(watch(p, cw, st))
        await asyncio.gather(pipe(cr, bw, st), pipe(br, cw, st))
        if st["half"]:
            await asyncio.sleep(3600) # the front end's side stays open
        w.cancel()
        return
    cw.close()
async def main():
    s = await asyncio.start_server(conn, "127.0.0.1", port)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
PIDS+=($!)
wait_for 10 port_open "$PORT" || { cat "$T/lb.log"; exit 1; }
check "two front ends serve" bash -c "kill -0 ${FE[0]} && kill -0 ${FE[1]}"

start_cellsd || exit 1
DEV=$(cellctl device id)
check "enroll through one front end" cellctl enroll "$URL" "$(cells-mdm enroll-token | tail -1)" --ca "$T/ca.pem"
check "the agent connects" wait_for 15 connected

# which front end holds the device's connection (an established socket on its port)
holds() { [ -n "$(ss -tnH state established "( sport = :$1 )")" ]; }
export -f holds
check "front end 0 holds the device" wait_for 5 holds "$P0"
A=0 B=1

# the online flag of `cells-mdm devices` (the only device)
online() { cells-mdm --json devices | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[0]["online"] else 1)'; }
export -f online
check "the device is listed online" online
check_eq "each front end has its lease row" 2 "$(pg_sql "select count(*) from frontends")"

# a policy queued by the CLI (no front end involved) reaches the device
cells-mdm policy example --device "$DEV" --version 3 >"$T/p3.json"
t0=$(date +%s%N)
ID3=$(cells-mdm --json policy push "$DEV" "$T/p3.json" | json_get "d[0]['id']")
check "the CLI's policy is acknowledged through the front end holding the device" wait_for 15 entry_is "$ID3" acknowledged
echo "    push -> acknowledged: $((($(date +%s%N) - t0) / 1000000)) ms (CLI, NOTIFY to the holder)"
check_eq "the agent runs policy version 3" 3 "$(mgmt_field policy_version)"

# an entry in flight: the device's network process is stopped, the front end sends
# the policy (delivered), then a second entry is queued while that front end is
# stopped too; then the front end is SIGKILLed
NETPID=$(mgmt_field net_pid)
kill -STOP "$NETPID"
cells-mdm policy example --device "$DEV" --version 4 >"$T/p4.json"
ID4=$(cells-mdm --json policy push "$DEV" "$T/p4.json" | json_get "d[0]['id']")
check "the front end sent the policy: delivered, not acknowledged" wait_for 10 entry_is "$ID4" delivered
kill -STOP "${FE[$A]}"
IDR=$(cells-mdm --json audit request "$DEV" | json_get "d['id'] if isinstance(d, dict) else d[0]['id']")
check_eq "a second entry waits queued" queued "$(entry_state "$IDR")"
kill -9 "${FE[$A]}"
wait "${FE[$A]}" 2>/dev/null
# the device cannot reconnect yet (its network process is stopped): the killed front
# end's lease runs out (6 s) and the device is shown offline
t0=$(date +%s%N)
check "the killed front end's device is listed offline within its lease, before it reconnects" wait_for 10 bash -c '! online'
echo "    listed offline $((($(date +%s%N) - t0) / 1000000)) ms after the SIGKILL (lease 6 s, refreshed every 2 s)"
kill -CONT "$NETPID"
check "the device reconnects to the other front end" wait_for 30 bash -c "connected && holds $P1"
check "the in-flight policy is acknowledged" wait_for 20 entry_is "$ID4" acknowledged
check "the queued request is acknowledged" wait_for 20 entry_is "$IDR" acknowledged
check_eq "policy 4 was installed exactly once (the agent's audit log)" 1 "$(audit_count policy.accepted "details like '%\"version\":4%'")"
check_eq "the agent runs policy version 4" 4 "$(mgmt_field policy_version)"
# the policy reached the device from the killed front end; its result (the agent's
# outbox, resent on reconnect) is recorded by the other one, against the same row
check "the in-flight policy's result was taken by the surviving front end" grep -q "$ID4 acknowledged" "$T/fe$B.log"
check "...not by the killed one" bash -c "! grep -q '$ID4 acknowledged' '$T/fe$A.log'"
check_eq "one row for the policy, acknowledged (the DB)" "1|2" "$(pg_sql "select count(*), max(state) from queue where id='$ID4'")"
check_eq "nothing is left queued or delivered" 0 "$(pg_sql "select count(*) from queue where state in (0,1)")"

# the surviving front end still gets what the CLI queues
cells-mdm policy example --device "$DEV" --version 5 >"$T/p5.json"
ID5=$(cells-mdm --json policy push "$DEV" "$T/p5.json" | json_get "d[0]['id']")
check "a later policy reaches the device on the surviving front end" wait_for 15 entry_is "$ID5" acknowledged
check "the device is listed online again (the surviving front end holds it)" online
# a front end starting removes the rows of the dead ones
start_fe 0 || exit 1
check_eq "the dead front end's lease row is gone, the new one's is there" 2 "$(pg_sql "select count(*) from frontends")"
check "the device is still listed online" online
# a front end never waits with a transaction open: PostgreSQL would hold the queue
# notifications for it until that transaction ended (its periodic lease/expiry writes
# once left one open across the wait in poll(): a push took ~1 s now and then). A
# transaction idle for more than 100 ms is one left across a wait (the loop's turns take
# microseconds to milliseconds; a look may catch one between two statements of a turn,
# more likely on a loaded machine and with writes pipelined until the commit)
idle_tx=0
for _ in $(seq 1 30); do
	n=$(pg_sql "select count(*) from pg_stat_activity where state like 'idle in transaction%'
		and now() - state_change > interval '100 ms'")
	idle_tx=$((idle_tx + n))
	sleep 0.1
done
check_eq "no front end idles in an open transaction (30 looks over 3 s)" 0 "$idle_tx"
worst=0
for v in $(seq 100 109); do
	cells-mdm policy example --device "$DEV" --version "$v" >"$T/pv.json"
	t0=$(date +%s%N)
	ID=$(cells-mdm --json policy push "$DEV" "$T/pv.json" | json_get "d[0]['id']")
	wait_for 10 entry_is "$ID" acknowledged
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$ms" -gt "$worst" ] && worst=$ms
done
# (a figure only: with the sanitizers the agent's apply alone takes up to seconds)
echo "    10 single pushes: the slowest push -> acknowledged took $worst ms"

# A fan-out is one notification "* LO HI" at its commit. PostgreSQL's sequence numbers
# inserts, not commits: a fan-out still open while a later single push commits has seqs
# below those the front ends have already seen (their 1 s look moves a cursor past the
# later push). Made to happen: 64 more (never connected) devices, so `push --all` is a
# fan-out of 65; a psql session holds the seq its last insert will take (an uncommitted
# row with that seq: the insert waits on it, the 64 before it, the real device's
# included, are in), a push to another device commits meanwhile, the front ends look
# (2.5 s), then the psql session rolls back and the fan-out commits. The real device
# must get its entry without reconnecting.
FX=ffffffffffffffffffffffffffffff # the 64 devices: FX00..FX3f
pg_sql "insert into devices(id, cert_serial, enrolled_at) select '$FX' || lpad(to_hex(i), 2, '0'), 'x', 1 from generate_series(0, 63) i" >/dev/null
SEQ=$(pg_sql "select nextval(pg_get_serial_sequence('queue', 'seq'))")
LAST=$((SEQ + 65))
{
	# (seq, id, device, kind, priority, state, created, expires, dedup, what, blob)
	echo "begin; insert into queue values ($LAST, 'q-blocker', '${FX}3f', 0, 0, 9, 0, 0, '', 'blocker', ''::bytea);"
	while [ ! -e "$T/release" ]; do sleep 0.1; done
	echo "rollback;"
} | PGAPPNAME=cells-blocker psql -h "$PG_DIR" -U cells -d cells -XAtq -v ON_ERROR_STOP=1 >"$T/psql.out" 2>&1 &
PSQL=$!
held() { [ "$(pg_sql "select state from pg_stat_activity where application_name='cells-blocker'")" = "idle in transaction" ]; }
check "a psql session holds seq $LAST (uncommitted)" wait_for 10 held
cells-mdm policy example --version 200 | python3 -c 'import json,sys; p=json.load(sys.stdin); del p["device"]; print(json.dumps(p))' >"$T/pall.json"
cells-mdm --json policy push --all "$T/pall.json" >"$T/pall.out" 2>&1 &
ALL=$!
waiting() { [ "$(pg_sql "select count(*) from pg_locks where not granted")" -gt 0 ]; }
check "the fan-out's last insert waits on it (its 64 others are in)" wait_for 10 waiting
cells-mdm policy example --device "${FX}01" --version 201 >"$T/p1.json"
check "meanwhile a push to another device commits" cells-mdm policy push "${FX}01" "$T/p1.json"
check "...with a seq above the fan-out's" test "$(pg_sql "select max(seq) from queue")" -gt "$LAST"
sleep 2.5 # the front ends' 1 s look has moved past it
touch "$T/release"
check "the psql session rolled back" wait "$PSQL"
check "the fan-out commits" wait "$ALL"
IDALL=$(json_get "[e['id'] for e in d if e['device_id']=='$DEV'][0]" <"$T/pall.out")
check "a fan-out that commits after a later push still wakes its devices (the real one applies it)" wait_for 15 entry_is "$IDALL" acknowledged
check_eq "the agent runs the fan-out's policy" 200 "$(mgmt_field policy_version)"
pg_sql "delete from queue where device like '$FX%'; delete from devices where id like '$FX%'" >/dev/null

# A session another front end still holds (its connection half-open, not noticed yet)
# takes nothing once the device said HELLO elsewhere: the device's connection to the
# front end holding it goes half-open, the device reconnects to the other; a push while
# that one is held up (SIGSTOP 1.5 s) waits queued - the dead session does not take it
# into nowhere - and reaches the device when it goes on.
if holds "$P1"; then OLD=1 NEW=0 OP=$P1 NP=$P0; else OLD=0 NEW=1 OP=$P0 NP=$P1; fi
echo "$NP" >"$T/lb/prefer"
touch "$T/lb/halfopen-$OP"
check "the device's connection to front end $OLD goes half-open; it reconnects to $NEW" wait_for 40 bash -c "connected && holds $NP"
check "front end $OLD still holds its (dead) session" holds "$OP"
cells-mdm policy example --device "$DEV" --version 300 >"$T/p300.json"
kill -STOP "${FE[$NEW]}"
ID300=$(cells-mdm --json policy push "$DEV" "$T/p300.json" | json_get "d[0]['id']")
sleep 1.5
check_eq "front end $OLD's dead session took nothing (the entry waits queued)" queued "$(entry_state "$ID300")"
kill -CONT "${FE[$NEW]}"
check "the push reaches the device through front end $NEW" wait_for 15 entry_is "$ID300" acknowledged
check_eq "the agent runs it" 300 "$(mgmt_field policy_version)"
rm -f "$T/lb/halfopen-$OP" "$T/lb/prefer"

check "clean shutdown" stop_cellsd
finish
