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
	umount "$W/run/wipe/mnt" 2>/dev/null || true # the work VP's encrypted area (wipe)
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

step "W. The work VP keeps its data under its own key; the employee leaves: wipe it"
WORK=$(cellctl wipe prepare work)
PERSONAL=$(cellctl wipe prepare personal)
echo "quarterly numbers" >"$WORK/report.txt"
echo "holiday photos" >"$PERSONAL/photos.txt"
echo "work data in $WORK (fscrypt), personal data in $PERSONAL"
echo "employee-password" >"$W/wipe.pw"
# (the policy steps may have done this already: then these are no-ops)
cells-mdm export-root >"$W/root.pem" && cellctl trust pin "$W/root.pem" >/dev/null 2>&1 || true
cells-mdm policy example --device "$(cellctl device id)" >"$W/wipe-policy.json"
cells-mdm policy sign "$W/wipe-policy.json" -o "$W/wipe-policy.bin" >/dev/null
cellctl policy apply "$W/wipe-policy.bin" >/dev/null 2>&1 || true
cellctl vp password work --new-password-file "$W/wipe.pw" >/dev/null 2>&1 || true
cellctl vp wipe work --password-file "$W/wipe.pw"
cellctl wipe status work
[ ! -e "$WORK/report.txt" ] && echo "work data: gone"
[ -f "$PERSONAL/photos.txt" ] && echo "personal data: intact"
cellctl --json wipe status work | grep -q '"kernel_key_status":"absent"' && echo "work key: absent (signed receipt stored)"

step "Done: the story so far ran end to end"
echo "STORY OK"
