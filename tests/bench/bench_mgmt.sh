#!/usr/bin/env bash
# bench_mgmt.sh [BUILD_DIR] [N] [BASELINE_OUTPUT] - how many mutual-TLS device sessions
# one cells-mdm holds on this machine, its memory per connection, push->ack latency at
# N=1 and during a fan-out, and the time to fan one signed policy out to all N (last
# delivery, last ack). Loopback only. BASELINE_OUTPUT: the saved output of an earlier
# run (e.g. another build, same machine): the figures are printed side by side with
# their ratios (new/old).
#
# BENCH_PG=1: instead, three runs side by side in one go - one front end on sqlite,
# one front end on a private PostgreSQL (tests/lib.sh pg_start), three front ends on
# that PostgreSQL with the N devices spread over them - and their ratios to sqlite;
# then the three front ends again with the first one SIGKILLed when half of the fan-out
# is delivered (BENCH_KILL=1 of bench_mgmt): its devices reconnect to the other two, and
# the database must show one acknowledged entry per device (counted by id).
set -euo pipefail
if [ "${BENCH_PG:-}" = 1 ]; then
	export CELLS_BUILD=$(cd "${1:-build}" && pwd) CELLS_SRC=$(cd "$(dirname "$0")/../.." && pwd)
	N=${2:-10000}
	. "$CELLS_SRC/tests/lib.sh"
	set -e
	ulimit -n "$(ulimit -Hn)"
	fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
	# run NAME FRONT_ENDS: fresh state (and database), FRONT_ENDS servers, the bench
	run() {
		local name=$1 nfe=$2 ports=() pids=()
		export CELLS_MDM_STATE_DIR="$T/$name"
		[ -n "${CELLS_MDM_DB:-}" ] && pg_sql "DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null 2>&1 && { pg_sql "SELECT pg_stat_reset()" >/dev/null 2>&1 || true; }
		"$CELLS_BUILD/server-mock/cells-mdm" init >/dev/null
		for i in $(seq 1 "$nfe"); do
			ports+=("$(fp)")
			"$CELLS_BUILD/server-mock/cells-mdm" serve --listen "localhost:${ports[-1]}" >"$T/$name.$i.log" 2>&1 &
			pids+=($!)
			PIDS+=($!)
		done
		sleep 1
		local pl
		pl=$(IFS=,; echo "${ports[*]}")
		echo "== $name: $nfe front end(s) on $([ -n "${CELLS_MDM_DB:-}" ] && echo PostgreSQL || echo sqlite), N=$N, $(nproc) cores"
		"$CELLS_BUILD/tests/bench/bench_mgmt" "$CELLS_MDM_STATE_DIR" localhost "$pl" "$N" "${pids[0]}" | tee "$T/$name.out"
		kill "${pids[@]}" 2>/dev/null || true # (BENCH_KILL: the first is gone already)
		wait "${pids[@]}" 2>/dev/null || true
		# what the database holds per device after one fan-out (and the identities)
		if [ -n "${CELLS_MDM_DB:-}" ]; then
			pg_sql "VACUUM ANALYZE" >/dev/null 2>&1 || true
			pg_sql "select 'database: ' || pg_database_size(current_database()) / 1024 || ' kB, ' ||
				round(sum(pg_total_relation_size(c.oid))::numeric / $N) || ' bytes per device in the tables (' ||
				string_agg(c.relname || ' ' || pg_total_relation_size(c.oid) / 1024 || ' kB', ', ') || ')'
				from pg_class c join pg_namespace n on n.oid = c.relnamespace
				where n.nspname = 'public' and c.relkind = 'r'"
			pg_sql "select 'rows written: ' || sum(n_tup_ins) || ' inserts, ' || sum(n_tup_upd) || ' updates, ' ||
				round((sum(n_tup_ins) + sum(n_tup_upd))::numeric / $N, 1) || ' per device' from pg_stat_user_tables"
			# statements on the queue (each an index scan), and transactions committed
			pg_sql "select 'queue index scans: ' || coalesce(idx_scan, 0) || ', ' ||
				round(coalesce(idx_scan, 0)::numeric / $N, 1) || ' per device; transactions committed: ' ||
				(select xact_commit from pg_stat_database where datname = current_database())
				from pg_stat_user_tables where relname = 'queue'"
			# the fan-out's entries: one per device, each acknowledged once (by its id)
			pg_sql "select 'fan-out entries: ' || count(*) || ' rows for ' || count(distinct device) ||
				' devices, ' || count(*) filter (where state = 2) || ' acknowledged, ' ||
				count(*) filter (where state in (0, 1)) || ' left queued or delivered, ' ||
				count(*) filter (where attempts > 1) || ' delivered more than once'
				from queue where dedup = 'policy:5000'"
		else
			echo "database: $(($(du -sk "$CELLS_MDM_STATE_DIR" | cut -f1))) kB state dir (sqlite)"
		fi
	}
	unset CELLS_MDM_DB
	run sqlite-1 1
	pg_start
	run pg-1 1
	run pg-3 3
	BENCH_KILL=1 run pg-3-kill 3
	python3 "$CELLS_SRC/tests/bench/mgmt_compare.py" sqlite-1="$T/sqlite-1.out" \
		pg-1="$T/pg-1.out" pg-3="$T/pg-3.out" pg-3-kill="$T/pg-3-kill.out"
	set +e # tests/lib.sh's cleanup kills what may be gone already
	exit 0
fi
B=$(cd "${1:-build}" && pwd)
N=${2:-10000}
BASE=${3:-}
W=$(mktemp -d /tmp/cells-bench-mgmt.XXXXXX)
trap 'kill $SP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
ulimit -n "$(ulimit -Hn)"
export CELLS_MDM_STATE_DIR="$W/mdm"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$B/server-mock/cells-mdm" init >/dev/null
"$B/server-mock/cells-mdm" serve --listen "localhost:$PORT" >"$W/mdm.log" 2>&1 &
SP=$!
sleep 1
echo "cells-mdm pid $SP on localhost:$PORT, N=$N, $(nproc) cores, fd limit $(ulimit -n)"
echo "load before: $(uptime)"
"$B/tests/bench/bench_mgmt" "$W/mdm" localhost "$PORT" "$N" "$SP" | tee "$W/out"
echo "load after: $(uptime)"
[ -n "$BASE" ] || exit 0
python3 "$(dirname "$0")/mgmt_compare.py" before="$BASE" after="$W/out"
