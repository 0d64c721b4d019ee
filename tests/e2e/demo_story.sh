#!/usr/bin/env bash
# The demo story (scripts/story.sh) runs end to end against the built programs and
# every step shows what it claims.
. "$CELLS_SRC/tests/lib.sh"
need_root
CELLS_DEMO_DIR="$T/demo" bash "$CELLS_SRC/scripts/story.sh" "$CELLS_BUILD" >"$T/story.out" 2>&1
rc=$?
check_eq "story exits 0" 0 "$rc"
check "story reaches its end" grep -q "STORY OK" "$T/story.out"
check "MDM root key id is printed" grep -qE "root key id: [0-9a-f]{64}" "$T/story.out"
check "device id is printed" grep -qE "device id: [0-9a-f]{32}" "$T/story.out"
check "audit query shows the agent's start" grep -q "agent.started" "$T/story.out"
check "audit log verifies on the device" grep -qE "audit log verifies: [0-9]+ records" "$T/story.out"
check "audit export is written" grep -qE "exported [0-9]+ records to" "$T/story.out"
check "the MDM verifies the export offline" grep -qE "audit export verifies: device [0-9a-f]{32}" "$T/story.out"
[ "$FAIL" -eq 0 ] || cat "$T/story.out"
finish
