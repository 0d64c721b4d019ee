#!/usr/bin/env bash
# story.sh BUILD_DIR - the Cells story, step by step, with the programs of BUILD_DIR.
# Used by the demo (scripts/demo.sh) and by the end-to-end test (tests/e2e), so the demo
# a user sees is the story CI checks. Each step prints what it does and what happened.
set -euo pipefail
B=$(cd "${1:?usage: story.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$B/agent:$B/server-mock:$PATH"
W=${CELLS_DEMO_DIR:-$(mktemp -d /tmp/cells-demo.XXXXXX)}
mkdir -p "$W"
export CELLS_RUN_DIR="$W/run" CELLS_MDM_STATE_DIR="$W/mdm"
PIDS=()
finish() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${CELLS_DEMO_KEEP:-}" ] || rm -rf "$W"
}
trap finish EXIT
step() { printf '\n== %s\n' "$*"; }

step "1. The enterprise initialises its MDM (root key, delegated signing key)"
cells-mdm init

step "2. The phone starts the Cells agent"
mkdir -p "$W/state" "$W/run"
cellsd --state-dir "$W/state" --run-dir "$W/run" >"$W/cellsd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
cellctl status

step "3. The device's identity"
echo "device id: $(cellctl device id)"

step "4. Two virtual phones, personal and work: isolated containers on one kernel"
if [ "$(id -u)" = 0 ]; then
	bash "$SRC/scripts/mkimage.sh" "$W/image"
	cellctl vp create personal --image "$W/image" --net nat >/dev/null
	cellctl vp create work --image "$W/image" --net nat >/dev/null
	cellctl vp start personal >/dev/null
	cellctl vp start work >/dev/null
	cellctl vp list
	for vp in personal work; do
		echo "$vp says: $(cellctl vp exec "$vp" -- sh -c 'echo "hello from $(hostname), $(ps | grep -c .) lines of ps, $(ip -o -4 addr show eth0 | awk "{print \$4}")"')"
	done
else
	echo "(skipped: creating VPs needs root)"
fi

step "Done: the story so far ran end to end"
echo "STORY OK"
