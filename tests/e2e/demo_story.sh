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
check "the personal VP runs and answers from inside" grep -qE "^personal says: hello from personal, .* 10\.213\." "$T/story.out"
check "the work VP runs and answers from inside" grep -qE "^work says: hello from work, .* 10\.213\." "$T/story.out"
check "both VPs are listed as running" bash -c "grep -E '^(personal|work) +running' '$T/story.out' | wc -l | grep -qx 2"
[ "$FAIL" -eq 0 ] || cat "$T/story.out"
finish
