#!/usr/bin/env bash
# mgmt_vp.sh - a policy pushed by a real cells-mdm over the management channel reaches
# two RUNNING VPs (work, personal) of an enrolled cellsd with the devhost profile: the
# vpn class (/dev/net/tun) exclusive to work and no-access to personal, checked from
# inside the VPs; the next version flips it live (same init pids: no restart); an
# inconsistent policy (both exclusive) is reported failed by the device and the VPs keep
# the modes in force. Everything the MDM says is checked against the agent and the VPs.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
command -v sqlite3 >/dev/null || skip "sqlite3 not installed"
[ -c /dev/net/tun ] || skip "this host has no /dev/net/tun (the vpn class's node)"
cc -static -O2 -o "$T/dev_probe" "$CELLS_SRC/tests/integration/dev_probe.c" 2>"$T/cc.err" ||
	skip "cannot build a static probe: $(head -1 "$T/cc.err")"
cp "$T/dev_probe" "$IMG/usr/local/bin/" || exit 1
FORGE="$CELLS_BUILD/tests/integration/policy_forge"

setup_enrolled --device-profile "$CELLS_SRC/profiles/devhost.json" --power-backend record || {
	cat "$T/cellsd.log"
	exit 1
}
probe() { local v=$1; shift; cellctl vp exec "$v" -- dev_probe "$@" 2>&1; }
dev_policy() { cells-mdm --json devices | json_get "[x['policy_version'] for x in d if x['device_id']=='$DEV'][0]"; }

for v in work personal; do
	check "create and start VP $v" bash -c "cellctl vp create $v --image '$IMG' >/dev/null && cellctl vp start $v >/dev/null"
done
# the devices are given once each VP's root is ready (its /dev/cells/power appears)
for v in work personal; do
	for _ in $(seq 100); do cellctl vp exec $v -- test -c /dev/cells/power 2>/dev/null && break; sleep 0.1; done
done
PW=$(vp_field work pid) PP=$(vp_field personal pid)
check "both VPs run (init pids known)" test -n "$PW" -a -n "$PP" -a "$PW" != 0 -a "$PP" != 0
check_eq "no policy yet: work has no /dev/net/tun" "open=ENOENT" "$(probe work open /dev/net/tun)"

# mk VERSION WORK_VPN PERSONAL_VPN: $T/pVERSION.json from `cells-mdm policy example`
mk() {
	cells-mdm policy example --device "$DEV" --version "$1" >"$T/ex$1.json" || return 1
	python3 - "$T/ex$1.json" "$T/p$1.json" "$2" "$3" <<'PY'
import json, sys
src, out, wvpn, pvpn = sys.argv[1:5]
p = json.load(open(src))
for r in p["vps"]:
    work = r["name"] == "work"
    r["devices"] = {"power": "shared", "wifi": "shared", "modem": "shared", "fuse": "shared",
                    "vpn": wvpn if work else pvpn}
    r["password"] = {"required": False, "min_length": 0, "max_failed_attempts": 0, "wipe_on_limit": False}
json.dump(p, open(out, "w"), indent=1)
PY
}
# push FILE: queue it for this device, print the entry id
push() { cells-mdm --json policy push "$DEV" "$1" | json_get "d[0]['id']"; }

# --- version 5: vpn exclusive to work, no-access for personal ---
mk 5 exclusive no-access || exit 1
ID5=$(push "$T/p5.json")
check "policy v5 is queued" grep -q '^q-' <<<"$ID5"
check "policy v5 is acknowledged by the device" wait_for 20 entry_is "$ID5" acknowledged
check_eq "the agent runs policy v5" 5 "$(mgmt_field policy_version)"
check_eq "work (inside the VP): /dev/net/tun opens" "open=ok" "$(probe work open /dev/net/tun)"
check "work (inside the VP): it is the TUN device (c 10:200)" bash -c \
	"cellctl vp exec work -- stat -c '%F %t:%T' /dev/net/tun | grep -qx 'character special file a:c8'"
check_eq "personal (inside the VP): /dev/net/tun does not exist" "open=ENOENT" "$(probe personal open /dev/net/tun)"
check_eq "personal (inside the VP): mknod of the TUN node is refused" "mknod=EPERM" "$(probe personal mknod /dev/tun 10 200)"
check "cells-mdm devices shows policy v5" wait_for 10 bash -c "[ \"\$(cells-mdm --json devices | python3 -c 'import json,sys; print([x[\"policy_version\"] for x in json.load(sys.stdin) if x[\"device_id\"]==\"$DEV\"][0])')\" = 5 ]"
check "the text listing shows v5 too" bash -c "cells-mdm devices | grep '^$DEV ' | awk '{exit !(\$3 == 5)}'"

# --- version 6: flipped, applied to the same running VPs ---
mk 6 no-access exclusive || exit 1
ID6=$(push "$T/p6.json")
check "policy v6 is acknowledged by the device" wait_for 20 entry_is "$ID6" acknowledged
check_eq "work (inside the VP): /dev/net/tun is gone" "open=ENOENT" "$(probe work open /dev/net/tun)"
check_eq "work (inside the VP): mknod of the TUN node is refused" "mknod=EPERM" "$(probe work mknod /dev/tun 10 200)"
check_eq "personal (inside the VP): /dev/net/tun opens" "open=ok" "$(probe personal open /dev/net/tun)"
check_eq "neither VP was restarted (same init pids)" "$PW $PP" "$(vp_field work pid) $(vp_field personal pid)"
check "cells-mdm devices shows policy v6" wait_for 10 bash -c "[ \"\$(cells-mdm --json devices | python3 -c 'import json,sys; print([x[\"policy_version\"] for x in json.load(sys.stdin) if x[\"device_id\"]==\"$DEV\"][0])')\" = 6 ]"

# --- version 7, inconsistent: policy_forge makes vpn exclusive for both (cells-mdm
# would not sign it), signed by the real MDM signing key ---
mk 7 shared exclusive || exit 1
ASAN_OPTIONS=detect_leaks=0 "$FORGE" "$CELLS_MDM_STATE_DIR" conflict:vpn "$T/p7.json" "$T/p7.bin" || exit 1
ID7=$(push "$T/p7.bin")
check "the inconsistent policy v7 is queued" grep -q '^q-' <<<"$ID7"
check "the device reports v7 failed" wait_for 20 entry_is "$ID7" failed
check "the failure names the conflict" bash -c "cells-mdm --json command list | python3 -c 'import json,sys; e=[x for x in json.load(sys.stdin) if x[\"id\"]==\"$ID7\"][0]; print(e); sys.exit(0 if \"both exclusive on vpn\" in e[\"reason\"] else 1)'"
check_eq "the agent still runs policy v6" 6 "$(mgmt_field policy_version)"
check_eq "cells-mdm devices still shows v6" 6 "$(dev_policy)"
check_eq "work (inside the VP): still no /dev/net/tun" "open=ENOENT" "$(probe work open /dev/net/tun)"
check_eq "personal (inside the VP): /dev/net/tun still opens" "open=ok" "$(probe personal open /dev/net/tun)"
check_eq "still no restart" "$PW $PP" "$(vp_field work pid) $(vp_field personal pid)"
check_eq "v5 and v6 were each installed once, v7 never" "1 1 0" \
	"$(audit_count policy.accepted "details like '%\"version\":5%'") $(audit_count policy.accepted "details like '%\"version\":6%'") $(audit_count policy.accepted "details like '%\"version\":7%'")"

for v in work personal; do cellctl vp stop $v >/dev/null 2>&1; cellctl vp destroy $v >/dev/null 2>&1; done
check "clean shutdown" stop_cellsd
finish
