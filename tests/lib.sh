# lib.sh - helpers for the shell-driven integration and end-to-end tests.
# Each test sources this, gets a private temporary directory ($T) and the built
# programs on $PATH, and reports "N passed, N failed" at the end.
set -u
: "${CELLS_BUILD:?run through ctest (CELLS_BUILD unset)}"
: "${CELLS_SRC:?run through ctest (CELLS_SRC unset)}"
export PATH="$CELLS_BUILD/agent:$CELLS_BUILD/server-mock:$PATH"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
T=$(mktemp -d /tmp/cells-t.XXXXXX)
export CELLS_STATE="$T/state" CELLS_RUN_DIR="$T/run"
PASS=0
FAIL=0
PIDS=()

cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	pg_stop
	# mounts a test left under $T (an encrypted VP storage area outlives cellsd by design)
	awk -v t="$T/" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo 2>/dev/null | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	[ -n "${KEEP_T:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
# a test stopped by a signal (ctest's timeout, ^C) cleans up too (a PostgreSQL it
# started would outlive it otherwise)
trap 'exit 143' TERM
trap 'exit 130' INT

# skip REASON: exit 77 (ctest: skipped) - a failure when CI=true.
skip() {
	if [ "${CI:-}" = "true" ]; then
		echo "FAIL: would skip under CI: $*"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}
need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }

# pg_start: a private PostgreSQL (Debian's package) for this test: initdb into a
# temporary directory as its own user (postgres when we are root, else ourselves),
# listening on a unix socket in that directory only (no TCP), one database "cells".
# Exports CELLS_MDM_DB (every cells-mdm command then uses it) and PG_DIR; stopped and
# removed at exit. No PostgreSQL: a skip, a failure when CI=true.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_start() {
	[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || skip "PostgreSQL not installed ($PG_BIN)"
	command -v psql >/dev/null || skip "psql not installed"
	if [ "$(id -u)" = 0 ]; then id -u postgres >/dev/null 2>&1 || skip "no postgres user"; fi
	PG_DIR=$(mktemp -d /tmp/cells-pg.XXXXXX)
	[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
	if ! pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U cells --auth=trust -E UTF8 --no-sync \
		>"$PG_DIR/initdb.log" 2>&1; then
		echo "initdb failed:"; cat "$PG_DIR/initdb.log"; return 1
	fi
	if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
		-o "-k $PG_DIR -c listen_addresses= -c fsync=off -c max_connections=200" start >/dev/null; then
		echo "PostgreSQL did not start:"; cat "$PG_DIR/server.log"; return 1
	fi
	pg_as "$PG_BIN/createdb" -h "$PG_DIR" -U cells cells || return 1
	export CELLS_MDM_DB="postgresql://cells@/cells?host=$PG_DIR" PG_DIR
}
pg_stop() {
	[ -n "${PG_DIR:-}" ] || return 0
	pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1
	[ -n "${KEEP_T:-}" ] || rm -rf "$PG_DIR"
	PG_DIR=
}
# pg_sql SQL: run SQL in the test's database, rows as a|b lines
pg_sql() { psql -h "$PG_DIR" -U cells -d cells -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
export -f pg_sql

ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
# check DESC CMD...: passes when CMD succeeds
check() { local d=$1; shift; if "$@" >"$T/last.out" 2>&1; then ok "$d"; else not_ok "$d"; sed 's/^/    /' "$T/last.out"; fi; }
# check_fails DESC PATTERN CMD...: passes when CMD fails and its stderr/stdout matches PATTERN
check_fails() {
	local d=$1 pat=$2; shift 2
	if "$@" >"$T/last.out" 2>&1; then not_ok "$d (succeeded)"; sed 's/^/    /' "$T/last.out"; return; fi
	if grep -qE -- "$pat" "$T/last.out"; then ok "$d"; else not_ok "$d (output lacks /$pat/)"; sed 's/^/    /' "$T/last.out"; fi
}
# check_eq DESC EXPECTED ACTUAL
# wait_for SECONDS CMD...: CMD succeeds within SECONDS (looked at every 0.2 s)
wait_for() {
	local n=$(($1 * 5)); shift
	for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
	return 1
}
check_eq() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (expected '$2', got '$3')"; fi; }

# start_cellsd [ARGS...]: start the agent on $CELLS_STATE/$CELLS_RUN_DIR, wait for it.
# The test settings below (variables of the test scripts, never read by cellsd itself)
# become cellsd options here.
start_cellsd() {
	mkdir -p "$CELLS_STATE" "$CELLS_RUN_DIR"
	local o=()
	[ -n "${CELLS_WIPE_STORAGE:-}" ] && o+=(--wipe-storage "$CELLS_WIPE_STORAGE")
	[ -n "${CELLS_WIPE_IMAGE_MB:-}" ] && o+=(--wipe-image-mb "$CELLS_WIPE_IMAGE_MB")
	[ -n "${CELLS_NET_RETRY_MAX_MS:-}" ] && o+=(--net-retry-max-ms "$CELLS_NET_RETRY_MAX_MS")
	[ -n "${CELLS_AUDIT_NEAR_FULL_MB:-}" ] && o+=(--audit-near-full-mb "$CELLS_AUDIT_NEAR_FULL_MB")
	cellsd --state-dir "$CELLS_STATE" --run-dir "$CELLS_RUN_DIR" "${o[@]}" "$@" >>"$T/cellsd.log" 2>&1 &
	CELLSD_PID=$!
	PIDS+=("$CELLSD_PID")
	for _ in $(seq 1 100); do
		cellctl ping >/dev/null 2>&1 && return 0
		kill -0 "$CELLSD_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "cellsd did not start:"; cat "$T/cellsd.log"
	return 1
}
stop_cellsd() {
	kill "$CELLSD_PID" 2>/dev/null
	wait "$CELLSD_PID" 2>/dev/null
	local rc=$?
	return $rc
}

finish() {
	echo "$PASS passed, $FAIL failed"
	[ "$FAIL" -eq 0 ]
	exit $?
}
