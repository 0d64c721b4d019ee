#!/usr/bin/env bash
# Signed VP images, the offline path (`cellctl image import FILE.img BUNDLE`): a good
# erofs and a good squashfs image are stored under STATE/images/<sha>.img and mounted
# read-only at RUN_DIR/images/<sha> (files readable, a write fails with EROFS); a
# tampered image (one byte flipped), a longer file, a shorter manifest, a replayed older
# version (ESTALE), a bundle signed by a key without the images role, an expired
# manifest and one over --max-image-size are refused with their reason and an audit
# record, leaving nothing in STATE/images/*.img and nothing mounted; a complete image
# whose file is damaged while cellsd is down is removed at start-up (audited); cellsd
# SIGKILLed while an import copies (in its own thread) leaves nothing used or mounted; a
# copy stuck in a read does not keep cellsd from stopping.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v mkfs.erofs >/dev/null || skip "erofs-utils not installed"
command -v mksquashfs >/dev/null || skip "squashfs-tools not installed"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || skip "no erofs in this kernel"
FORGE="$CELLS_BUILD/tests/integration/image_forge"
export CELLS_MDM_STATE_DIR="$T/mdm"
forge() { ASAN_OPTIONS=detect_leaks=0 "$FORGE" "$CELLS_MDM_STATE_DIR" "$@"; }
audit_count() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='$1' and outcome='$2'"; }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
nimg() { find "$CELLS_STATE/images" -maxdepth 1 -name '*.img' | wc -l; }
mounted() { awk -v p="$1" '$5 == p {f=1} END {exit !f}' /proc/self/mountinfo; }

mkdir -p "$T/root/etc"
echo "hello from a signed image" >"$T/root/etc/hello.txt"
head -c 300000 /dev/urandom >"$T/root/blob"
mkfs.erofs --quiet "$T/base.erofs" "$T/root" >/dev/null || exit 1
mksquashfs "$T/root" "$T/base.sqfs" -quiet -noappend >/dev/null || exit 1
S=$(sha "$T/base.erofs")
SQ=$(sha "$T/base.sqfs")

cells-mdm init >/dev/null || exit 1
start_cellsd --max-image-size 16M || exit 1
forge good "$T/base.erofs" base 2 erofs "$T/b2.bin"
check_fails "import refused before a root is pinned" "no trust root is pinned" cellctl image import "$T/base.erofs" "$T/b2.bin"
cells-mdm export-root >"$T/root.pub"
check "trust pin" cellctl trust pin "$T/root.pub"

# --- a good image ---
check "good erofs image imports" cellctl image import "$T/base.erofs" "$T/b2.bin"
st=$(cellctl --json image status base)
check_eq "status: mounted" mounted "$(echo "$st" | jget 'd["images"][0]["state"]')"
check_eq "status: sha256" "$S" "$(echo "$st" | jget 'd["images"][0]["sha256"]')"
check_eq "status: size" "$(stat -c %s "$T/base.erofs")" "$(echo "$st" | jget 'd["images"][0]["size"]')"
check_eq "status: version" 2 "$(echo "$st" | jget 'd["images"][0]["version"]')"
check "the complete image is STATE/images/<sha>.img" test -f "$CELLS_STATE/images/$S.img"
check "no partial file is left" bash -c "[ -z \"\$(ls -A '$CELLS_STATE/images/partial')\" ]"
M="$CELLS_RUN_DIR/images/$S"
check "mounted at RUN_DIR/images/<sha>" mounted "$M"
check_eq "a file of the image is readable" "hello from a signed image" "$(cat "$M/etc/hello.txt" 2>&1)"
check "the mount is read-only, nodev, nosuid" bash -c "awk -v p='$M' '\$5 == p {print \$6}' /proc/self/mountinfo | grep -q 'ro,nosuid,nodev'"
check_fails "a write into the image fails with EROFS" "Read-only file system" bash -c "echo x >'$M/etc/new'"
check_eq "audit: image.accepted" 1 "$(audit_count image.accepted ok)"
check_eq "audit: image.verified" 1 "$(audit_count image.verified ok)"
check "image list shows it" bash -c "cellctl image list | grep -q 'base.*mounted'"
check "importing the same bundle again is a no-op" cellctl image import "$T/base.erofs" "$T/b2.bin"
check_eq "still one image file" 1 "$(nimg)"

# --- refusals ---
python3 - "$T/base.erofs" "$T/tampered.erofs" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read()); d[len(d) // 2] ^= 1
open(sys.argv[2], 'wb').write(d)
PY
forge good "$T/base.erofs" base 3 erofs "$T/b3.bin"
before_corrupt=$(audit_count image.corrupt refused)
check_fails "a tampered image (one byte flipped) is refused" "SHA-256 does not match the signed manifest" cellctl image import "$T/tampered.erofs" "$T/b3.bin"
check_eq "audit: image.corrupt" $((before_corrupt + 1)) "$(audit_count image.corrupt refused)"
check_eq "nothing of the tampered image in STATE/images" 1 "$(nimg)"
check "nothing of it in partial/" bash -c "[ -z \"\$(ls -A '$CELLS_STATE/images/partial')\" ]"
check "the tampered image is not mounted" bash -c "! awk '\$5 ~ /images\\/$(sha "$T/tampered.erofs")/' /proc/self/mountinfo | grep -q ."
check "status says failed with the reason" bash -c "cellctl image status base | grep -q '@3.*failed: .*SHA-256 does not match'"
cat "$T/base.erofs" - <<<"trailing junk" >"$T/long.erofs"
forge good "$T/base.erofs" base 4 erofs "$T/b4.bin"
check_fails "an image longer than signed is refused" "bytes received, the signed manifest says" cellctl image import "$T/long.erofs" "$T/b4.bin"
forge size+4096 "$T/base.erofs" base 5 erofs "$T/b5.bin"
check_fails "an image shorter than signed is refused" "bytes received, the signed manifest says" cellctl image import "$T/base.erofs" "$T/b5.bin"
check_eq "audit: three corrupt images" $((before_corrupt + 3)) "$(audit_count image.corrupt refused)"
check_eq "still only the good image file" 1 "$(nimg)"
forge good "$T/base.erofs" base 1 erofs "$T/b1.bin"
check_fails "a replayed older version is refused (rollback)" "older than the version 5 on the device \\(rollback\\)" cellctl image import "$T/base.erofs" "$T/b1.bin"
check_fails "a key without the images role is refused" "not delegated for the images role" \
	bash -c "forge() { ASAN_OPTIONS=detect_leaks=0 '$FORGE' '$CELLS_MDM_STATE_DIR' \"\$@\"; }; forge wrong-role '$T/base.erofs' base 9 erofs '$T/role.bin' && cellctl image import '$T/base.erofs' '$T/role.bin'"
forge expired "$T/base.erofs" base 9 erofs "$T/exp.bin"
check_fails "an expired manifest is refused" "expired at" cellctl image import "$T/base.erofs" "$T/exp.bin"
forge size+20000000 "$T/base.erofs" base 9 erofs "$T/big.bin"
check_fails "a manifest over --max-image-size is refused" "over the device's limit of 16777216 bytes" cellctl image import "$T/base.erofs" "$T/big.bin"
head -c 200 "$T/b2.bin" >"$T/trunc.bin"
check_fails "a truncated bundle is refused" "image bundle" cellctl image import "$T/base.erofs" "$T/trunc.bin"
check_eq "audit: every refused manifest" 6 "$(audit_count image.rejected refused)"
check_eq "one image file after the refusals" 1 "$(nimg)"
check_eq "one image mounted" 1 "$(awk -v p="$CELLS_RUN_DIR/images/" 'index($5, p) == 1' /proc/self/mountinfo | wc -l)"

# --- squashfs ---
forge good "$T/base.sqfs" tools 1 squashfs "$T/t1.bin"
check "good squashfs image imports" cellctl image import "$T/base.sqfs" "$T/t1.bin"
check_eq "squashfs file readable" "hello from a signed image" "$(cat "$CELLS_RUN_DIR/images/$SQ/etc/hello.txt" 2>&1)"
check_fails "squashfs mount is read-only too" "Read-only file system" bash -c "echo x >'$CELLS_RUN_DIR/images/$SQ/etc/new'"

# --- restart: the store persists; a damaged file is removed at start-up ---
check "cellsd stops" stop_cellsd
check "images are unmounted when cellsd stops" bash -c "! mounted '$M'"
truncate -s 4096 "$CELLS_STATE/images/$SQ.img"
start_cellsd --max-image-size 16M || exit 1
check "after a restart the newest image is mounted again" mounted "$M"
check_eq "the erofs image is still verified" mounted "$(cellctl --json image status base | jget '[i["state"] for i in d["images"] if i["version"] == 2][0]')"
check_eq "the damaged squashfs image is failed" failed "$(cellctl --json image status tools | jget 'd["images"][0]["state"]')"
check "its file is removed" test ! -e "$CELLS_STATE/images/$SQ.img"
check_eq "audit: the damaged file" $((before_corrupt + 4)) "$(audit_count image.corrupt refused)"
# --- SIGKILL while the import's thread copies: nothing half-written is used or mounted;
# imported again it is whole ---
mkdir -p "$T/big"
head -c 6000000 /dev/urandom >"$T/big/blob"
mkfs.erofs --quiet "$T/big.erofs" "$T/big" >/dev/null || exit 1
B=$(sha "$T/big.erofs")
forge good "$T/big.erofs" big 1 erofs "$T/big1.bin"
stop_cellsd
start_cellsd --max-image-size 16M --test-crash-at image-import-copying || exit 1
cellctl image import "$T/big.erofs" "$T/big1.bin" >/dev/null 2>&1
wait "$CELLSD_PID" 2>/dev/null
check "cellsd was killed while the import copied" grep -q "test crash point image-import-copying: killing cellsd" "$T/cellsd.log"
check "no image file for the cut import" test ! -e "$CELLS_STATE/images/$B.img"
check "its partial file holds less than the image" test "$(stat -c %s "$CELLS_STATE/images/partial/$B.part")" -lt "$(stat -c %s "$T/big.erofs")"
start_cellsd --max-image-size 16M || exit 1
check "after the restart the cut image is not mounted" bash -c "! mounted '$CELLS_RUN_DIR/images/$B'"
check "imported again" cellctl image import "$T/big.erofs" "$T/big1.bin"
check "the stored image is the file, byte for byte" cmp "$T/big.erofs" "$CELLS_STATE/images/$B.img"
check "it is mounted" mounted "$CELLS_RUN_DIR/images/$B"
check_fails "unknown image status fails" "not on the device" cellctl image status nosuch
check "audit chain verifies" cellctl audit verify
stop_cellsd

# --- a copy stuck in a read (a hung network or FUSE file system; here the test build's
# pause point holds the copy thread): cellsd still stops on SIGTERM, within seconds, and
# the import's call ends ---
head -c 6000000 /dev/urandom >"$T/big/blob"
mkfs.erofs --quiet "$T/stuck.erofs" "$T/big" >/dev/null || exit 1
forge good "$T/stuck.erofs" stuck 1 erofs "$T/stuck1.bin"
start_cellsd --max-image-size 16M --test-pause-at "image-import-copying:$T/never" || exit 1
cellctl image import "$T/stuck.erofs" "$T/stuck1.bin" >"$T/stuck.out" 2>&1 &
IMP=$!
check "the import's copy is held in its thread" wait_for 10 grep -q "test pause point image-import-copying" "$T/cellsd.log"
t0=$(date +%s%N)
kill -TERM "$CELLSD_PID"
check "cellsd stops on SIGTERM within 10 s" wait_for 10 bash -c "! kill -0 $CELLSD_PID"
echo "    stopped $((($(date +%s%N) - t0) / 1000000)) ms after the SIGTERM"
wait "$CELLSD_PID" 2>/dev/null
check "it says the copy was left behind" grep -q "its copy is stuck in a read after 2 s: left behind" "$T/cellsd.log"
wait "$IMP"
irc=$?
check "the import's call ends with one line (the control connection closed)" bash -c "[ $irc -ne 0 ] && grep -qx 'cellctl: image import: cellsd: connection closed' '$T/stuck.out'"
finish
