#!/usr/bin/env bash
# Signed VP images on the server (docs/IMAGES.md): `cells-mdm image build` is reproducible
# (the same tree twice: the same SHA-256) and its erofs and squashfs images mount and
# hold the tree; `image sign` refuses an image whose bytes changed and needs the images
# role; `image push` refuses a lower version and queues the signed manifest
# (Envelope.image) for the device; the device's result "image:NAME@VERSION" is recorded
# (`image list`); and GET /v1/images/<sha256> on the serve listener (mutual TLS) gives
# exactly the file, a Range its tail, and refuses no certificate, an unenrolled one, an
# unknown image (404) and an image not offered to this device (403). An offer not
# answered is sent again after a reconnect with the same id; GET /api/v1/images lists it.
# Devices are test-made identities (ws_client.py mkdev: a client certificate of the
# MDM's CA and a registry row), as in mdm_conform.sh. MDM_DB=pg: on PostgreSQL.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
M=$CELLS_MDM_STATE_DIR
PY=$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
"$PY" -c 'import cryptography' 2>/dev/null || skip "python3-cryptography missing (scripts/deps.sh)"
command -v mkfs.erofs >/dev/null || skip "mkfs.erofs missing (erofs-utils, scripts/deps.sh)"
command -v mksquashfs >/dev/null || skip "mksquashfs missing (squashfs-tools, scripts/deps.sh)"
command -v curl >/dev/null || skip "curl missing"
WS="$CELLS_SRC/tests/integration/ws_client.py"
ws() { "$PY" "$WS" "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
jf() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

# --- build: reproducible, both file systems, the tree's ownership kept
R=$T/rootfs
mkdir -p "$R/etc" "$R/usr/bin" "$R/home/user"
echo "cells-image-test" >"$R/etc/hostname"
head -c 3000000 /dev/urandom >"$R/usr/bin/blob"
ln -s ../usr/bin/blob "$R/etc/link"
echo hi >"$R/home/user/file"
chown -R 1000:1000 "$R/home/user" 2>/dev/null
check "image build (erofs)" cells-mdm image build "$R" -o "$T/a.img" --name base --version 1
check "image build again into another file" cells-mdm image build "$R" -o "$T/b.img" --name base --version 1
touch -d '2001-01-01' "$R/etc/hostname" # times do not count either
check "image build (erofs) a third time" cells-mdm image build "$R" -o "$T/c.img" --name base --version 1
check_eq "the same tree gives the same SHA-256 (erofs)" "$(sha "$T/a.img")" "$(sha "$T/b.img")"
check_eq "file times do not change it" "$(sha "$T/a.img")" "$(sha "$T/c.img")"
cp -a "$R" "$T/rootfs-copy"
check "image build of a copy of the tree (other inodes, other directory order)" cells-mdm image build "$T/rootfs-copy" -o "$T/cp.img" --name base --version 1
check_eq "a copy of the tree gives the same SHA-256" "$(sha "$T/a.img")" "$(sha "$T/cp.img")"
check_eq "the manifest names the file's SHA-256" "$(sha "$T/a.img")" "$(jf "$T/a.img.manifest.json" sha256)"
check_eq "the manifest names the file's size" "$(stat -c %s "$T/a.img")" "$(jf "$T/a.img.manifest.json" size)"
check_eq "the manifest's fs_type" erofs "$(jf "$T/a.img.manifest.json" fs_type)"
check "image build (squashfs)" cells-mdm image build "$R" -o "$T/s1.img" --name base-sq --version 1 --fs squashfs --expires-days 30
check "image build (squashfs) again" cells-mdm image build "$R" -o "$T/s2.img" --name base-sq --version 1 --fs squashfs --expires-days 30
check_eq "the same tree gives the same SHA-256 (squashfs)" "$(sha "$T/s1.img")" "$(sha "$T/s2.img")"
cells-mdm image build "$T/rootfs-copy" -o "$T/s3.img" --name base-sq --version 1 --fs squashfs --expires-days 30 >/dev/null
check_eq "a copy of the tree gives the same SHA-256 (squashfs)" "$(sha "$T/s1.img")" "$(sha "$T/s3.img")"
check_eq "squashfs manifest's fs_type" squashfs "$(jf "$T/s1.img.manifest.json" fs_type)"
check "--expires-days sets expires_at" "$PY" -c "import json; d=json.load(open('$T/s1.img.manifest.json')); assert d['expires_at']-d['created']==30*86400"
mnt_check() { # IMG DIR: mounts read-only and holds the tree's files and owners
	mkdir -p "$2"
	mount -o ro,loop "$1" "$2" || return 1
	local rc=0
	cmp "$R/usr/bin/blob" "$2/usr/bin/blob" && cmp "$R/etc/hostname" "$2/etc/hostname" &&
		[ "$(readlink "$2/etc/link")" = ../usr/bin/blob ] &&
		[ "$(stat -c %u:%g "$2/home/user/file")" = "$(stat -c %u:%g "$R/home/user/file")" ] || rc=1
	umount "$2"
	return $rc
}
if [ "$(id -u)" = 0 ]; then
	check "the erofs image mounts (ro,loop) and holds the tree (contents, links, owners)" mnt_check "$T/a.img" "$T/mnt-e"
	check "the squashfs image mounts (ro,loop) and holds the tree" mnt_check "$T/s1.img" "$T/mnt-s"
else
	skip "mounting the images needs root"
fi
check_fails "a bad name is refused" "not \[a-z0-9\]" cells-mdm image build "$R" -o "$T/x.img" --name Bad --version 1
check_fails "version 0 is refused" "version takes a number >= 1" cells-mdm image build "$R" -o "$T/x.img" --name base --version 0
check_fails "an unknown --fs is refused" "erofs or squashfs" cells-mdm image build "$R" -o "$T/x.img" --name base --version 1 --fs ext4
check_fails "a missing mkfs tool: one clear line" "mkfs.erofs not found on PATH \(install erofs-utils\)" \
	env PATH="$CELLS_BUILD/server-mock" cells-mdm image build "$R" -o "$T/x.img" --name base --version 1

# --- sign
cells-mdm init >/dev/null || exit 1
cells-mdm ca-cert >"$T/ca.pem"
CA=$T/ca.pem
check "keys status: init delegated the images role" bash -c "cells-mdm keys status | grep -q 'roles policy,command,images'"
check "image sign" cells-mdm image sign "$T/a.img"
check "the bundle is an ImageBundle with a SIGNED_IMAGE_MANIFEST (kind 10) and a delegation" "$PY" - "$T/a.img.bundle" <<'PY'
import sys, os
sys.path.insert(0, os.environ["CELLS_SRC"] + "/tests/integration")
from ws_client import parse, one
b = parse(open(sys.argv[1], "rb").read())
s = parse(one(b, 1))
assert one(s, 1, 0) == 10, s
m = parse(one(s, 2))
assert one(m, 1) == b"base" and one(m, 2, 0) == 1 and len(one(m, 4)) == 32 and one(m, 7) == b"erofs", m
assert len(b.get(2, [])) == 1
PY
cp "$T/b.img" "$T/t.img"; cp "$T/b.img.manifest.json" "$T/t.img.manifest.json"
printf 'X' | dd of="$T/t.img" bs=1 seek=100 conv=notrunc 2>/dev/null
check_fails "sign refuses an image whose bytes changed" "does not match its manifest" cells-mdm image sign "$T/t.img"
check "keys delegate --roles policy,command (no images)" cells-mdm keys delegate --roles policy,command --keep-key
check_fails "sign without the images role: one clear line" "does not hold the images role" cells-mdm image sign "$T/s1.img"
check "keys delegate --roles policy,command,images" cells-mdm keys delegate --roles policy,command,images --keep-key
check "image sign (squashfs)" cells-mdm image sign "$T/s1.img"

# --- two test devices, push
enroll_row() { mdm_sql "insert into devices(id, cert_serial, enrolled_at) values('$1', 'test', 0)"; }
A=$(ws mkdev "$M" "$T/a") && B=$(ws mkdev "$M" "$T/b") && C=$(ws mkdev "$M" "$T/c") || exit 1
enroll_row "$A" && enroll_row "$B" || exit 1 # C has a certificate of our CA, but is not enrolled
check "image push to device A" cells-mdm image push "$A" "$T/a.img"
rm -f "$T/a.img.bundle"
check "image push of the same image to device B (signed at push, no bundle)" cells-mdm image push "$B" "$T/a.img"
check_eq "our copy under images/<sha256>.img" "$(sha "$T/a.img")" "$(sha "$M/images/$(sha "$T/a.img").img")"
cells-mdm image build "$R" -o "$T/v3.img" --name base --version 3 >/dev/null
echo changed >"$R/etc/hostname"
cells-mdm image build "$R" -o "$T/v2.img" --name base --version 2 >/dev/null
check "image push of version 3 to A" cells-mdm image push "$A" "$T/v3.img"
check_fails "image push of a lower version (2 after 3) is refused" "version 2 is not above version 3" cells-mdm image push "$A" "$T/v2.img"
cells-mdm image build "$R" -o "$T/v3b.img" --name base --version 3 >/dev/null
check_fails "another image as the same version is refused" "pushed already as another image" cells-mdm image push "$B" "$T/v3b.img"
check_fails "the older base@1 again (same image) after base@3 is refused" "version 1 is not above version 3" cells-mdm image push "$B" "$T/a.img"
check_fails "image push to an unknown device" "no such enrolled device" cells-mdm image push 0123456789abcdef0123456789abcdef "$T/s1.img"
check "image list --json: base@1 queued for A and B" bash -c "cells-mdm --json image list | '$PY' -c \"
import json,sys; d=json.load(sys.stdin); i=[x for x in d if x['name']=='base' and x['version']==1][0]
assert sorted(x['device_id'] for x in i['devices'])==sorted(['$A','$B']), i
assert all(x['state']=='queued' for x in i['devices']), i
assert [x['version'] for x in d if x['name']=='base']==[1,3], d\""
check "image list (text)" bash -c "cells-mdm image list | grep -q '^base@3'"

# --- the device gets the offer over the websocket and answers
PORT=$(free_port)
APORT=$(free_port)
MDM_ARGS=(--admin-port "$APORT")
start_mdm || exit 1
wait_for 10 port_open "$APORT" || { echo "admin listener did not start"; cat "$T/mdm.log"; exit 1; }
# (admins live in the state dir's sqlite file: on PostgreSQL `admin add` wants mdm.db)
[ -n "${CELLS_MDM_DB:-}" ] || { cells-mdm admin add viewer --role auditor --out "$T/admins" >/dev/null || exit 1; }
[ -n "${CELLS_MDM_DB:-}" ] || check "admin API: GET /api/v1/images lists base@1 and base@3 (an auditor may read it)" bash -c "curl -sSf --cacert '$CA' --cert '$T/admins/viewer.pem' --key '$T/admins/viewer.key' https://localhost:$APORT/api/v1/images | '$PY' -c \"
import json,sys; d=json.load(sys.stdin); assert [(x['name'],x['version']) for x in d if x['name']=='base']==[('base',1),('base',3)], d\""
check "device A: Envelope.image offers base@1 signed by the images key; DONE is acknowledged" \
	"$PY" - "$PORT" "$CA" "$T/a" "$(sha "$T/a.img")" <<'PY'
import sys, os
sys.path.insert(0, os.environ["CELLS_SRC"] + "/tests/integration")
from ws_client import parse, one, dev_ws, dev_id, hello, envelope, result, expect_answer, RESULT, ACK, fail
port, ca, pre, want = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ws = dev_ws(port, ca, pre)
hello(ws, dev_id(pre))
seen = {}
while len(seen) < 2:
    env = ws.recv()
    if 22 in env:
        s = parse(one(env, 22))
        if one(s, 1, 0) != 10:
            fail("kind %r" % one(s, 1, 0))
        m = parse(one(s, 2))
        seen["%s@%d" % (one(m, 1).decode(), one(m, 2, 0))] = (one(env, 2).decode(), m)
entry, m = seen["base@1"]
if one(m, 4).hex() != want:
    fail("sha256 %s, want %s" % (one(m, 4).hex(), want))
ws.send(envelope(RESULT, result("image:base@1", 2), corr=entry, mid="r-img-1"))
if ACK not in expect_answer(ws, "r-img-1"):
    fail("DONE not acknowledged")
entry3, _ = seen["base@3"]
ws.send(envelope(RESULT, result("image:base@1", 2), corr=entry3, mid="r-img-bad"))
e = expect_answer(ws, "r-img-bad")
if ACK in e:
    fail("a result naming another image was acknowledged")
ws.send(envelope(RESULT, result("image:base@3", 4, reason="sha256 mismatch"), corr=entry3, mid="r-img-3"))
if ACK not in expect_answer(ws, "r-img-3"):
    fail("FAILED not acknowledged")
print("offers of base@1 and base@3 received; results recorded")
PY
check "device B: the offer not answered is sent again after a reconnect, with the same id" \
	"$PY" - "$PORT" "$CA" "$T/b" <<'PY'
import sys, os
sys.path.insert(0, os.environ["CELLS_SRC"] + "/tests/integration")
from ws_client import parse, one, dev_ws, dev_id, hello, envelope, result, expect_answer, RESULT, ACK, fail
port, ca, pre = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def offer():
    ws = dev_ws(port, ca, pre)
    hello(ws, dev_id(pre))
    while True:
        env = ws.recv()
        if 22 in env:
            return ws, one(env, 2).decode()
ws, first = offer()
ws.close()  # gone without an answer
ws, again = offer()
if again != first:
    fail("offered again as %s, first as %s" % (again, first))
ws.send(envelope(RESULT, result("image:base@1", 2), corr=again, mid="r-img-b"))
if ACK not in expect_answer(ws, "r-img-b"):
    fail("DONE not acknowledged")
print("offer %s sent again after the reconnect, then acknowledged" % first)
PY
state_of() { cells-mdm --json image list | "$PY" -c "import json,sys; d=json.load(sys.stdin); print([x for i in d if i['name']=='$1' and i['version']==$2 for x in i['devices'] if x['device_id']=='$3'][0]['$4'])"; }
check_eq "image list: base@1 done on A" done "$(state_of base 1 "$A" state)"
check_eq "image list: base@3 failed on A" failed "$(state_of base 3 "$A" state)"
check_eq "image list: the failure's reason" "sha256 mismatch" "$(state_of base 3 "$A" reason)"
check_eq "image list: base@1 done on B" done "$(state_of base 1 "$B" state)"

# --- the download endpoint
U="https://localhost:$PORT/v1/images"
H1=$(sha "$T/a.img")
get() { local who=$1; shift; curl -sS --cacert "$CA" --cert "$T/$who.pem" --key "$T/$who.key" "$@"; }
code() { local who=$1; shift; get "$who" -o /dev/null -w '%{http_code}' "$@"; }
export T CA
export -f get
check "A: GET gives exactly the file" bash -c "get a -f -o '$T/dl.img' '$U/$H1' && cmp '$T/dl.img' '$T/a.img'"
check "A: GET over HTTP/1.1 gives exactly the file" bash -c "get a --http1.1 -f -o '$T/dl1.img' '$U/$H1' && cmp '$T/dl1.img' '$T/a.img'"
check "A: Range over HTTP/1.1 gives exactly the tail" bash -c "get a --http1.1 -f -H 'Range: bytes=1000-' '$U/$H1' | cmp - <(tail -c +1001 '$T/a.img')"
check_eq "A: a plain GET is 200" 200 "$(code a "$U/$H1")"
check_eq "A: Content-Length is the size" "$(stat -c %s "$T/a.img")" "$(get a -o /dev/null -w '%{size_download}' "$U/$H1")"
SZ=$(stat -c %s "$T/a.img")
OFF=$((SZ - 12345))
get a -D "$T/hdr" -o "$T/tail.bin" -H "Range: bytes=$OFF-" "$U/$H1"
check "A: Range bytes=N- is 206" grep -q "^HTTP/[0-9.]* 206" "$T/hdr"
check "A: Range gives exactly the tail" bash -c "tail -c 12345 '$T/a.img' | cmp - '$T/tail.bin'"
check "A: Content-Range names the bytes and the size" grep -qi "^content-range: bytes $OFF-$((SZ - 1))/$SZ" "$T/hdr"
check "A: curl -C - resumes a partial download" bash -c "head -c 5000 '$T/a.img' >'$T/part.img' && get a -f -C - -o '$T/part.img' '$U/$H1' && cmp '$T/part.img' '$T/a.img'"
check "A: Range bytes=N-M gives exactly those bytes" bash -c "get a -f -H 'Range: bytes=10-19' '$U/$H1' | cmp - <(head -c 20 '$T/a.img' | tail -c 10)"
check "A: Range bytes=N-(huge) gives the tail" bash -c "get a -f -H 'Range: bytes=100-18446744073709551615' '$U/$H1' | cmp - <(tail -c +101 '$T/a.img')"
check_eq "A: Range beyond the end is 416" 416 "$(code a -H "Range: bytes=$SZ-" "$U/$H1")"
check_eq "B: the image offered to B too is 200" 200 "$(code b "$U/$H1")"
H3=$(sha "$T/v3.img")
check_eq "B: an image not offered to B is 403" 403 "$(code b "$U/$H3")"
check_eq "A: an unknown image is 404" 404 "$(code a "$U/$(printf '0%.0s' $(seq 64))")"
check_eq "A: a POST is 405" 405 "$(code a -X POST --data x "$U/$H1")"
check_eq "A: a POST is 405 (HTTP/1.1)" 405 "$(code a --http1.1 -X POST --data x "$U/$H1")"
check_eq "A: a malformed path is 404" 404 "$(code a "$U/xyz")"
check_eq "no client certificate is 403" 403 "$(curl -sS --cacert "$CA" -o /dev/null -w '%{http_code}' "$U/$H1")"
check_eq "an unenrolled device's certificate is 403" 403 "$(code c "$U/$H1")"
openssl req -x509 -newkey ed25519 -nodes -keyout "$T/self.key" -out "$T/self.pem" -subj "/CN=$A" -days 1 2>/dev/null
check "a certificate of another CA: refused in the handshake or 403" bash -c "c=\$(curl -sS --cacert '$CA' --cert '$T/self.pem' --key '$T/self.key' -o /dev/null -w '%{http_code}' '$U/$H1' 2>/dev/null); [ \"\$c\" != 200 ]"
check "the refusals are logged" grep -q "image download refused" "$T/mdm.log"

# a client that stops reading does not stall others
"$PY" - "$PORT" "$CA" "$T/a" "$H1" >"$T/stall.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
port, ca, pre, h = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(pre + ".pem", pre + ".key")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
s.sendall(("GET /v1/images/%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % h).encode())
s.recv(100)
time.sleep(20)  # reads nothing more
PY
STALL=$!
PIDS+=("$STALL")
sleep 1
check "while a client stalls, another download completes" bash -c "timeout 10 bash -c \"get b -f -o '$T/dl2.img' '$U/$H1'\" && cmp '$T/dl2.img' '$T/a.img'"
kill "$STALL" 2>/dev/null
stop_mdm
finish
