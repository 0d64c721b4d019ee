#!/usr/bin/env bash
# devices_boot.sh - a VP's devices are in place before its init runs (issue 18.9): the
# init of each VP is dev_probe, whose very first action records whether /dev/net/tun
# exists and opens, then execs /sbin/init. Under a signed policy granting vpn to work
# and not to personal, 5 of 5 starts of work find it at boot; personal never does.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v busybox >/dev/null || skip "busybox-static not installed"
[ -c /dev/net/tun ] || skip "this host has no /dev/net/tun (the vpn class's node)"
cc -static -O2 -o "$T/dev_probe" "$CELLS_SRC/tests/integration/dev_probe.c" 2>"$T/cc.err" ||
	skip "cannot build a static probe: $(head -1 "$T/cc.err")"
IMG="$T/img"
bash "$CELLS_SRC/scripts/mkimage.sh" "$IMG" "$T/dev_probe" >/dev/null || exit 1
export CELLS_MDM_STATE_DIR="$T/mdm"
RUNS=5

start_cellsd --device-profile "$CELLS_SRC/profiles/devhost.json" --power-backend record \
	--wpa-ctrl "$T/no-wpa.sock" || exit 1
cells-mdm init >/dev/null || exit 1
cells-mdm export-root >"$T/root.pem"
check "pin the MDM trust root" cellctl trust pin "$T/root.pem"
cells-mdm policy example --device "$(cellctl device id)" >"$T/example.json"
python3 - "$T/example.json" "$T/p.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["version"] = 2
for r in p["vps"]:
    r["devices"] = {"power": "shared", "vpn": "shared" if r["name"] == "work" else "no-access"}
    r["password"] = {"required": False, "min_length": 0, "max_failed_attempts": 0, "wipe_on_limit": False}
json.dump(p, open(sys.argv[2], "w"), indent=1)
PY
cells-mdm policy sign "$T/p.json" -o "$T/p.bin" >/dev/null
check "policy (vpn: work shared, personal no-access) applies" cellctl policy apply "$T/p.bin"
for v in work personal; do
	check "create VP $v whose init is the boot probe" \
		cellctl vp create "$v" --image "$IMG" --init /usr/local/bin/dev_probe boot /boot.log /sbin/init
done
lines() { cellctl vp exec "$1" -- cat /boot.log 2>/dev/null | grep -c .; }
for i in $(seq "$RUNS"); do
	for v in work personal; do
		cellctl vp start "$v" >/dev/null || not_ok "start $v ($i)"
		for _ in $(seq 50); do [ "$(lines "$v")" -ge "$i" ] && break; sleep 0.1; done
	done
	if [ "$i" = "$RUNS" ]; then
		W=$(cellctl vp exec work -- cat /boot.log)
		P=$(cellctl vp exec personal -- cat /boot.log)
		check_eq "work (granted, running): /dev/net/tun opens (control)" "open=ok" \
			"$(cellctl vp exec work -- dev_probe open /dev/net/tun)"
	fi
	cellctl vp stop work >/dev/null && cellctl vp stop personal >/dev/null || not_ok "stop ($i)"
done
check_eq "work: $RUNS of $RUNS inits found /dev/net/tun there and open at their first instruction" \
	"$(printf 'tun=ok\n%.0s' $(seq "$RUNS"))" "$W"
check_eq "personal (not granted): no init ever found it" \
	"$(printf 'tun=ENOENT\n%.0s' $(seq "$RUNS"))" "$P"
check "clean shutdown" stop_cellsd
finish
