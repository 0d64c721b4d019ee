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
check "the pushed policy is acknowledged" grep -qE "policy v1 +50 +acknowledged" "$T/story.out"
check "cells-mdm devices shows the device online with policy 1" grep -qE "^[0-9a-f]{32} +yes +1 +compliant" "$T/story.out"
[ "$FAIL" -eq 0 ] || cat "$T/story.out"
finish
