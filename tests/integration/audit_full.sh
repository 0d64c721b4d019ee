#!/usr/bin/env bash
# A small filesystem filled up: the log writes one "audit.near_full" record, then
# refuses every append (fail closed); nothing acknowledged is lost, nothing is dropped
# silently; cellsd on such a filesystem refuses security-relevant requests.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
TOOL="$CELLS_BUILD/tests/integration/audit_tool"
FS="$T/fs"
mkdir -p "$FS"
mount -t tmpfs -o size=4m,mode=0700 cells-audit-test "$FS" || skip "cannot mount a tmpfs"
trap 'umount -l "$FS" 2>/dev/null; cleanup' EXIT
mkdir -p "$FS/a"
DB="$FS/a/audit.db"

# 1. near-full threshold 1 MiB on a 4 MiB filesystem
"$TOOL" fill "$DB" $((1024 * 1024)) >"$T/fill1" 2>&1
rc=$?
check_eq "fill stops with ENOSPC (fail closed)" 0 "$rc"
check "the refusal says the log is nearly full" grep -q "refused: audit log is nearly full" "$T/fill1"
check "nothing is accepted after the refusal" bash -c "! grep -q 'accepted after' $T/fill1"
grep -E '^[0-9]+$' "$T/fill1" >"$T/acked1"
last=$(tail -n 1 "$T/acked1")
check "records were acknowledged before the limit" test "$(wc -l <"$T/acked1")" -gt 100
check_eq "every acknowledged record is present" "$(wc -l <"$T/acked1")" \
	"$(sqlite3 "$DB" "SELECT count(*) FROM audit WHERE event='test.fill'")"
check_eq "the record after the last acknowledged one is audit.near_full" audit.near_full \
	"$(sqlite3 "$DB" "SELECT event FROM audit WHERE seq=$((last + 1))")"
check_eq "nothing after the near-full record" "$((last + 1))" "$(sqlite3 "$DB" 'SELECT max(seq) FROM audit')"
check "the log still verifies" "$TOOL" verify "$DB"

# 2. no threshold: the filesystem really fills (SQLITE_FULL) - still fail closed, no loss
rm -f "$FS/a/"*
"$TOOL" fill "$DB" 0 >"$T/fill2" 2>&1
rc=$?
check_eq "a really full filesystem: refused with ENOSPC" 0 "$rc"
grep -E '^[0-9]+$' "$T/fill2" >"$T/acked2"
check_eq "really full: every acknowledged record is present" "$(wc -l <"$T/acked2")" \
	"$(sqlite3 "$DB" "SELECT count(*) FROM audit WHERE event='test.fill'")"
check_eq "really full: integrity_check" ok "$(sqlite3 "$DB" 'PRAGMA integrity_check')"
check "really full: the log verifies" "$TOOL" verify "$DB"

# 3. cellsd with its state on a nearly full filesystem fails closed
rm -f "$FS/a/"*
export CELLS_STATE="$FS/a"
start_cellsd --audit-near-full-mb 8
check_eq "cellsd reports the audit log closed" closed \
	"$(cellctl --json status | sed -n 's/.*"audit": *"\([a-z]*\)".*/\1/p')"
check_fails "a security-relevant request is refused (fail closed)" "audit log cannot be written|fail closed" \
	cellctl audit export "$T/x.bundle"
check "the near-full record is in the log" bash -c "cellctl audit query --type audit.near_full | grep -q audit.near_full"
stop_cellsd
finish
