#!/usr/bin/env bash
# Crypto-erase survives forensics: the state directory lives on an ext4 image the test
# makes and loop-mounts (fscrypt on the state filesystem itself). Before the wipe the
# test records the KEK (wipe.kek), the work VP's wrapped key (wipe.slots) and, by
# unwrapping it (AES-256-GCM, agent/vp/wipe_key.h), the raw fscrypt key. After the wipe,
# cellsd stops, the image is unmounted, and the raw image - free blocks, journal and all
# - holds none of them. Controls: before the wipe the same search finds the KEK and the
# wrapped key in the image, and a planted random key. A second encrypted VP survives the
# KEK rotation: its data is readable after a remount and restart.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"
export CELLS_WIPE_STORAGE=host
IMGF="$T/state.img" MNT="$T/st"
truncate -s 256M "$IMGF"
mkfs.ext4 -q -F -O encrypt "$IMGF" || skip "mkfs.ext4 -O encrypt failed"
mkdir -p "$MNT"
mount -o loop "$IMGF" "$MNT" || skip "cannot loop-mount an image"
WIPE_MOUNTS+=("$MNT")
export CELLS_STATE="$MNT/state" CELLS_RUN_DIR="$T/run"
mkdir -p "$CELLS_STATE" "$CELLS_RUN_DIR"

# image_has HEX: the bytes occur in the raw image (read as a file, unmounted or synced)
image_has() {
	"$PY" - "$IMGF" "$1" <<'PY'
import mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    sys.exit(0 if m.find(bytes.fromhex(sys.argv[2])) >= 0 else 1)
PY
}
# unwrap HEX_KEK HEX_BLOB VP: the raw data key (0x01 || nonce(12) || ct+tag)
unwrap() {
	"$PY" - "$@" <<'PY'
import sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
kek, blob, vp = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
assert blob[0] == 1
print(AESGCM(kek).decrypt(blob[1:13], blob[13:], b"cells.v1.wipe-key\0" + vp.encode()).hex())
PY
}

start_cellsd --encrypted-vps work,keep || exit 1
check "signed policy applied, work password set" wipe_policy
W=$(cellctl wipe prepare work)
K=$(cellctl wipe prepare keep)
check "work's storage is on the state filesystem (fscrypt there)" bash -c "[[ '$W' == '$CELLS_STATE/wipe/data/vp/work' ]]"
CANARY="CANARY-$$-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
"$PY" -c "import sys; open(sys.argv[1],'w').write((sys.argv[2]+'\n')*5000)" "$W/canary.txt" "$CANARY"
echo "keep-me-$CANARY" >"$K/keep.txt"
KEK=$(kek_hex)
WRAPPED=$(slot_wrapped work)
RAW=$(unwrap "$KEK" "$WRAPPED" work)
check_eq "the raw fscrypt key was recovered from KEK + slot (64 bytes)" 128 "${#RAW}"
PLANT=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
"$PY" -c "import sys; open(sys.argv[1],'wb').write(bytes.fromhex(sys.argv[2]))" "$MNT/plant.bin" "$PLANT"
sync
check "control: a planted random key is found in the raw image" image_has "$PLANT"
check "control: the KEK is found in the raw image before the wipe" image_has "$KEK"
check "control: the wrapped key is found in the raw image before the wipe" image_has "$WRAPPED"
check_not "the raw key is never on the disk, before the wipe either" image_has "$RAW"
check_not "the canary is never in clear on the disk" env LC_ALL=C grep -qaF "$CANARY" "$IMGF"

check "wipe work" cellctl vp wipe work --password-file "$T/pw"
cellctl --json wipe status work >"$T/s.json"
check_eq "receipt: crypto-erase" crypto-erase "$(json_get "$T/s.json" 'j["ops"][0]["method"]')"
check "clean shutdown" stop_cellsd
sync
umount "$MNT"
check_not "after the wipe: the old KEK is nowhere in the raw image" image_has "$KEK"
check_not "after the wipe: the wrapped key is nowhere in the raw image" image_has "$WRAPPED"
check_not "after the wipe: the raw key is nowhere in the raw image" image_has "$RAW"
check_not "after the wipe: the canary is nowhere in clear" env LC_ALL=C grep -qaF "$CANARY" "$IMGF"

# the surviving encrypted VP was rewrapped under the new KEK: readable after a remount
mount -o loop "$IMGF" "$MNT" || { not_ok "remount"; finish; }
start_cellsd --encrypted-vps work,keep || exit 1
K2=$(cellctl wipe prepare keep)
check_eq "the other encrypted VP's data survives the KEK rotation" "keep-me-$CANARY" "$(cat "$K2/keep.txt" 2>&1)"
check "clean shutdown" stop_cellsd
finish
