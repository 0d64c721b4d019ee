#!/usr/bin/env bash
# Signed VP images, the network path: the MDM offers Envelope.image (a Signed manifest;
# here a test MDM, image_mdm.py, as the hostile network until cells-mdm serves images),
# cellsd verifies and records it, acknowledges the envelope, and downloads the file
# through cellsd-net (HTTPS GET /v1/images/<sha256>, mutual TLS, Range to resume):
# a transfer cut at half is resumed (the second request's Range offset > 0) and
# completed; cellsd SIGKILLed during a download resumes it after its restart (the
# partial file is kept) and completes it; wrong bytes and more bytes than signed are
# discarded with an audit record and a FAILED result; a server that goes silent is cut
# when a 30 s check saw no byte and the transfer resumed; a manifest by a key without the
# images role is REJECTED; a download cut by the link's loss leaves the image to an
# offline `cellctl image import`. Each outcome is a CommandResult "image:NAME@VERSION".
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
command -v mkfs.erofs >/dev/null || skip "erofs-utils not installed"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || skip "no erofs in this kernel"
export CELLS_NET_RETRY_MAX_MS=1000
M=$CELLS_MDM_STATE_DIR
FORGE="$CELLS_BUILD/tests/integration/image_forge"
forge() { ASAN_OPTIONS=detect_leaks=0 "$FORGE" "$M" "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
istate() { cellctl --json image status "$1" | jget "[i['state'] for i in d['images'] if i['version'] == $2][0]"; }
icount() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='$1' and outcome='$2'"; }
# mkenv OUT FIELD FILE: an Envelope {version 1, message_id, FIELD: the bytes of FILE}
mkenv() {
	python3 - "$@" <<'PY'
import os, sys
out, field, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def vi(n):
    b = b""
    while True:
        c = n & 0x7F; n >>= 7
        b += bytes([c | (0x80 if n else 0)])
        if not n: return b
body = open(path, "rb").read()
mid = ("img-%s-%s" % (os.path.basename(os.path.dirname(out)), os.path.basename(out))).encode()
env = b"\x08\x01" + b"\x12" + vi(len(mid)) + mid + vi(field << 3 | 2) + vi(len(body)) + body
open(out, "wb").write(env)
PY
}
SRV=
serve() { # serve IMAGE MODE ENVDIR
	stop_mdm
	[ -n "$SRV" ] && { kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null; }
	: >"$T/srv.log"
	python3 "$CELLS_SRC/tests/integration/image_mdm.py" "$PORT" "$M/server.pem" "$M/server.key" "$M/ca.pem" "$1" "$2" "$T/srv.log" "$3" &
	SRV=$!
	PIDS+=("$SRV")
	wait_for 5 port_open "$PORT"
}
logged() { grep -qE "$1" "$T/srv.log"; }

setup_enrolled --max-image-size 64M || { cat "$T/cellsd.log"; exit 1; }
ok "enrolled and connected"

mkdir -p "$T/root/etc"
echo "downloaded image" >"$T/root/etc/hello.txt"
head -c 3000000 /dev/urandom >"$T/root/blob"
mkfs.erofs --quiet "$T/v2.erofs" "$T/root" >/dev/null || exit 1
for v in 3 4 5 6; do echo "v$v" >"$T/root/etc/hello.txt"; mkfs.erofs --quiet "$T/v$v.erofs" "$T/root" >/dev/null; done
forge trust "$T/v2.erofs" base 1 erofs "$T/trust.bin"
for v in 2 3 4 5 6; do
	forge manifest "$T/v$v.erofs" base $v erofs "$T/m$v.bin"
	mkdir -p "$T/e$v"
	mkenv "$T/e$v/0-trust" 20 "$T/trust.bin"
	mkenv "$T/e$v/1-image" 22 "$T/m$v.bin"
done
SIZE=$(stat -c %s "$T/v2.erofs")

# --- a transfer cut at half is resumed ---
serve "$T/v2.erofs" "cut:$((SIZE / 2))" "$T/e2"
check "image v2: DONE after the cut" wait_for 60 logged "^result image:base@2 2"
check "the envelope was acknowledged" logged "^ack"
check "the first GET asked from byte 0" logged "^get 0 200"
check "the transfer was cut at half" logged "^cut $((SIZE / 2))"
check "the second GET resumed with a Range offset > 0" logged "^get [1-9][0-9]* 206"
check_eq "image v2 is mounted" mounted "$(istate base 2)"
S2=$(sha "$T/v2.erofs")
check_eq "its file is readable" "downloaded image" "$(cat "$CELLS_RUN_DIR/images/$S2/etc/hello.txt" 2>&1)"
check "STATE/images/<sha>.img holds it" cmp "$T/v2.erofs" "$CELLS_STATE/images/$S2.img"

# --- cellsd SIGKILLed during a download: resumed after the restart ---
serve "$T/v3.erofs" "slow:150" "$T/e3"
P3="$CELLS_STATE/images/partial/$(sha "$T/v3.erofs").part"
check "v3 download started" wait_for 30 bash -c "[ \$(stat -c %s '$P3' 2>/dev/null || echo 0) -gt 0 ]"
check "status shows the progress" bash -c "cellctl image status base | grep -qE '@3 .*downloading [0-9]+/$SIZE bytes'"
kill -9 "$CELLSD_PID"; wait "$CELLSD_PID" 2>/dev/null
sleep 0.5
kept=$(stat -c %s "$P3" 2>/dev/null || echo 0)
check "the partial file is kept after SIGKILL" test "$kept" -gt 0
: >"$T/srv.log"
start_cellsd --max-image-size 64M || exit 1
check "image v3: DONE after the restart" wait_for 90 logged "^result image:base@3 2"
check "the download resumed with a Range offset > 0" logged "^get [1-9][0-9]* 206"
check_eq "image v3 is mounted" mounted "$(istate base 3)"
check "the v3 file matches" cmp "$T/v3.erofs" "$CELLS_STATE/images/$(sha "$T/v3.erofs").img"

# --- wrong bytes and more bytes than signed are discarded ---
c0=$(icount image.corrupt refused)
serve "$T/v4.erofs" wrong "$T/e4"
check "wrong bytes: FAILED with the reason" wait_for 60 logged "^result image:base@4 3 .*SHA-256 does not match"
check_eq "wrong bytes: audited" $((c0 + 1)) "$(icount image.corrupt refused)"
check "wrong bytes: nothing stored" test ! -e "$CELLS_STATE/images/$(sha "$T/v4.erofs").img"
check "wrong bytes: no partial file" test ! -e "$CELLS_STATE/images/partial/$(sha "$T/v4.erofs").part"
check "wrong bytes: nothing mounted" bash -c "! grep -q '$(sha "$T/v4.erofs")' /proc/self/mountinfo"
check_eq "wrong bytes: status failed" failed "$(istate base 4)"
serve "$T/v5.erofs" oversize "$T/e5"
check "oversized: FAILED with the reason" wait_for 60 logged "^result image:base@5 3 .*more bytes than the signed size"
check_eq "oversized: audited" $((c0 + 2)) "$(icount image.corrupt refused)"
check "oversized: nothing stored" test ! -e "$CELLS_STATE/images/$(sha "$T/v5.erofs").img"
check_eq "still v3 mounted" mounted "$(istate base 3)"

# --- a server that stops sending and holds the connection: cut after 30 s, resumed ---
serve "$T/v6.erofs" "stall:$((SIZE / 3))" "$T/e6"
check "stalled transfer: DONE after the stall" wait_for 90 logged "^result image:base@6 2"
check "the server stalled" logged "^stall $((SIZE / 3))"
check "the transfer was resumed from where it stalled" logged "^get $((SIZE / 3)) 206"
check "cellsd cut it for lack of progress (a 30 s check without a byte)" grep -q "no byte for 30 s" "$T/cellsd.log"
check_eq "image v6 is mounted" mounted "$(istate base 6)"

# --- the link lost mid-download: an offline `cellctl image import` of the same image
# takes over (the cut download no longer holds its partial file) ---
echo "v7" >"$T/root/etc/hello.txt"
mkfs.erofs --quiet "$T/v7.erofs" "$T/root" >/dev/null || exit 1
forge manifest "$T/v7.erofs" base 7 erofs "$T/m7.bin"
forge good "$T/v7.erofs" base 7 erofs "$T/b7.bin"
mkdir -p "$T/e7"
mkenv "$T/e7/0-trust" 20 "$T/trust.bin"
mkenv "$T/e7/1-image" 22 "$T/m7.bin"
serve "$T/v7.erofs" "stall:$((SIZE / 3))" "$T/e7"
check "v7 download stalled at a third" wait_for 60 logged "^stall $((SIZE / 3))"
kill "$SRV"; wait "$SRV" 2>/dev/null; SRV=
check "the device is offline" wait_for 30 bash -c "! connected"
check "an offline import of v7 takes over the cut download" cellctl image import "$T/v7.erofs" "$T/b7.bin"
check_eq "image v7 is mounted" mounted "$(istate base 7)"
check "the v7 file matches" cmp "$T/v7.erofs" "$CELLS_STATE/images/$(sha "$T/v7.erofs").img"

# --- a manifest by a key without the images role is rejected ---
forge wrong-role "$T/v5.erofs" base 9 erofs "$T/role.bin"
python3 - "$T/role.bin" "$T/role-m.bin" "$T/role-t.bin" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
def vi(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7F) << s; s += 7
        if not c & 0x80: return v, i
# the ImageBundle: field 1 the Signed manifest, field 2 the key's delegation (policy role)
i, parts = 0, {}
while i < len(b):
    k, i = vi(b, i); n, i = vi(b, i)
    parts.setdefault(k >> 3, b[i:i + n]); i += n
open(sys.argv[2], "wb").write(parts[1])
d = parts[2]
with open(sys.argv[3], "wb") as f:
    n, enc = len(d), b""
    while True:
        c = n & 0x7F; n >>= 7; enc += bytes([c | (0x80 if n else 0)])
        if not n: break
    f.write(b"\x12" + enc + d)  # TrustUpdate.delegations
PY
mkdir -p "$T/e9" && mkenv "$T/e9/0-trust" 20 "$T/role-t.bin" && mkenv "$T/e9/1-image" 22 "$T/role-m.bin"
r0=$(icount image.rejected refused)
serve "$T/v5.erofs" ok "$T/e9"
check "the key's policy-role delegation is taken (a TrustUpdate)" wait_for 30 logged "^result trust:img-e9-0-trust 2"
check "a manifest by a key without the images role: REJECTED" wait_for 30 logged "^result image:\\? 4 .*not delegated for the images role"
check_eq "wrong role: audited" $((r0 + 1)) "$(icount image.rejected refused)"
check "audit chain verifies" cellctl audit verify
kill "$SRV" 2>/dev/null
stop_cellsd
finish
