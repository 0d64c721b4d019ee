#!/usr/bin/env bash
# devices_vp.sh - per-device access modes from SIGNED policies, enforced by the kernel in
# two running VPs (work, personal): the device cgroup and the contents of each VP's /dev
# follow the policy in force, changes apply to running VPs without a restart and are
# audited, an inconsistent policy is refused and the previous modes stay in force; the
# device-wide settings (power, WiFi) obey only the foreground VP, and `cellctl switch`
# flips that. Everything is checked from inside the VPs (tests/integration/dev_probe.c).
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v busybox >/dev/null || skip "busybox-static not installed"
command -v sqlite3 >/dev/null || skip "sqlite3 not installed"
[ -c /dev/net/tun ] || skip "this host has no /dev/net/tun (the vpn class's node)"
[ -c /dev/fuse ] || skip "this host has no /dev/fuse (the fuse class's node)"
cc -static -O2 -o "$T/dev_probe" "$CELLS_SRC/tests/integration/dev_probe.c" 2>"$T/cc.err" ||
	skip "cannot build a static probe: $(head -1 "$T/cc.err")"
IMG="$T/img"
bash "$CELLS_SRC/scripts/mkimage.sh" "$IMG" "$T/dev_probe" >/dev/null || exit 1
export CELLS_MDM_STATE_DIR="$T/mdm"
FORGE="$CELLS_BUILD/tests/integration/policy_forge"
DB="$CELLS_STATE/audit.db"
WPA="$T/wpa.sock"

# A stand-in for the host's wpa_supplicant control socket (the CI VM has no WiFi chip):
# answers like wpa_supplicant and logs every request it receives. Stops by itself.
python3 - "$WPA" "$T/wpa.log" <<'PY' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); s.settimeout(0.5)
log = open(sys.argv[2], "a", buffering=1)
end = time.time() + 280
while time.time() < end:
    try:
        req, addr = s.recvfrom(4096)
    except socket.timeout:
        continue
    r = req.decode(errors="replace").strip()
    log.write(r + "\n")
    rep = b"PONG\n" if r == "PING" else b"wpa_state=COMPLETED\nssid=cells-test\n" if r == "STATUS" else b"OK\n"
    if addr:
        s.sendto(rep, addr)
PY
PIDS+=($!)
for _ in $(seq 50); do [ -S "$WPA" ] && break; sleep 0.1; done

start_cellsd --device-profile "$CELLS_SRC/profiles/devhost.json" --power-backend record \
	--wpa-ctrl "$WPA" || exit 1
PLOG="$CELLS_RUN_DIR/power.log"

probe() { local v=$1; shift; cellctl vp exec "$v" -- dev_probe "$@" 2>&1; }
pid_of() { cellctl --json vp status "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
fvp() { cellctl --json display status | python3 -c 'import json,sys; print(json.load(sys.stdin)["foreground"])'; }
dlist() { cellctl --json device list | python3 -c "import json,sys; d=json.load(sys.stdin); c={x['class']:x for x in d['classes']}; print($1)"; }
# audit_last VP EVENT: details of the VP's last record of EVENT
audit_last() { sqlite3 "$DB" "select details from audit where vp='$1' and event='$2' order by rowid desc limit 1"; }
audit_count() { sqlite3 "$DB" "select count(*) from audit where vp='$1' and event='$2' and outcome='$3'"; }
check_not_grep() { ! grep -q "$@"; }
# audit_match VP ERE: the VP's last device.access record matches ERE (printed)
audit_match() { audit_last "$1" device.access | tee /dev/stderr | grep -qE -- "$2"; }
# plant VP NAME MAJ MIN: the host (root) makes a device node in the VP's /dev behind the
# agent's back, to test the device cgroup itself (a VP cannot mknod: seccomp/caps)
plant() { mknod "/proc/$(pid_of "$1")/root/dev/$2" c "$3" "$4" && chmod 666 "/proc/$(pid_of "$1")/root/dev/$2"; }
unplant() { rm -f "/proc/$(pid_of "$1")/root/dev/$2"; }

for v in work personal; do
	check "create and start VP $v" bash -c "cellctl vp create $v --image '$IMG' >/dev/null && cellctl vp start $v >/dev/null"
done
# the devices are given before each VP's init runs: right after `vp start` returns, its
# /dev/cells/power is already the pty (no waiting; tests/integration/devices_boot.sh)
for v in work personal; do
	check "VP $v: /dev/cells/power is the power pty right after start" cellctl vp exec $v -- test -c /dev/cells/power
done
check_eq "work is in front (started first)" work "$(fvp)"
# the VPs `cellctl vp list` marks as the FVP: in its JSON ("foreground": true) and in its
# text table (a '*' in the FG column)
fg_json() { cellctl --json vp list | python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(sys.stdin)["vps"] if v["foreground"] is True))'; }
fg_table() { cellctl vp list | awk 'NR == 1 && $2 != "FG" {print "no FG column"} NR > 1 && $2 == "*" {print $1}' | paste -sd' ' -; }
check_eq "vp list --json: work, and only work, is the foreground VP" work "$(fg_json)"
check_eq "vp list: the table marks work, and only work" work "$(fg_table)"
PW=$(pid_of work) PP=$(pid_of personal)

# --- no policy yet: VPs the policy does not name get no device of the profile ---
check_eq "no policy: work has no /dev/net/tun" "open=ENOENT" "$(probe work open /dev/net/tun)"
check_eq "no policy: personal has no /dev/net/tun" "open=ENOENT" "$(probe personal open /dev/net/tun)"
check_eq "a VP cannot make the node itself" "mknod=EPERM" "$(probe personal mknod /dev/tun 10 200)"

# --- signed policies ---
cells-mdm init >/dev/null || exit 1
cells-mdm export-root >"$T/root.pem"
check "pin the MDM trust root" cellctl trust pin "$T/root.pem"
ID=$(cellctl device id)
cells-mdm policy example --device "$ID" >"$T/example.json"
# mk VERSION WORK_VPN PERSONAL_VPN [PERSONAL_STORAGE]: $T/pVERSION.json, signed to .bin
mk() {
	python3 - "$T/example.json" "$T/p$1.json" "$@" <<'PY' || return 1
import json, os, sys
src, out, ver, wvpn, pvpn = sys.argv[1:6]
pstore = sys.argv[6] if len(sys.argv) > 6 else None
p = json.load(open(src))
p["version"] = int(ver)
for r in p["vps"]:
    work = r["name"] == "work"
    r["devices"] = {"power": "shared" if work else os.environ.get("PPOWER", "shared"), "wifi": "shared", "modem": "shared", "fuse": "shared",
                    "vpn": wvpn if work else pvpn}
    if pstore and not work:
        r["devices"]["storage"] = pstore
    r["password"] = {"required": False, "min_length": 0, "max_failed_attempts": 0, "wipe_on_limit": False}
    r["audit_upload"] = "full"
    r["foreground"] = {"may_be_foreground": True, "incoming_call_switches": True}
json.dump(p, open(out, "w"), indent=1)
PY
	cells-mdm policy sign "$T/p$1.json" -o "$T/p$1.bin" >/dev/null
}

# v1: vpn exclusive to work; fuse shared by both
mk 1 exclusive no-access || exit 1
check "policy v1 (vpn exclusive to work) applies" cellctl policy apply "$T/p1.bin"
check_eq "work: /dev/net/tun opens" "open=ok" "$(probe work open /dev/net/tun)"
check "work: it is the TUN device (c 10:200)" bash -c "cellctl vp exec work -- stat -c '%F %t:%T' /dev/net/tun | grep -qx 'character special file a:c8'"
check_eq "personal: /dev/net/tun does not exist" "open=ENOENT" "$(probe personal open /dev/net/tun)"
check_eq "personal: cannot mknod it" "mknod=EPERM" "$(probe personal mknod /dev/tun 10 200)"
check "host plants a TUN node and a null node in personal's /dev" bash -c "$(declare -f plant pid_of); plant personal tun-planted 10 200 && plant personal null-planted 1 3"
check_eq "personal: the planted TUN node is refused by the device cgroup" "open=EPERM" "$(probe personal open /dev/tun-planted)"
check_eq "personal: the planted null node opens (the refusal is the cgroup's)" "open=ok" "$(probe personal open /dev/null-planted)"
unplant personal tun-planted
unplant personal null-planted
check_eq "fuse (shared): opens in work" "open=ok" "$(probe work open /dev/fuse)"
check_eq "fuse (shared): opens in personal" "open=ok" "$(probe personal open /dev/fuse)"
check_eq "device list: vpn held by work, only work can open it" "work ['work']" "$(dlist "c['vpn']['holder'], c['vpn']['access']")"
check "audited: device.access for work allows vpn under v1" audit_match work '"allowed":\[[^]]*"vpn".*"policy_version":1\b'

# an fd opened before the change (held by a process in work across policy v2)
cellctl vp exec work -- dev_probe hold /dev/net/tun /tmp/go >"$T/hold.out" 2>&1 &
HOLD=$!
for _ in $(seq 50); do grep -q held= "$T/hold.out" && break; sleep 0.1; done
check_eq "work: a process holds /dev/net/tun open" "held=ok" "$(head -1 "$T/hold.out")"

# v2: vpn no-access for work, exclusive for personal: live, no restart
mk 2 no-access exclusive || exit 1
NPA=$(audit_count personal device.access ok)
check "policy v2 (vpn: work no-access, personal exclusive) applies" cellctl policy apply "$T/p2.bin"
check_eq "work: /dev/net/tun removed from the running VP" "open=ENOENT" "$(probe work open /dev/net/tun)"
check_eq "personal: /dev/net/tun added to the running VP" "open=ok" "$(probe personal open /dev/net/tun)"
plant work tun-planted 10 200
check_eq "work: a planted TUN node is now refused by the device cgroup" "open=EPERM" "$(probe work open /dev/tun-planted)"
unplant work tun-planted
check_eq "neither VP was restarted" "$PW $PP" "$(pid_of work) $(pid_of personal)"
cellctl vp exec work -- touch /tmp/go
wait "$HOLD"
# the device cgroup is checked at open(): the fd opened before v2 stays usable until
# closed (docs/DEVICES.md "Limits"), a new open is refused
check_eq "work: the fd opened before v2 still works (TUNGETFEATURES), a new open fails" \
	"held=ok|used=ok|reopen=ENOENT" "$(paste -sd'|' "$T/hold.out")"
check "audited: device.access for work denies vpn under v2" audit_match work '"denied":\["vpn"\].*"policy_version":2\b'
# personal is the private VP (agent/core/audit.h): its records keep only content-free keys
check_eq "audited: one device.access record for (private) personal under v2" \
	"$((NPA + 1)) {\"content_withheld\":true}" "$(audit_count personal device.access ok) $(audit_last personal device.access)"
check_eq "device list: vpn held by personal" "personal ['personal']" "$(dlist "c['vpn']['holder'], c['vpn']['access']")"

# inconsistent policies are refused; v2's modes stay in force inside the VPs
mk 3 shared exclusive || exit 1
ASAN_OPTIONS=detect_leaks=0 "$FORGE" "$CELLS_MDM_STATE_DIR" conflict:vpn "$T/p3.json" "$T/conflict.bin" || exit 1
check_fails "a policy with two exclusive holders of vpn is refused" "both exclusive on vpn" cellctl policy apply "$T/conflict.bin"
check_eq "personal still opens /dev/net/tun" "open=ok" "$(probe personal open /dev/net/tun)"
check_eq "work still has no /dev/net/tun" "open=ENOENT" "$(probe work open /dev/net/tun)"
mk 4 exclusive no-access shared || exit 1
check_fails "a policy giving personal a mode storage lacks (shared) is refused by the devices enforcer" \
	"device class storage does not support mode shared" cellctl policy apply "$T/p4.bin"
check_eq "personal still opens /dev/net/tun" "open=ok" "$(probe personal open /dev/net/tun)"
check_eq "work still has no /dev/net/tun" "open=ENOENT" "$(probe work open /dev/net/tun)"
check_eq "personal has no /dev/loop-control" "open=ENOENT" "$(probe personal open /dev/loop-control)"
check_eq "policy v2 is still the one in force" 2 "$(dlist "d['policy_version']")"
check "both refusals are audited" bash -c "[ \$(sqlite3 '$DB' \"select count(*) from audit where event in ('policy.rejected','policy.apply_failed')\") -ge 2 ]"

# --- power and WiFi: only the foreground VP (work) changes them ---
check_eq "FVP work: wake_lock accepted" ok "$(probe work power 'wake_lock demo')"
check_eq "BVP personal: wake_lock refused" "refused: not the foreground VP" "$(probe personal power 'wake_lock demo')"
check_eq "BVP personal: suspend refused" "refused: not the foreground VP" "$(probe personal power suspend)"
check "the backend took work's lock" grep -q "wake_lock cells-work-demo$" "$PLOG"
check "nothing of personal reached the backend, no suspend" check_not_grep -E "personal|suspend" "$PLOG"
check "personal's power refusal is audited" bash -c "[ \$(sqlite3 '$DB' \"select count(*) from audit where vp='personal' and event='power.refused' and outcome='refused'\") -ge 1 ]"
check_eq "FVP work: WiFi configuration accepted" OK "$(probe work wpa 'SET country DE')"
check_eq "BVP personal: WiFi configuration refused" "FAIL background VP may not change WiFi configuration" "$(probe personal wpa 'SET country US')"
check_eq "BVP personal: WiFi status refused (bvp_wifi_status_allowed false)" 1 "$(probe personal wpa STATUS | grep -c '^FAIL')"
check "the supplicant got work's request" grep -qx "SET country DE" "$T/wpa.log"
check "the supplicant never got personal's" check_not_grep -e "SET country US" "$T/wpa.log"
check "personal's WiFi refusal is audited" bash -c "[ \$(sqlite3 '$DB' \"select count(*) from audit where vp='personal' and event='wifi.refused' and outcome='refused'\") -ge 1 ]"

# --- switch: the roles flip ---
check "cellctl switch personal" cellctl switch personal
check_eq "personal is in front" personal "$(fvp)"
check_eq "vp list --json: after the switch personal, and only personal, is the foreground VP" personal "$(fg_json)"
check_eq "vp list: the table marks personal, and only personal" personal "$(fg_table)"
check "work's lock was released in the backend at the switch" grep -q "wake_unlock cells-work-demo$" "$PLOG"
check_eq "FVP personal: wake_lock accepted" ok "$(probe personal power 'wake_lock demo')"
check_eq "FVP personal: suspend accepted" ok "$(probe personal power suspend)"
check_eq "BVP work: wake_lock refused" "refused: not the foreground VP" "$(probe work power 'wake_lock again')"
check "the backend took personal's lock and suspended" bash -c "grep -q 'wake_lock cells-personal-demo$' '$PLOG' && grep -q ' suspend' '$PLOG'"
check "work's refusal never reached the backend" check_not_grep "cells-work-again" "$PLOG"
check_eq "FVP personal: WiFi configuration accepted" OK "$(probe personal wpa 'SET country US')"
check_eq "BVP work: WiFi configuration refused" "FAIL background VP may not change WiFi configuration" "$(probe work wpa 'SET country FR')"
check "the supplicant got personal's request, never work's second" bash -c "grep -qx 'SET country US' '$T/wpa.log' && ! grep -q 'country FR' '$T/wpa.log'"
check "work's refusals are audited" bash -c "[ \$(sqlite3 '$DB' \"select count(*) from audit where vp='work' and event in ('power.refused','wifi.refused') and outcome='refused'\") -ge 2 ]"

# a policy without power for personal: refused even in front, without a restart
PPOWER=no-access mk 5 no-access exclusive || exit 1
check "policy v5 (no power class for personal) applies" cellctl policy apply "$T/p5.bin"
check_eq "FVP personal without power access: wake_lock refused" \
	"refused: no power access for this VP (policy)" "$(probe personal power 'wake_lock denied')"
check "and it never reached the backend" check_not_grep "cells-personal-denied" "$PLOG"

for v in work personal; do cellctl vp stop $v >/dev/null 2>&1; cellctl vp destroy $v >/dev/null 2>&1; done
check "clean shutdown on SIGTERM" stop_cellsd
finish
