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
STEP=0
step() { STEP=$((STEP + 1)); printf '\n== %d. %s\n' "$STEP" "$*"; }

step "The enterprise initialises its MDM (root key, delegated signing key)"
cells-mdm init

step "The phone starts the Cells agent"
mkdir -p "$W/state" "$W/run"
cellsd --state-dir "$W/state" --run-dir "$W/run" >"$W/cellsd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
cellctl status

step "The device's identity"
echo "device id: $(cellctl device id)"

step "The enterprise signs its policy for this device; the phone pins the MDM root and applies it"
cells-mdm policy example --device "$(cellctl device id)" --version 2 >"$W/policy.json"
cells-mdm policy sign "$W/policy.json" -o "$W/policy.bin"
cells-mdm export-root >"$W/root.pub"
cellctl trust pin "$W/root.pub"
cellctl policy apply "$W/policy.bin"
cellctl policy show
step "An older policy (version 1) is refused: no rollback"
cells-mdm policy example --device "$(cellctl device id)" --version 1 >"$W/old.json"
cells-mdm policy sign "$W/old.json" -o "$W/old.bin"
if cellctl policy apply "$W/old.bin"; then echo "rollback was accepted!"; exit 1; fi
echo "policy in force: version $(cellctl --json policy show | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')"
step "The auditor queries, verifies and exports the audit log; the MDM verifies the export"
cellctl audit query --limit 5
cellctl audit verify
cellctl audit export "$W/audit.bundle"
cells-mdm audit verify "$W/audit.bundle"

step "Done: the story so far ran end to end"
echo "STORY OK"
