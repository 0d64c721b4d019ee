#!/usr/bin/env bash
# Signed policies through cellsd: trust pin once; every refusal (forged, unknown key,
# expired delegation, wrong role, rollback, same version with other bytes, other
# device, expired, truncated, oversized, conflicting exclusive) gives its reason, is
# audited, and leaves the policy in force unchanged; a real enforcer (devices) whose OS
# op fails (cellsd --test-fail, a CELLS_TEST_HOOKS build) leaves the running VP's devices
# as they were; SIGKILL before/after the persist point (--test-crash-at) and a restart
# keep the version monotonic and the policy in force whole, enforced in the VP.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v busybox >/dev/null || skip "busybox-static not installed"
[ -c /dev/net/tun ] && [ -c /dev/fuse ] || skip "this host lacks /dev/net/tun or /dev/fuse"
cellsd --test-fail x 2>&1 | grep -q "OP:ERRNO:WHEN" ||
	skip "cellsd has no test hooks (configure with -DCELLS_TEST_HOOKS=ON: scripts/build.sh test)"
cc -static -O2 -o "$T/dev_probe" "$CELLS_SRC/tests/integration/dev_probe.c" 2>"$T/cc.err" ||
	skip "cannot build a static probe: $(head -1 "$T/cc.err")"
IMG="$T/img"
bash "$CELLS_SRC/scripts/mkimage.sh" "$IMG" "$T/dev_probe" >/dev/null || exit 1
DEVS=(--device-profile "$CELLS_SRC/profiles/devhost.json" --power-backend record --wpa-ctrl "$T/no-wpa.sock")
probe() { cellctl vp exec personal -- dev_probe "$@" 2>&1; }
FORGE="$CELLS_BUILD/tests/integration/policy_forge"
export CELLS_MDM_STATE_DIR="$T/mdm"
forge() { ASAN_OPTIONS=detect_leaks=0 "$FORGE" "$CELLS_MDM_STATE_DIR" "$@"; }
show() { cellctl --json policy show | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
audit_count() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='$1' and outcome='$2'"; }

cells-mdm init >/dev/null || exit 1
start_cellsd || exit 1
ID=$(cellctl device id)
# mk VERSION [DEVICE [PERSONAL_DEVICES_JSON]] -> $T/pVERSION.json and .bin (the example
# policy; PERSONAL_DEVICES_JSON is added to personal's device modes)
mk() {
	cells-mdm policy example --version "$1" --device "${2:-$ID}" >"$T/p$1.json" || return 1
	if [ -n "${3:-}" ]; then
		python3 - "$T/p$1.json" "$3" <<'PY' || return 1
import json, sys
p = json.load(open(sys.argv[1]))
for r in p["vps"]:
    if r["name"] == "personal":
        r["devices"].update(json.loads(sys.argv[2]))
json.dump(p, open(sys.argv[1], "w"), indent=1)
PY
	fi
	cells-mdm policy sign "$T/p$1.json" -o "$T/p$1.bin" >/dev/null
}
mk 1; mk 2
check "example policy signs as it is" test -s "$T/p1.bin"
check_fails "policy refused before a root is pinned" "no trust root is pinned" cellctl policy apply "$T/p1.bin"
cells-mdm export-root >"$T/root.pub"
check "trust pin with cells-mdm export-root" cellctl trust pin "$T/root.pub"
check "pinning the same root again is a no-op" cellctl trust pin "$T/root.pub"
openssl genpkey -algorithm ed25519 2>/dev/null | openssl pkey -pubout >"$T/other.pub"
check_fails "pinning another root is refused" "already pinned" cellctl trust pin "$T/other.pub"
check "policy v2 applies" cellctl policy apply "$T/p2.bin"
check_eq "policy show: version 2" 2 "$(show 'd["version"]')"
check_eq "policy show: compliant" compliant "$(show 'd["compliance"]')"
check "policy show human form names the work VP" bash -c "cellctl policy show | grep -q 'vp work: net=nat'"
before=$(cellctl --json policy show)

# --- each refusal with its reason ---
python3 - "$T/p2.bin" "$T/forged.bin" "$ID" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read(); i = d.find(sys.argv[3].encode())
open(sys.argv[2], 'wb').write(d[:i] + (b'0' if d[i:i+1] != b'0' else b'1') + d[i+1:])
PY
forge unknown-key "$T/p2.json" "$T/unknown.bin"
forge expired-delegation "$T/p2.json" "$T/expdel.bin"
forge wrong-role "$T/p2.json" "$T/role.bin"
sed 's/"net": "nat"/"net": "none"/' "$T/p2.json" >"$T/p2b.json" && cells-mdm policy sign "$T/p2b.json" -o "$T/p2b.bin" >/dev/null
mk 4 fedcba9876543210fedcba9876543210 && mv "$T/p4.bin" "$T/other.bin"
mk 5 && sed -e 's/"issued_at": 0/"issued_at": 1000/' -e 's/"expires_at": 0/"expires_at": 2000/' "$T/p5.json" >"$T/exp.json" && cells-mdm policy sign "$T/exp.json" -o "$T/expired.bin" >/dev/null
head -c 200 "$T/p2.bin" >"$T/trunc.bin"
head -c 150000 /dev/urandom >"$T/big.bin"
mk 6 && forge conflict "$T/p6.json" "$T/conflict.bin"
check_fails "forged signature refused" "does not verify" cellctl policy apply "$T/forged.bin"
check_fails "unknown key refused" "unknown key" cellctl policy apply "$T/unknown.bin"
check_fails "expired delegation refused" "delegation of key [0-9a-f]+ expired" cellctl policy apply "$T/expdel.bin"
check_fails "wrong role refused" "not delegated for the policy role" cellctl policy apply "$T/role.bin"
check_fails "rollback refused" "older than the installed version 2 \\(rollback\\)" cellctl policy apply "$T/p1.bin"
check_fails "same version, other bytes refused" "already installed with different contents" cellctl policy apply "$T/p2b.bin"
check_fails "policy for another device refused" "is for device fedcba9876543210fedcba9876543210" cellctl policy apply "$T/other.bin"
check_fails "expired policy refused" "expired at 2000" cellctl policy apply "$T/expired.bin"
check_fails "truncated policy refused" "not a valid protobuf|PolicyBundle|signature" cellctl policy apply "$T/trunc.bin"
check_fails "oversized policy refused" "over the limit" cellctl policy apply "$T/big.bin"
check_fails "conflicting exclusive modes refused" "both exclusive on camera" cellctl policy apply "$T/conflict.bin"
check_fails "policy verify gives the verdict and reason" "^reject: .*rollback" cellctl policy verify "$T/p1.bin"
check_eq "policy in force unchanged after every refusal" "$before" "$(cellctl --json policy show)"
check "every refusal is audited" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='policy.rejected'\") -ge 11 ]"

# --- apply is all or nothing: the devices enforcer's cgroup op fails half-way ---
# v3 gives personal vpn then fuse; the kernel "refuses" fuse's device cgroup rule
# (--test-fail): vpn, already given to the running VP, must be taken back.
stop_cellsd
start_cellsd "${DEVS[@]}" --test-fail dev_set:EPERM:allow:c10:229 || exit 1
check "create and start VP personal" bash -c "cellctl vp create personal --image '$IMG' >/dev/null && cellctl vp start personal >/dev/null"
check_eq "v2: personal has no /dev/net/tun" "open=ENOENT" "$(probe open /dev/net/tun)"
mk 3 "$ID" '{"vpn": "shared", "fuse": "shared"}'
check_fails "a failing device cgroup op: policy v3 not applied" "dev_set allow:c10:229 .*injected" cellctl policy apply "$T/p3.bin"
check "the failure was the kernel op's (injected at the OS-ops seam)" grep -q "test failure injected: dev_set allow:c10:229" "$T/cellsd.log"
check_eq "the change already made was undone: personal has no /dev/net/tun" "open=ENOENT" "$(probe open /dev/net/tun)"
check_eq "personal has no /dev/fuse" "open=ENOENT" "$(probe open /dev/fuse)"
P=$(cellctl --json vp status personal | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
mknod "/proc/$P/root/dev/tun-planted" c 10 200 && chmod 666 "/proc/$P/root/dev/tun-planted"
check_eq "the device cgroup was rolled back too: a planted TUN node is refused" "open=EPERM" "$(probe open /dev/tun-planted)"
rm -f "/proc/$P/root/dev/tun-planted"
check_eq "the previous policy stays in force" 2 "$(show 'd["version"]')"
check_eq "non-compliance is reported" "noncompliant: apply failed" "$(show 'd["compliance"]')"
check_eq "the failed apply is audited" 1 "$(audit_count policy.apply_failed failed)"
check_fails "the accepted version still blocks rollback" "rollback" cellctl policy apply "$T/p1.bin"
mk 4 "$ID" '{"vpn": "shared"}'
check "the next version applies" cellctl policy apply "$T/p4.bin"
check_eq "version 4 in force, compliant" "4 compliant" "$(show 'd["version"], d["compliance"]' | tr -d "(),'")"
check_eq "v4: personal's /dev/net/tun opens" "open=ok" "$(probe open /dev/net/tun)"

# --- SIGKILL between acceptance and apply ---
check "stop personal" cellctl vp stop personal
stop_cellsd
mk 5 "$ID" '{"fuse": "shared"}'
start_cellsd "${DEVS[@]}" --test-crash-at policy-before-persist || exit 1
cellctl policy apply "$T/p5.bin" >/dev/null 2>&1
wait "$CELLSD_PID" 2>/dev/null
check "cellsd was killed before the persist point" grep -q "test crash point policy-before-persist: killing cellsd" "$T/cellsd.log"
start_cellsd "${DEVS[@]}" || exit 1
check_eq "killed before persist: version 4 still in force" 4 "$(show 'd["version"]')"
stop_cellsd
start_cellsd "${DEVS[@]}" --test-crash-at policy-after-persist || exit 1
cellctl policy apply "$T/p5.bin" >/dev/null 2>&1
wait "$CELLSD_PID" 2>/dev/null
check "cellsd was killed at the crash point" grep -q "test crash point policy-after-persist: killing cellsd" "$T/cellsd.log"
start_cellsd "${DEVS[@]}" || exit 1
check_eq "killed after persist: restart applies version 5 whole" "5 5 compliant" "$(show 'd["version"], d["accepted_version"], d["compliance"]' | tr -d "(),'")"
check "start personal under v5" cellctl vp start personal
check_eq "restart enforces v5 in the VP: /dev/fuse opens" "open=ok" "$(probe open /dev/fuse)"
check_eq "restart enforces v5 in the VP: no /dev/net/tun (v4's)" "open=ENOENT" "$(probe open /dev/net/tun)"
check "stop personal" cellctl vp stop personal
check_fails "after the crash, rollback to 4 refused" "rollback" cellctl policy apply "$T/p4.bin"
sed 's/"net": "nat"/"net": "none"/' "$T/p5.json" >"$T/p5b.json" && cells-mdm policy sign "$T/p5b.json" -o "$T/p5b.bin" >/dev/null
check_fails "after the crash, same version other bytes refused" "different contents" cellctl policy apply "$T/p5b.bin"
check "re-sending the installed policy is harmless" cellctl policy apply "$T/p5.bin"
mk 6
check "policy verify accepts a good newer policy" bash -c "cellctl policy verify '$T/p6.bin' | grep -q '^accept: policy version 6'"
check_eq "verify changed nothing" 5 "$(show 'd["version"]')"
check "state DB stores the policy with synchronous=FULL" bash -c "sqlite3 '$CELLS_STATE/state.db' 'select version, applied from policy_state' | grep -qx '5|1'"
# --- expiry without a newer policy: documented fail state ---
now=$(date +%s)
cells-mdm policy example --device "$ID" --version 7 |
	sed -e "s/\"issued_at\": 0/\"issued_at\": $now/" -e "s/\"expires_at\": 0/\"expires_at\": $((now + 8))/" \
		-e 's/"on_expiry": "keep-noncompliant"/"on_expiry": "lock-vp"/' >"$T/p7.json"
cells-mdm policy sign "$T/p7.json" -o "$T/p7.bin" >/dev/null
check "a policy expiring in 8 s applies" cellctl policy apply "$T/p7.bin"
check_eq "compliant before expiry" compliant "$(show 'd["compliance"]')"
sleep $((now + 9 - $(date +%s)))
check_eq "after expiry: still in force, non-compliant" "7 noncompliant: policy expired" "$(show 'd["version"], d["compliance"]' | tr -d "(),'")"
check_eq "after expiry with lock-vp: work is locked" "['work']" "$(show 'd["locked_on_expiry"]')"
check "clean shutdown" stop_cellsd
finish
