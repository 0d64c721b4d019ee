#!/usr/bin/env bash
# A signed VP image end to end through the real parts: `cells-mdm image build/sign/push`
# on a real cells-mdm serve, an enrolled cellsd that takes the offer over the management
# channel, downloads the image through cellsd-net from the MDM's HTTPS endpoint, verifies
# and stores it (bytes on disk = the pushed file), answers DONE (the MDM's `image list`);
# a policy pushed by the MDM names it for the work VP, which then runs it (a file read
# inside the VP) and the MDM learns which image the VP runs (DeviceHello.vps). An offer
# that arrives while `cellctl image import` writes the same bytes is acknowledged and
# answered DONE when the import ends (one writer: nothing is downloaded); an offer made
# while another image downloads is answered too.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
command -v mkfs.erofs >/dev/null || skip "erofs-utils not installed"
command -v busybox >/dev/null || skip "busybox-static not installed"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || skip "no erofs in this kernel"
sha() { sha256sum "$1" | cut -d' ' -f1; }
# the MDM's state of image NAME (version VERSION, default 1) on the device
image_state() { cells-mdm --json image list | json_get "[x['state'] for i in d if i['name']=='$1' and i['version']==${2:-1} for x in i['devices'] if x['device_id']=='$DEV'][0]"; }
image_is() { [ "$(image_state "$1" "${3:-1}")" = "$2" ]; }
export -f image_state image_is

bash "$CELLS_SRC/scripts/mkimage.sh" "$T/tree" >/dev/null || exit 1
echo "signed and delivered" >"$T/tree/etc/cells-image"
head -c 8388608 /dev/urandom >"$T/tree/blob"
# (a test build's pause point holds the import below in its copy thread after 1 MiB)
setup_enrolled --test-pause-at "image-import-copying:$T/go-on" || { cat "$T/cellsd.log"; exit 1; }
check "cells-mdm image build" cells-mdm image build "$T/tree" -o "$T/base.img" --name base --version 1
check "cells-mdm image push to the device" cells-mdm image push "$DEV" "$T/base.img"
S=$(sha "$T/base.img")
check "the device answers DONE (cells-mdm image list)" wait_for 60 image_is base done
check "the stored image is the pushed file, byte for byte" cmp "$T/base.img" "$CELLS_STATE/images/$S.img"
check "no partial download is left" bash -c "[ -z \"\$(ls -A '$CELLS_STATE/images/partial')\" ]"
check "it is mounted read-only at RUN_DIR/images/<sha>" bash -c "awk -v p='$CELLS_RUN_DIR/images/$S' '\$5 == p {print \$6}' /proc/self/mountinfo | grep -q '^ro,'"
check_eq "audit: image.verified" 1 "$(audit_count image.verified)"
check "the download went through cellsd-net (the MDM logged the device's GET)" grep -q "device $DEV: image base@1: sending bytes 0\.\." "$T/mdm.log"

# the work VP on it, by a policy the MDM pushes
cellctl vp create work --image "$T/tree" >/dev/null || exit 1
cells-mdm policy example --version 2 --device "$DEV" >"$T/p.json"
python3 - "$T/p.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
for r in p["vps"]:
    if r["name"] == "work":
        r["image"] = "base@1"
json.dump(p, open(sys.argv[1], "w"))
PY
ID=$(cells-mdm --json policy push "$DEV" "$T/p.json" | json_get "d[0]['id']")
check "the policy naming base@1 is acknowledged" wait_for 20 entry_is "$ID" acknowledged
check "work starts" cellctl vp start work
check_eq "work reads the delivered image's file" "signed and delivered" "$(cellctl vp exec work -- cat /etc/cells-image 2>&1)"
# what the MDM stores from the device's DeviceHello/status: VP NAME runs IMAGE, or "stopped"
vp_is() { cells-mdm --json devices | python3 -c 'import json,sys
d = json.load(sys.stdin)
v = [x["vps"] for x in d if x["device_id"] == sys.argv[1]][0]
sys.exit(not any(e["name"] == sys.argv[2] and (e["image"] if e["running"] else "stopped") == sys.argv[3] for e in v))' "$DEV" "$@"; }
export -f vp_is
check "the MDM learns that work runs base@1" wait_for 10 vp_is work base@1
check "cells-mdm devices lists it" bash -c "cells-mdm devices | grep -qE '^  vp work +running +[a-z]+ +[a-z]+ +base@1'"
check "work stops" cellctl vp stop work
check "the MDM learns that work stopped" wait_for 10 vp_is work stopped

# base@2 imported locally, held by the pause point after its first MiB while the MDM
# offers the same image, then let go
echo "version 2" >"$T/tree/etc/cells-image"
check "cells-mdm image build base@2" cells-mdm image build "$T/tree" -o "$T/base2.img" --name base --version 2
check "cells-mdm image sign base@2 (the bundle for the offline path)" cells-mdm image sign "$T/base2.img"
S2=$(sha "$T/base2.img")
cellctl image import "$T/base2.img" "$T/base2.img.bundle" >"$T/imp.out" 2>&1 &
IMP=$!
importing() { cellctl --json image list | json_get "[i['state'] for i in d['images'] if i['name']=='base' and i['version']==2][0]" | grep -qx importing; }
check "the import of base@2 is copying (held after 1 MiB)" wait_for 10 importing
check "the MDM pushes base@2 meanwhile" cells-mdm image push "$DEV" "$T/base2.img"
check "the device acknowledges the offer" wait_for 20 image_is base delivered 2
sleep 1
check_eq "...and answers nothing while the import runs" delivered "$(image_state base 2)"
touch "$T/go-on"
check "the import ends" wait "$IMP"
check "the MDM's offer is answered DONE when the import ends" wait_for 20 image_is base done 2
check "nothing of base@2 was downloaded (the MDM logged no GET of it)" bash -c "! grep -q 'image base@2: sending' '$T/mdm.log'"
check "the stored base@2 is the imported file" cmp "$T/base2.img" "$CELLS_STATE/images/$S2.img"

# two offers back to back, the second while the first downloads: each is answered (the
# device keeps every offer's message id for its result, not only the one downloading)
mkdir -p "$T/ta" "$T/tb"
head -c 30000000 /dev/urandom >"$T/ta/blob"
head -c 100000 /dev/urandom >"$T/tb/blob"
check "build a@1 (30 MB) and b@1 (small)" bash -c "cells-mdm image build '$T/ta' -o '$T/a.img' --name a --version 1 >/dev/null && cells-mdm image build '$T/tb' -o '$T/b.img' --name b --version 1 >/dev/null"
check "push a@1, then b@1" bash -c "cells-mdm image push '$DEV' '$T/a.img' >/dev/null && cells-mdm image push '$DEV' '$T/b.img' >/dev/null"
check "a@1 is answered DONE" wait_for 60 image_is a done
check "b@1 is answered DONE" wait_for 30 image_is b done
check "the MDM refused no result" bash -c "! grep -q 'result .* refused' '$T/mdm.log'"
stop_mdm
finish
