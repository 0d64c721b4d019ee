#!/usr/bin/env bash
# One cellsd per state directory: a second cellsd on the same state dir (even with
# another run dir) exits non-zero with one clear line, before touching anything (no
# control socket, no database opened); the first keeps running; once it is gone the
# lock is free again (also after SIGKILL: the kernel drops a dead process's flock).
. "$CELLS_SRC/tests/lib.sh"
need_root
start_cellsd || exit 1
check "the lock file holds the first cellsd's pid" bash -c "[ \"\$(cat '$CELLS_STATE/cellsd.lock')\" = '$CELLSD_PID' ]"
mkdir -p "$T/run2"
DB0=$(stat -c '%Y %s' "$CELLS_STATE/state.db")
cellsd --state-dir "$CELLS_STATE" --run-dir "$T/run2" >"$T/second.out" 2>&1
rc=$?
check "the second cellsd exits non-zero" bash -c "[ $rc -ne 0 ]"
check_eq "with one line" 1 "$(wc -l <"$T/second.out")"
check "that names the other cellsd and the state dir" grep -qE "another cellsd \(pid $CELLSD_PID\) already runs on state dir" "$T/second.out"
check_eq "it made no control socket" "" "$(ls -A "$T/run2")"
check_eq "it did not touch the state DB" "$DB0" "$(stat -c '%Y %s' "$CELLS_STATE/state.db")"
check "the first still answers" cellctl ping
# the same state dir named through a symlink is the same state dir
ln -s "$CELLS_STATE" "$T/alias"
check_fails "through a symlink too" "already runs on state dir" cellsd --state-dir "$T/alias" --run-dir "$T/run2"
kill -9 "$CELLSD_PID"; wait "$CELLSD_PID" 2>/dev/null
check "after the first died (SIGKILL), a new cellsd starts" start_cellsd
check "clean shutdown" stop_cellsd
finish
