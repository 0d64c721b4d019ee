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
	local rc=$?
	set +e
	# VPs outlive a stopped cellsd by design (it finds them again): destroy them first
	for vp in $(cellctl --json vp list 2>/dev/null |
		python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(sys.stdin).get("vps", [])))' 2>/dev/null); do
		cellctl vp destroy "$vp" >/dev/null 2>&1
	done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	umount "$W/run/wipe/mnt" 2>/dev/null || true # the work VP's encrypted area (wipe)
	[ -n "${CELLS_DEMO_KEEP:-}" ] || rm -rf "$W"
	exit $rc
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
step "Two virtual phones, personal and work: isolated containers on one kernel"
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
step "Two virtual phones share one screen: only the foreground VP is seen"
# (the VPs work and personal are created here unless an earlier step made them)
if ! cellctl vp status work >/dev/null 2>&1 || ! cellctl vp status personal >/dev/null 2>&1; then
	bash "$SRC/scripts/mkimage.sh" "$W/img" >/dev/null
fi
for vp in work personal; do
	cellctl vp status $vp >/dev/null 2>&1 || cellctl vp create $vp --image "$W/img" >/dev/null
	[ "$(cellctl --json vp status $vp | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = running ] ||
		cellctl vp start $vp >/dev/null
	# a test app that paints the VP's own framebuffer, frame after frame
	cellctl vp exec $vp -- sh -c 'cat >/tmp/cells-draw && chmod +x /tmp/cells-draw' <"$B/tests/tools/cells-draw"
done
cellctl vp exec work -- sh -c '/tmp/cells-draw 1f4e9a >/dev/null 2>&1 &'     # work: blue
cellctl vp exec personal -- sh -c '/tmp/cells-draw f0a030 >/dev/null 2>&1 &' # personal: orange
fvp() { cellctl --json display status | python3 -c 'import json,sys; print(json.load(sys.stdin)["foreground"])'; }
top() { cellctl screenshot "$1" >/dev/null && python3 "$SRC/tests/integration/display_png.py" "$1" 4 | tail -n +2 | cut -d' ' -f1 | paste -sd, -; }
cellctl switch work >/dev/null
for _ in $(seq 50); do [ "$(top "$W/work.png")" = 1f4e9a ] && break; sleep 0.1; done
echo "foreground: $(fvp); screen shows colour $(top "$W/work.png")"
cellctl switch personal
echo "foreground: $(fvp); screen shows colour $(top "$W/personal.png")"
cellctl switch work >/dev/null
echo "foreground: $(fvp); screen shows colour $(top "$W/back.png")"
cellctl display status
step "The work VP keeps its data under its own key; the employee leaves: wipe it"
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

step "The MDM serves devices over mutual-TLS websockets"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cells-mdm serve --listen "localhost:$PORT" >"$W/mdm.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q serving "$W/mdm.log" && break; sleep 0.1; done
cat "$W/mdm.log"

step "The admin makes a one-time enrollment token; the phone enrolls (CSR, pinned CA)"
cells-mdm ca-cert >"$W/ca.pem"
TOKEN=$(cells-mdm enroll-token --ttl 600 | tail -1)
cellctl enroll "wss://localhost:$PORT" "$TOKEN" --ca "$W/ca.pem"
for _ in $(seq 1 100); do cellctl --json mgmt status | grep -q '"connected":true' && break; sleep 0.2; done
cellctl mgmt status

step "The admin pushes a signed policy; the phone verifies, applies and acknowledges it"
DEV=$(cellctl device id)
cells-mdm policy example --device "$DEV" --version 3 >"$W/policy3.json"
cells-mdm policy push "$DEV" "$W/policy3.json"
for _ in $(seq 1 100); do cells-mdm command list | grep -q acknowledged && break; sleep 0.2; done
cells-mdm command list
for _ in $(seq 1 50); do cells-mdm --json devices | grep -q '"policy_version":3' && break; sleep 0.2; done
cells-mdm devices

step "Done: the story so far ran end to end"
echo "STORY OK"
