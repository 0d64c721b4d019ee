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
check "the phone enrolls with the MDM" grep -qE "enrolled device [0-9a-f]{32} with wss://localhost:" "$T/story.out"
check "the channel connects (mutual TLS)" grep -qE "^connected: true" "$T/story.out"
check "the pushed policy is acknowledged" grep -qE "policy v3 +50 +acknowledged" "$T/story.out"
check "cells-mdm devices shows the device online with policy 3" grep -qE "^[0-9a-f]{32} +yes +3 +compliant" "$T/story.out"
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
check "display: work in front shows work's colour" grep -q "foreground: work; screen shows colour 1f4e9a" "$T/story.out"
check "display: after the switch only personal's colour" grep -q "foreground: personal; screen shows colour f0a030" "$T/story.out"
check_eq "display: switching back shows work again" 2 "$(grep -c "foreground: work; screen shows colour 1f4e9a" "$T/story.out")"
check "the personal VP runs and answers from inside" grep -qE "^personal says: hello from personal, .* 10\.213\." "$T/story.out"
check "the work VP runs and answers from inside" grep -qE "^work says: hello from work, .* 10\.213\." "$T/story.out"
check "both VPs are listed as running" bash -c "grep -E '^(personal|work) +running' '$T/story.out' | wc -l | grep -qx 2"
[ "$FAIL" -eq 0 ] || cat "$T/story.out"
finish
