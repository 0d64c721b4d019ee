#!/usr/bin/env bash
# VPs on signed images (docs/IMAGES.md "Use"), through the product's own tools:
# `cells-mdm image build` + `image sign`, `cellctl image import`, a signed policy naming
# `image: NAME@VERSION` per VP. Looked at from outside cellsd:
# - two VPs on one image: what each VP reads is the image's file; the host has ONE erofs
#   mount of it (/proc/self/mountinfo, /sys/fs/erofs); a file the first VP read is not
#   read from the loop device again when the second VP reads it (one page cache);
# - a new version takes effect at the VP's next start, not before; the old one is then
#   removed from the device (it is no VP's fallback any more);
# - A/B: a version whose init cannot start (no /sbin/init, no /bin/sh in it) or that is
#   not on the device leaves the VP on the last version it started on (audited), and
#   that version stays on the device while it is the VP's fallback, across a restart;
# - a Debian root file system (scripts/mkrootfs.sh) works as an image;
# - versions no VP holds other than the newest two are removed; a removed version that
#   has the same bytes as one that stays takes neither its file nor its mount along.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v mkfs.erofs >/dev/null || skip "erofs-utils not installed"
command -v busybox >/dev/null || skip "busybox-static not installed"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || skip "no erofs in this kernel"
export CELLS_MDM_STATE_DIR="$T/mdm"
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
audit_count() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='$1' and outcome='$2'"; }
in_vp() { cellctl vp exec "$1" -- "${@:2}" 2>&1; }
# host mounts of an image file's loop device (all mount points of the one erofs sb)
erofs_mounts() { awk -v p="$CELLS_RUN_DIR/images/$1" '$5 == p' /proc/self/mountinfo | wc -l; }
loopdev_of() { awk -v p="$CELLS_RUN_DIR/images/$1" '$5 == p {for (i = 7; i < NF; i++) if ($i == "-") {print $(i + 2); exit}}' /proc/self/mountinfo; }
reads() { awk '{print $3}' "/sys/block/$(basename "$1")/stat"; } # sectors read

# --- trees: base v1, v2 (one file differs), v3 broken (no busybox: no init, no shell);
# a Debian root file system from the installed packages ---
bash "$CELLS_SRC/scripts/mkimage.sh" "$T/t1" >/dev/null || exit 1
echo 1 >"$T/t1/etc/cells-image"
head -c 4194304 /dev/urandom >"$T/t1/blob"
cp -a "$T/t1" "$T/t2" && echo 2 >"$T/t2/etc/cells-image"
cp -a "$T/t1" "$T/t3" && echo 3 >"$T/t3/etc/cells-image" && rm -f "$T/t3/bin/busybox"
bash "$CELLS_SRC/scripts/mkrootfs.sh" "$T/deb" >/dev/null || exit 1

cells-mdm init >/dev/null || exit 1
start_cellsd || exit 1
ID=$(cellctl device id)
cells-mdm export-root >"$T/root.pub"
cellctl trust pin "$T/root.pub" >/dev/null || exit 1
# img NAME VERSION TREE: build, sign and import it (the offline path)
img() {
	cells-mdm image build "$3" -o "$T/$1-$2.img" --name "$1" --version "$2" >/dev/null &&
		cells-mdm image sign "$T/$1-$2.img" >/dev/null &&
		cellctl image import "$T/$1-$2.img" "$T/$1-$2.img.bundle" >/dev/null
}
# pol VERSION WORK_IMAGE PERSONAL_IMAGE: the example policy with these images, applied
pol() {
	cells-mdm policy example --version "$1" --device "$ID" >"$T/p$1.json" || return 1
	python3 - "$T/p$1.json" "$2" "$3" <<'PY' || return 1
import json, sys
p = json.load(open(sys.argv[1]))
for r in p["vps"]:
    r["image"] = sys.argv[2] if r["name"] == "work" else sys.argv[3]
json.dump(p, open(sys.argv[1], "w"), indent=1)
PY
	cells-mdm policy sign "$T/p$1.json" -o "$T/p$1.bin" >/dev/null && cellctl policy apply "$T/p$1.bin" >/dev/null
}
restart() { cellctl vp stop "$1" >/dev/null 2>&1; cellctl vp start "$1"; }
vpfield() { cellctl --json vp status "$1" | jget "d$2"; }

check "base@1 builds, signs and imports" img base 1 "$T/t1"
S1=$(sha "$T/base-1.img")
check "policy v1 names base@1 for work and personal" pol 1 base@1 base@1
for v in work personal; do
	cellctl vp create "$v" --image "$T/t2" >/dev/null || exit 1 # a local image, unused
done
check "work starts" cellctl vp start work
check_eq "work reads the signed image's file" 1 "$(in_vp work cat /etc/cells-image)"
check_eq "work's status names its image" base@1 "$(vpfield work '["image_running"]')"
check_eq "one host mount of base@1 with one VP" 1 "$(erofs_mounts "$S1")"
LOOP=$(loopdev_of "$S1")
check "the image is on a loop device" test -b "$LOOP"
sync
echo 3 >/proc/sys/vm/drop_caches
r0=$(reads "$LOOP")
in_vp work cat /blob >/dev/null
r1=$(reads "$LOOP")
check "work's read of /blob came from the loop device ($((r1 - r0)) sectors)" test $((r1 - r0)) -ge 4096
check "personal starts" cellctl vp start personal
check_eq "personal reads the same file" 1 "$(in_vp personal cat /etc/cells-image)"
check_eq "still one host mount of base@1 with two VPs" 1 "$(erofs_mounts "$S1")"
check_eq "one erofs super block for both VPs" 1 "$(ls /sys/fs/erofs | grep -c "^$(basename "$LOOP")$")"
in_vp personal cat /blob >/dev/null
r2=$(reads "$LOOP")
check "personal's read of /blob came from the page cache work filled ($((r2 - r1)) sectors)" test $((r2 - r1)) -lt 256
check "the VP's root is an overlay (the image as its lower layer)" bash -c "grep -q ' / / .* - overlay ' /proc/$(vpfield work '["pid"]')/mountinfo"
check "a VP writes into its root" cellctl vp exec work -- sh -c 'echo w >/etc/cells-write && rm /etc/hosts'
check "...into its own layer, not the image underneath" bash -c "! test -e '$CELLS_RUN_DIR/images/$S1/etc/cells-write' && test -e '$CELLS_RUN_DIR/images/$S1/etc/hosts'"
check_fails "...nor into the other VP's root" "No such file" cellctl vp exec personal -- cat /etc/cells-write
check "...whose /etc/hosts is still there" cellctl vp exec personal -- cat /etc/hosts

# --- a new version: at the next start, not before ---
check "base@2 imports" img base 2 "$T/t2"
S2=$(sha "$T/base-2.img")
check "policy v2 names base@2 for work" pol 2 base@2 base@1
check_eq "work still runs base@1 until it restarts" 1 "$(in_vp work cat /etc/cells-image)"
check "work restarts" restart work
check_eq "work now reads base@2" 2 "$(in_vp work cat /etc/cells-image)"
check_eq "work's own layer stays across images" w "$(in_vp work cat /etc/cells-write)"
check_eq "work's fallback is now base@2" base@2 "$(vpfield work '["image_good"]')"
check_eq "audit: vp.image ok" 3 "$(audit_count vp.image ok)"
check "base@1 stays: personal runs on it" test -f "$CELLS_STATE/images/$S1.img"

# --- A/B: a version that cannot start, and one the device does not have ---
check "base@3 (no init, no shell) imports" img base 3 "$T/t3"
S3=$(sha "$T/base-3.img")
check "policy v3 names base@3 for work" pol 3 base@3 base@1
check "work restarts (on base@2 again)" restart work
check_eq "work fell back to base@2" 2 "$(in_vp work cat /etc/cells-image)"
check_eq "work's fallback stays base@2" base@2 "$(vpfield work '["image_good"]')"
check_eq "audit: vp.image fallback" 1 "$(audit_count vp.image fallback)"
check "the fallback record names both images" bash -c "sqlite3 '$CELLS_STATE/audit.db' \"select details from audit where event='vp.image' and outcome='fallback'\" | grep -q 'base@3.*base@2'"
check "base@2 stays on the device while it is work's fallback" test -f "$CELLS_STATE/images/$S2.img"
check "policy v4 names base@9 (not on the device)" pol 4 base@9 base@1
check "work restarts (on base@2 again)" restart work
check_eq "work is on base@2" 2 "$(in_vp work cat /etc/cells-image)"
check_eq "audit: two fallbacks" 2 "$(audit_count vp.image fallback)"
kill -KILL "$CELLSD_PID"; wait "$CELLSD_PID" 2>/dev/null
start_cellsd || exit 1
check_eq "after a cellsd SIGKILL and restart work is still found running" running "$(vpfield work '["state"]')"
check_eq "...on base@2" base@2 "$(vpfield work '["image_running"]')"
check "base@2 stays (work's fallback and running image)" test -f "$CELLS_STATE/images/$S2.img"
check "...and mounted" bash -c "[ \$(awk -v p='$CELLS_RUN_DIR/images/$S2' '\$5 == p' /proc/self/mountinfo | wc -l) -ge 1 ]"

# --- back to one that starts: the older one is no VP's fallback any more and goes ---
check "policy v5 names base@3 for personal too, base@2 for work" pol 5 base@2 base@2
check "personal restarts on base@2" restart personal
check_eq "personal reads base@2" 2 "$(in_vp personal cat /etc/cells-image)"
check "base@1 is removed (no VP runs on it or falls back on it)" bash -c "! test -e '$CELLS_STATE/images/$S1.img'"
check_eq "base@1 is unmounted" 0 "$(erofs_mounts "$S1")"

# --- a Debian root file system as an image ---
check "debian@1 (scripts/mkrootfs.sh) imports" img debian 1 "$T/deb"
check "policy v6 names debian@1 for personal" pol 6 base@2 debian@1
check "personal restarts on debian@1" restart personal
check "Debian's bash and coreutils run in the VP" bash -c "cellctl vp exec personal -- /bin/bash -c 'cat /etc/debian_version; ls --version' | grep -q 'GNU coreutils'"
check_eq "the VP's root is uid 0 in the VP" 0 "$(in_vp personal /usr/bin/id -u)"

# --- versions no VP holds: the newest and the one before it stay, older ones go ---
mkdir -p "$T/o"
for v in 1 2 3; do
	echo "$v" >"$T/o/v"
	check "other@$v imports (no VP on it)" img other "$v" "$T/o"
done
O1=$(sha "$T/other-1.img") O2=$(sha "$T/other-2.img") O3=$(sha "$T/other-3.img")
check "other@1 is removed once other@3 is there" bash -c "! test -e '$CELLS_STATE/images/$O1.img'"
check_eq "...and unmounted" 0 "$(erofs_mounts "$O1")"
check_eq "...and listed removed" removed "$(cellctl --json image status other | jget '[i["state"] for i in d["images"] if i["version"] == 1][0]')"
check "other@2 and other@3 stay" test -f "$CELLS_STATE/images/$O2.img" -a -f "$CELLS_STATE/images/$O3.img"

# --- versions with the same bytes (one file, one mount): the retired one takes neither
# with it ---
FORGE="$CELLS_BUILD/tests/integration/image_forge"
forge() { ASAN_OPTIONS=detect_leaks=0 "$FORGE" "$CELLS_MDM_STATE_DIR" "$@"; }
mkfs.erofs --quiet "$T/same.img" "$T/t1" >/dev/null || exit 1
SS=$(sha "$T/same.img")
for v in 1 2 3; do forge good "$T/same.img" same "$v" erofs "$T/same$v.bin"; done
check "same@1 imports" cellctl image import "$T/same.img" "$T/same1.bin"
check "policy v7 names same@1 for work" pol 7 same@1 debian@1
check "work restarts on same@1" restart work
check "same@2 and same@3 (the same bytes) import" bash -c "cellctl image import '$T/same.img' '$T/same2.bin' && cellctl image import '$T/same.img' '$T/same3.bin'"
check "policy v8 names same@3 for work" pol 8 same@3 debian@1
check "work restarts on same@3 (same@1 is no VP's any more: retired)" restart work
check_eq "same@1 is listed removed" removed "$(cellctl --json image status same | jget '[i["state"] for i in d["images"] if i["version"] == 1][0]')"
check "the file same@3 shares with it stays" test -f "$CELLS_STATE/images/$SS.img"
check_eq "...and its mount" 1 "$(erofs_mounts "$SS")"
check "work restarts on same@3 again" restart work
check_eq "...and reads it" 1 "$(in_vp work cat /etc/cells-image)"
stop_cellsd
start_cellsd || exit 1
check_eq "after a cellsd restart same@3 is still mounted" mounted "$(cellctl --json image status same | jget '[i["state"] for i in d["images"] if i["version"] == 3][0]')"
cellctl vp stop work >/dev/null 2>&1
cellctl vp stop personal >/dev/null 2>&1
check "audit chain verifies" cellctl audit verify
finish
