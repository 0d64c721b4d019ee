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

step "4. The MDM serves devices over mutual-TLS websockets"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cells-mdm serve --listen "localhost:$PORT" >"$W/mdm.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q serving "$W/mdm.log" && break; sleep 0.1; done
cat "$W/mdm.log"

step "5. The admin makes a one-time enrollment token; the phone enrolls (CSR, pinned CA)"
cells-mdm ca-cert >"$W/ca.pem"
TOKEN=$(cells-mdm enroll-token --ttl 600 | tail -1)
cellctl enroll "wss://localhost:$PORT" "$TOKEN" --ca "$W/ca.pem"
for _ in $(seq 1 100); do cellctl --json mgmt status | grep -q '"connected":true' && break; sleep 0.2; done
cellctl mgmt status

step "6. The admin pushes a signed policy; the phone verifies, applies and acknowledges it"
DEV=$(cellctl device id)
echo '{"version": 1, "vps": [{"vp": "work"}, {"vp": "personal"}]}' >"$W/policy.json"
cells-mdm policy push "$DEV" "$W/policy.json"
for _ in $(seq 1 100); do cells-mdm command list | grep -q acknowledged && break; sleep 0.2; done
cells-mdm command list
for _ in $(seq 1 50); do cells-mdm --json devices | grep -q '"policy_version":1' && break; sleep 0.2; done
cells-mdm devices

step "Done: the story so far ran end to end"
echo "STORY OK"
