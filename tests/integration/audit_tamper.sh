#!/usr/bin/env bash
# Tampering with the audit DB using the sqlite3 CLI (edit, delete, insert, reorder,
# truncate) is reported by `cellctl audit verify`, naming the first bad record; a
# truncation after an uploaded checkpoint is reported by the server; a corrupted DB
# file gives a clear error and no crash.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
TOOL="$CELLS_BUILD/tests/integration/audit_tool"
DB="$CELLS_STATE/audit.db"
export CELLS_MDM_STATE_DIR="$T/mdm"
mkdir -p "$CELLS_STATE"

# a pristine log: 30 records and a signed checkpoint at its head
"$TOOL" bulk "$DB" 30 >/dev/null
start_cellsd
check "export of the pristine log" cellctl audit export "$T/pristine.bundle"
check "pristine log verifies" cellctl audit verify
check "pristine export verifies offline" cells-mdm audit verify "$T/pristine.bundle"
stop_cellsd
cp "$DB" "$T/pristine.db"
rm -f "$DB-wal" "$DB-shm"

# tamper CASE SQL EXPECTED_SEQ: restore, tamper, verify names the seq
tamper() {
	local what=$1 sql=$2 seq=$3
	cp "$T/pristine.db" "$DB"
	rm -f "$DB-wal" "$DB-shm"
	sqlite3 "$DB" "$sql"
	start_cellsd || return
	check_fails "$what is reported at record $seq" "BROKEN at record $seq:" cellctl audit verify
	local out
	out=$(cellctl --json audit verify 2>/dev/null)
	check "$what: --json names bad_seq $seq" grep -q "\"bad_seq\":$seq" <<<"$out"
	stop_cellsd
}
tamper "an edited detail" "UPDATE audit SET details='{\"i\":999}' WHERE seq=10" 10
tamper "an edited outcome" "UPDATE audit SET outcome='refused' WHERE seq=12" 12
tamper "a deleted row" "DELETE FROM audit WHERE seq=10" 10
tamper "an inserted row" "UPDATE audit SET seq=seq+100000 WHERE seq>=10; UPDATE audit SET seq=seq-99999 WHERE seq>100000; INSERT INTO audit SELECT 10,time_us,vp,actor,event,outcome,'{}',prev_hash,hash FROM audit WHERE seq=9" 10
tamper "reordered rows" "UPDATE audit SET seq=-10 WHERE seq=10; UPDATE audit SET seq=10 WHERE seq=11; UPDATE audit SET seq=11 WHERE seq=-10" 10
# truncation: the checkpoint at the old head (33) proves records are missing; the
# restarted agent appended two records (21, 22) so the first provably missing is 23
tamper "a truncated log" "DELETE FROM audit WHERE seq>20" 23
cp "$T/pristine.db" "$T/trunc.db"
sqlite3 "$T/trunc.db" "DELETE FROM audit WHERE seq>20"
cp "$CELLS_STATE/device.key" "$T/device.key"
check_fails "a truncated log (no appends after) is reported at record 21" "BROKEN at record 21: .*truncated" "$TOOL" verify "$T/trunc.db"
tamper "a deleted head of the log" "DELETE FROM audit WHERE seq<5" 5
tamper "a re-hashed edit (hash recomputed by the attacker)" "UPDATE audit SET hash=zeroblob(32) WHERE seq=15" 15
tamper "a forged checkpoint" "UPDATE audit_checkpoint SET head_hash=zeroblob(32), signed=x'00'" 33

# the server: uploads stored, then the device log is truncated and appended to
cp "$T/pristine.db" "$DB"
rm -f "$DB-wal" "$DB-shm"
start_cellsd
DEV=$(cellctl device id)
check "server imports the export (an upload)" cells-mdm audit import "$T/pristine.bundle"
check "server verifies the device's uploads" cells-mdm audit verify "$DEV"
check "server query shows the uploaded records" bash -c "cells-mdm audit $DEV --type test --limit 5 | grep -c test.bulk | grep -qx 5"
stop_cellsd
# root on the device truncates the log after record 20, checkpoints included
sqlite3 "$DB" "DELETE FROM audit WHERE seq>20; DELETE FROM audit_checkpoint"
start_cellsd
check "the truncated local log alone still looks consistent" cellctl audit verify
check "device exports its truncated log" cellctl audit export "$T/truncated.bundle"
check "the truncated export verifies on its own" cells-mdm audit verify "$T/truncated.bundle"
check_fails "the server refuses the truncated upload" "refused: record 21" cells-mdm audit import "$T/truncated.bundle"
check_fails "server verify reports the truncation at record 21" "BROKEN at record 21" cells-mdm audit verify "$DEV"
stop_cellsd

# a corrupted DB file: clear error, no crash
cp "$T/pristine.db" "$DB"
rm -f "$DB-wal" "$DB-shm"
sz=$(stat -c %s "$DB")
dd if=/dev/urandom of="$DB" bs=1024 seek=2 count=$(( sz / 1024 - 3 )) conv=notrunc status=none
start_cellsd >/dev/null 2>&1
if kill -0 "$CELLSD_PID" 2>/dev/null && cellctl ping >/dev/null 2>&1; then
	check_fails "a corrupted DB: verify gives a clear error" "malformed|not a database|corrupt|BROKEN" cellctl audit verify
	check "cellsd survives verifying a corrupted DB" cellctl ping
	stop_cellsd
else
	check "a corrupted DB: cellsd refuses to start with a clear error" grep -qE "audit log .*(malformed|not a database|corrupt)" "$T/cellsd.log"
fi
head -c 4096 /dev/urandom >"$DB"
rm -f "$DB-wal" "$DB-shm"
cellsd --state-dir "$CELLS_STATE" --run-dir "$CELLS_RUN_DIR" >"$T/garbage.log" 2>&1
rc=$?
check_eq "a garbage DB file: cellsd exits 1 (no crash)" 1 "$rc"
check "a garbage DB file: one clear line" grep -qE "audit log .*(not a database|malformed)" "$T/garbage.log"
check "a garbage bundle: clear error" bash -c "! cells-mdm audit verify $DB 2>&1 | grep -q . || cells-mdm audit verify $DB 2>&1 | grep -q 'not a Cells audit export'"
finish
