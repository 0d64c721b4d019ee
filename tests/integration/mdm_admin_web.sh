#!/usr/bin/env bash
# The web console of `cells-mdm serve --admin-port` in a real browser: headless Chromium
# (Debian's chromium + chromium-driver, python3-selenium) logs in with each role's admin
# client certificate (PKCS#12 of `cells-mdm admin add` imported with pk12util into the
# role's $HOME/.pki/nssdb, presented through the managed policy AutoSelectCertificateForUrls
# for this listener only), sees the device the real agent enrolled, pushes a policy and
# sees the acknowledgement and the new version, wipes the work VP and sees the verified
# receipt; helpdesk and auditor are not offered what they may not do and are refused it
# anyway. CELLS_SCREENSHOTS=DIR keeps the screenshots (docs/ has them).
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
for c in chromium chromedriver certutil pk12util; do
	command -v "$c" >/dev/null || skip "$c missing (scripts/deps.sh installs it)"
done
"$PY" -c 'import selenium' 2>/dev/null || skip "python3-selenium missing (scripts/deps.sh installs it)"
POLDIR=/etc/chromium/policies/managed
mkdir -p "$POLDIR" 2>/dev/null && [ -w "$POLDIR" ] || skip "cannot write Chromium's managed policy ($POLDIR)"
wipe_use_instance m
APORT=$(free_port)
MDM_ARGS=(--admin-port "$APORT")
POLICY_FILE="$POLDIR/cells-test-$APORT.json"
web_cleanup() { rm -f "$POLICY_FILE"; wipe_cleanup; }
trap web_cleanup EXIT
setup_enrolled || { cat "$T/cellsd.log" "$T/mdm.log"; exit 1; }
wait_for 10 port_open "$APORT" || { echo "admin listener did not start"; cat "$T/mdm.log"; exit 1; }
# only this test's listener, only certificates of this MDM's CA
"$PY" -c 'import json,sys; print(json.dumps({"AutoSelectCertificateForUrls": [json.dumps({"pattern": "https://localhost:" + sys.argv[1], "filter": {"ISSUER": {"CN": "Cells MDM CA"}}})]}))' "$APORT" >"$POLICY_FILE"
for r in admin helpdesk auditor; do
	cells-mdm admin add "the-$r" --role "$r" --out "$T/admins" >/dev/null
	db="sql:$T/homes/$r/.pki/nssdb"
	mkdir -p "$T/homes/$r/.pki/nssdb"
	check "$r: certificate imported into the browser's NSS database" bash -c \
		"certutil -N -d '$db' --empty-password && certutil -A -d '$db' -n cells-mdm-ca -t C,, -i '$CELLS_MDM_STATE_DIR/ca.pem' && pk12util -i '$T/admins/the-$r.p12' -d '$db' -W ''"
done
# a VP the device reports (DeviceHello.vps): the device page lists it, stopped (its storage
# is prepared below and wiped from the console)
bash "$CELLS_SRC/scripts/mkimage.sh" "$T/img" >/dev/null || exit 1
check "VP work created" cellctl vp create work --image "$T/img"
# a signed image pushed to the device (the images page shows its delivery)
if command -v mkfs.erofs >/dev/null; then
	check "cells-mdm image build" cells-mdm image build "$T/img" -o "$T/base.img" --name base --version 1
	check "cells-mdm image push" cells-mdm image push "$DEV" "$T/base.img"
else
	not_ok "erofs-utils installed (mkfs.erofs)"
fi
W=$(cellctl wipe prepare work)
check "work storage prepared" test -d "$W"
cells-mdm policy example --device "$DEV" --version 9 >"$T/p.json"
SHOTS=${CELLS_SCREENSHOTS:-$T/shots}
mkdir -p "$SHOTS"
"$PY" "$CELLS_SRC/tests/integration/mdm_admin_web.py" "https://localhost:$APORT" "$DEV" "$T/p.json" "$T/homes" "$SHOTS" >"$T/web.out" 2>"$T/web.err"
rc=$?
cat "$T/web.out"
PASS=$((PASS + $(grep -c '^ok - ' "$T/web.out")))
FAIL=$((FAIL + $(grep -c '^not ok - ' "$T/web.out")))
[ $rc -eq 0 ] || { [ "$(grep -c '^not ok - ' "$T/web.out")" -gt 0 ] || not_ok "the browser test ran to its end"; sed 's/^/    /' "$T/web.err" | tail -30; }
check_eq "the device acknowledged the policy (server's view)" 9 "$(cells-mdm --json devices | json_get "[x['policy_version'] for x in d if x['device_id']=='$DEV'][0]")"
check "the auditor's refused wipe is in the admin audit log" bash -c "cells-mdm --json admin audit | json_get \"any(e['admin']=='the-auditor' and e['action']=='device.wipe' and e['outcome'].startswith('refused 403') for e in d)\" | grep -q True"
check "the admin audit log verifies" cells-mdm admin audit-verify
finish
