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
# the development host's device profile (docs/DEVICES.md); power requests are recorded
cellsd --state-dir "$W/state" --run-dir "$W/run" --device-profile "$SRC/profiles/devhost.json" \
	--power-backend record >"$W/cellsd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.1; done
cellctl status

step "The device's identity"
echo "device id: $(cellctl device id)"

step "The enterprise signs its policy for this device; the phone pins the MDM root and applies it"
# the example policy, with the VPN device (TUN) for work alone
cells-mdm policy example --device "$(cellctl device id)" --version 2 |
	python3 -c 'import json,sys; p=json.load(sys.stdin); [v["devices"].update({"vpn": "exclusive" if v["name"] == "work" else "no-access"}) for v in p["vps"]]; json.dump(p, sys.stdout, indent=1)' >"$W/policy.json"
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
step "Device access by policy, enforced by the kernel: the VPN device is work's alone"
cellctl device list | grep -E '^(CLASS|vpn|display)' || cellctl device list
for vp in work personal; do
	echo "$vp: /dev/net/tun $(cellctl vp exec $vp -- sh -c 'if [ -c /dev/net/tun ] && : </dev/net/tun; then echo opens; else echo absent; fi')"
done
echo "personal makes the node itself: $(cellctl vp exec personal -- sh -c 'mkdir -p /tmp/d; mknod /tmp/d/tun c 10 200 2>&1 && echo made')"
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
step "The work VP's configuration is password-protected (Argon2id, throttled)"
echo "employee-password" >"$W/work.pw"
echo "guess-1234" >"$W/wrong.pw"
cellctl vp password work --new-password-file "$W/work.pw"
if cellctl vp wipe work --password-file "$W/wrong.pw"; then echo "a wrong password was accepted!"; exit 1; fi
cellctl vp status work | grep -E '^(state|name):' | paste -sd' ' -

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

step "The MDM locks the work VP: it freezes, the screen shows the lock screen, compliance says why"
cellctl vp exec work --password-file "$W/work.pw" -- sh -c \
	'(i=0; while :; do i=$((i+1)); echo $i >/tmp/tick; sleep 0.1; done) >/dev/null 2>&1 &'
tick() { cat "/proc/$(cellctl --json vp status work | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')/root/tmp/tick"; }
for _ in $(seq 1 50); do [ "$(tick 2>/dev/null || echo 0)" -ge 5 ] && break; sleep 0.1; done # it runs
LID=$(cells-mdm --json lock "$DEV" work | python3 -c 'import json,sys; d=json.load(sys.stdin); print((d[0] if isinstance(d, list) else d)["id"])')
for _ in $(seq 1 100); do [ "$(cellctl --json vp status work | python3 -c 'import json,sys; print(json.load(sys.stdin).get("lock") or "")')" ] && break; sleep 0.2; done
T1=$(tick); sleep 1; T2=$(tick)
echo "work's counter while locked: $T1 -> $T2 ($([ "$T1" = "$T2" ] && echo frozen || echo running))"
cellctl switch work >/dev/null 2>&1 || true
echo "the screen shows: $(top "$W/locked.png")"
comp() { cells-mdm --json devices | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["compliance"], ",".join(d.get("compliance_reasons", [])))'; }
for _ in $(seq 1 100); do comp | grep -q "vp-locked:work" && break; sleep 0.2; done
echo "the MDM sees: $(comp)"
cellctl vp unlock work --password-file "$W/work.pw"
for _ in $(seq 1 100); do [ "$(comp)" = "compliant " ] && break; sleep 0.2; done
T1=$(tick); sleep 1; T2=$(tick)
echo "after the employee unlocked it: counter $T1 -> $T2 ($([ "$T1" = "$T2" ] && echo frozen || echo running)); the MDM sees: $(comp)"

step "The employee leaves: the MDM wipes the work VP (crypto-erase, signed receipt)"
cellctl vp exec work --password-file "$W/work.pw" -- sh -c 'echo quarterly numbers >/report.txt'
cellctl vp exec personal -- sh -c 'echo holiday photos >/photos.txt'
WORK=$(cellctl wipe prepare work)
echo "work's files live in its fscrypt directory: $(ls "$WORK/upper" | paste -sd' ' -)"
WID=$(cells-mdm --json wipe "$DEV" work | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
state_of() { cells-mdm --json command list "$DEV" | python3 -c 'import json,sys; print("".join(e["state"] for e in json.load(sys.stdin) if e["id"] == sys.argv[1]))' "$1"; }
for _ in $(seq 1 150); do [ "$(state_of "$WID")" = acknowledged ] && break; sleep 0.2; done
echo "wipe command $WID: $(state_of "$WID")"
cellctl wipe status work
cells-mdm receipts "$DEV"
cells-mdm --json receipts "$DEV" | python3 -c 'import json,sys; sys.stdout.buffer.write(bytes.fromhex(json.load(sys.stdin)[0]["receipt"]))' >"$W/receipt.bin"
openssl pkey -in "$W/state/device.key" -pubout -out "$W/device.pub"
cells-mdm receipt verify "$W/receipt.bin" --device-key "$W/device.pub"
cellctl vp status work >/dev/null 2>&1 || echo "work VP: gone"
[ ! -e "$WORK/upper/report.txt" ] && echo "work data: gone"
[ "$(cellctl vp exec personal -- cat /photos.txt)" = "holiday photos" ] && echo "personal data: intact"

step "The personal VP (not encrypted) is destroyed: a wipe that deletes its files, and the receipt says how many"
cellctl vp destroy personal # no password is set for personal; destroying a VP with data is a wipe
cellctl --json wipe status personal | python3 -c 'import json,sys; o=json.load(sys.stdin)["ops"][-1]; print("personal wipe receipt: method %s, %s files, %s bytes removed" % (o.get("method"), o.get("files_removed"), o.get("bytes_removed")))'
grep -rqF "holiday photos" "$W/state" && echo "personal data: still on disk!" || echo "personal data: gone from the disk"

step "The device's audit log reaches the MDM (uploaded over the channel); the auditor verifies it there"
cellctl vp start nosuch >/dev/null 2>&1 || true # a refused request: audited on the device
AID=$(cells-mdm --json audit request "$DEV" | python3 -c 'import json,sys; d=json.load(sys.stdin); print((d[0] if isinstance(d, list) else d)["id"])')
for _ in $(seq 1 150); do [ "$(state_of "$AID")" = acknowledged ] && break; sleep 0.2; done
up() { cellctl --json mgmt status | python3 -c 'import json,sys; u=json.load(sys.stdin)["audit_upload"]; print(u["acked_seq"] == u["head_seq"])'; }
for _ in $(seq 1 150); do [ "$(up)" = True ] && break; sleep 0.2; done
echo "audit upload command $AID: $(state_of "$AID"); all records uploaded: $(up)"
cells-mdm audit "$DEV" --limit 5
cells-mdm audit verify "$DEV"

step "Done: the story so far ran end to end"
echo "STORY OK"
