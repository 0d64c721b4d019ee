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
check "policy is signed by the MDM" grep -qE "signed policy version 2 for device [0-9a-f]{32}" "$T/story.out"
check "root is pinned" grep -q "pinned: true" "$T/story.out"
check "policy version 2 is in force and compliant" grep -q "^compliance: compliant" "$T/story.out"
check "policy show lists the work VP" grep -q "^vp work: net=nat" "$T/story.out"
check "rollback to version 1 is refused with its reason" grep -q "older than the installed version 2 (rollback)" "$T/story.out"
check "after the refusal version 2 stays" grep -q "policy in force: version 2" "$T/story.out"
check "audit query shows the agent's start" grep -q "agent.started" "$T/story.out"
check "audit log verifies on the device" grep -qE "audit log verifies: [0-9]+ records" "$T/story.out"
check "audit export is written" grep -qE "exported [0-9]+ records to" "$T/story.out"
check "the MDM verifies the export offline" grep -qE "audit export verifies: device [0-9a-f]{32}" "$T/story.out"
[ "$FAIL" -eq 0 ] || cat "$T/story.out"
finish
