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
check "display: work in front shows work's colour" grep -q "foreground: work; screen shows colour 1f4e9a" "$T/story.out"
check "display: after the switch only personal's colour" grep -q "foreground: personal; screen shows colour f0a030" "$T/story.out"
check_eq "display: switching back shows work again" 2 "$(grep -c "foreground: work; screen shows colour 1f4e9a" "$T/story.out")"
[ "$FAIL" -eq 0 ] || cat "$T/story.out"
finish
