#!/usr/bin/env python3
"""ws_client.py - an independent, minimal client of the Cells management protocol,
written from docs/PROTOCOL.md for the conformance tests (tests/integration/mdm_conform.sh):
TLS with the ssl module, RFC 6455 framing by hand, protobuf encoded and decoded by hand
(field numbers of proto/cells.proto). It can act as a device (a client certificate issued
with the MDM's CA, see `mkdev`) or as an unauthenticated peer (/v1/enroll).

    ws_client.py mkdev MDM_STATE OUT_PREFIX        -> prints the device id
    ws_client.py TEST PORT CA.pem [ARGS...]        -> exit 0 when the server conforms

Only loopback is ever contacted."""
import base64
import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time

HOST = "127.0.0.1"

# ---------------------------------------------------------------- protobuf, by hand (pbwire.py)
from pbwire import varint, f_varint, f_bytes, read_varint, by_field as parse  # noqa: E402



def one(d, num, default=b""):
    return d.get(num, [default])[0]


# Envelope body field numbers (proto/cells.proto)
HELLO, SERVER_HELLO, ENROLL_REQUEST, POLICY, COMMAND, RESULT, ACK, ERROR = 10, 11, 12, 14, 15, 16, 17, 19

_ctr = [0]


def envelope(body_num, body, corr="", version=1, mid=None):
    _ctr[0] += 1
    mid = mid or "t-%d-%d" % (os.getpid(), _ctr[0])
    return f_varint(1, version) + f_bytes(2, mid) + (f_bytes(3, corr) if corr else b"") + f_bytes(body_num, body)


def signed(kind, payload, priv):
    """Signed{kind, payload, [Signature{key_id, signature}]} over domain || 0 || payload."""
    domains = {5: b"cells.v1.wipe-receipt", 7: b"cells.v1.command-result"}
    from cryptography.hazmat.primitives import serialization
    pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sig = priv.sign(domains[kind] + b"\0" + payload)
    return f_varint(1, kind) + f_bytes(2, payload) + f_bytes(3, f_bytes(1, hashlib.sha256(pub).digest()) + f_bytes(2, sig))


# ---------------------------------------------------------------- websocket, by hand


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__("closed %s %r" % (code, reason))
        self.code, self.reason = code, reason


class WS:
    def __init__(self, port, ca, path="/v1", cert=None, key=None, timeout=10):
        ctx = ssl.create_default_context(cafile=ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        raw = socket.create_connection((HOST, port), timeout=timeout)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        k = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Protocol: cells.v1\r\n\r\n" % (path, k)).encode())
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise Closed(None, "closed during the upgrade")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise Closed(None, head.split(b"\r\n")[0].decode())

    @staticmethod
    def frame_header(opcode, n, fin=True):
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            return bytes([b0, 0x80 | n])
        if n < 65536:
            return bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
        return bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)

    def send_frame(self, opcode, data, fin=True):
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if len(data) < 65536 else \
            (int.from_bytes(data, "big") ^ int.from_bytes((mask * (len(data) // 4 + 1))[:len(data)], "big")).to_bytes(len(data), "big")
        self.s.sendall(self.frame_header(opcode, len(data), fin) + mask + body)

    def send(self, env):
        self.send_frame(2, env)

    def _need(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise Closed(None, "connection closed without a close frame")
            self.buf += d

    def recv_frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, i = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, i = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, i = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(i + n)
        data, self.buf = self.buf[i:i + n], self.buf[i + n:]
        return b0 & 0x0F, data

    def recv(self):
        """The next Envelope as a dict; Closed(code, reason) on a close frame."""
        while True:
            op, data = self.recv_frame()
            if op == 8:
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
                raise Closed(code, data[2:].decode(errors="replace"))
            if op == 9:  # ping
                self.send_frame(10, data)
                continue
            if op == 2:
                return parse(data)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def error_of(env):
    e = parse(one(env, ERROR)) if ERROR in env else None
    return (one(e, 1, 0), one(e, 2).decode()) if e is not None else None


def dev_ws(port, ca, pre, **kw):
    return WS(port, ca, "/v1", pre + ".pem", pre + ".key", **kw)


def hello(ws, dev):
    ws.send(envelope(HELLO, f_bytes(1, dev) + f_bytes(2, "conform-test")))
    while True:
        env = ws.recv()
        if SERVER_HELLO in env:
            return env


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


# ---------------------------------------------------------------- a device identity


def mkdev(mdm, pre):
    """An Ed25519 device key and a client certificate from the MDM's CA (CN = device id
    = hex of the first 16 bytes of SHA-256 of the raw public key, PROTOCOL.md §6)."""
    import datetime
    from cryptography import x509
    from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    cakey = serialization.load_pem_private_key(open(mdm + "/ca.key", "rb").read(), None)
    ca = x509.load_pem_x509_certificate(open(mdm + "/ca.pem", "rb").read())
    k = ed25519.Ed25519PrivateKey.generate()
    raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    dev = hashlib.sha256(raw).digest()[:16].hex()
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dev)]))
         .issuer_name(ca.subject).public_key(k.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
         .sign(cakey, hashes.SHA256()))
    open(pre + ".pem", "wb").write(c.public_bytes(serialization.Encoding.PEM))
    open(pre + ".key", "wb").write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    open(pre + ".raw", "w").write(raw.hex())
    print(dev)


def load_key(pre):
    from cryptography.hazmat.primitives import serialization
    return serialization.load_pem_private_key(open(pre + ".key", "rb").read(), None)


def dev_id(pre):
    return hashlib.sha256(bytes.fromhex(open(pre + ".raw").read())).digest()[:16].hex()


# ---------------------------------------------------------------- conformance tests


def t_version2(port, ca, pre):
    """Envelope.version 2 -> Error{2} (§2, §8); an unknown body field -> Error{2} (§7)."""
    ws = dev_ws(port, ca, pre)
    ws.send(envelope(HELLO, f_bytes(1, dev_id(pre)), version=2))
    e = error_of(ws.recv())
    if not e or e[0] != 2:
        fail("version 2 answered %r, not Error{2}" % (e,))
    ws.send(f_varint(1, 1) + f_bytes(2, "t-unknown-body") + f_bytes(99, b"\x08\x01"))
    e = error_of(ws.recv())
    if not e or e[0] != 2:
        fail("an unknown body answered %r, not Error{2}" % (e,))
    ws.send(b"\xff\xff\xff")  # not protobuf
    e = error_of(ws.recv())
    if not e or e[0] != 1:
        fail("garbage answered %r, not Error{1}" % (e,))
    print("version 2: Error{2} %r; unknown body: Error{2}; garbage: Error{1}" % e[1])


def expect_close(ws, code, want_error=None):
    got_err = None
    try:
        while True:
            env = ws.recv()
            got_err = error_of(env) or got_err
    except Closed as c:
        if c.code != code:
            fail("closed with %r (%s), expected close code %d" % (c.code, c.reason, code))
    except (ssl.SSLError, OSError) as x:
        fail("connection dropped without a close frame: %s" % x)
    if want_error is not None and (not got_err or got_err[0] != want_error):
        fail("expected Error{%d} before the close, got %r" % (want_error, got_err))
    return got_err


def t_oversize(port, ca, pre):
    """A message over 1 MiB -> Error{3}, then close 1009 (§3, §8)."""
    ws = dev_ws(port, ca, pre)
    hello(ws, dev_id(pre))
    try:
        ws.send(b"\0" * (1048576 + 1))
    except (OSError, ssl.SSLError) as x:
        fail("the server dropped the connection while the frame was sent: %s" % x)
    e = expect_close(ws, 1009, 3)
    print("over 1 MiB: Error{3} %r, close 1009" % e[1])


def t_text(port, ca, pre):
    """A text frame -> close frame 1003 (§1)."""
    ws = dev_ws(port, ca, pre)
    hello(ws, dev_id(pre))
    ws.send_frame(1, b"hello")
    expect_close(ws, 1003)
    print("text frame: close 1003")


def t_enroll_limit(port, ca):
    """/v1/enroll: a frame announcing 1 MiB is refused at its header (Error{3}, close
    1009) without the server waiting for (or keeping) the rest."""
    ws = WS(port, ca, "/v1/enroll")
    n = 1048576
    mask = b"\0\0\0\0"
    ws.s.sendall(WS.frame_header(2, n) + mask + b"\0" * 9000)  # 9000 of 1 MiB, then silence
    t0 = time.monotonic()
    e = expect_close(ws, 1009, 3)
    print("enroll, 1 MiB announced, 9000 bytes sent: Error{3} %r, close 1009 after %.3f s" % (e[1], time.monotonic() - t0))
    # a message just under the bound is read and answered (malformed: Error{1}), not refused for size
    ws = WS(port, ca, "/v1/enroll")
    ws.send(b"\xff" * 8000)
    e = expect_close(ws, 1000, 1)
    print("enroll, 8000 bytes of garbage: Error{1}, close 1000")


def t_header_limit(port, ca):
    """Before any upgrade: endless HTTP header bytes are cut off at lws' header buffer."""
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection((HOST, port), timeout=5), server_hostname="localhost")
    s.sendall(b"GET /v1/enroll HTTP/1.1\r\nHost: localhost\r\nX-Pad: ")
    sent, t0 = 0, time.monotonic()
    try:
        while sent < 1048576:
            s.sendall(b"a" * 4096)
            sent += 4096
        d = s.recv(4096)  # the server must have answered or closed by now
        while d and b"101" not in d:
            d = s.recv(4096)
        if d:
            fail("upgraded after 1 MiB of header")
    except (OSError, ssl.SSLError):
        pass
    if time.monotonic() - t0 > 4:
        fail("the server held the connection %.1f s" % (time.monotonic() - t0))
    print("1 MiB of HTTP header: connection closed after %d bytes sent (%.3f s)" % (sent, time.monotonic() - t0))


SENT = [0]


def flood_once(port, ca, barrier=None, sent=None, done=None):
    """One unauthenticated peer: upgrade on /v1/enroll, announce a 1 MiB message and
    send all of it but its last byte; with barriers, all peers connect first, and stay connected until the
    RSS was read."""
    ws = None
    try:
        ws = WS(port, ca, "/v1/enroll", timeout=20)
        if barrier:
            barrier.wait()  # all connected (TLS, upgraded) before any sends
        ws.s.settimeout(3)  # a server that stops reading blocks us: that is fine
        ws.s.sendall(WS.frame_header(2, 1048576) + b"\0\0\0\0")
        for _ in range(255):
            ws.s.sendall(b"\0" * 4096)
            SENT[0] += 4096
        ws.s.sendall(b"\0" * 4095)
        SENT[0] += 4095  # all but the last byte: a server that buffers holds it all
    except (OSError, ssl.SSLError, Closed, threading.BrokenBarrierError):
        pass
    if sent:
        try:
            sent.wait()
            done.wait()
        except threading.BrokenBarrierError:
            pass
    if ws:
        ws.close()


def rss(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def t_rss(port, ca, pid, limit_kib):
    """50 concurrent unauthenticated connections each sending 1 MiB: the server's RSS
    grows by less than limit_kib."""
    pid, limit_kib = int(pid), int(limit_kib)
    for _ in range(2):  # warm-up: lazily made TLS and lws state
        flood_once(port, ca)
    time.sleep(0.5)
    before = rss(pid)
    bar = threading.Barrier(50, timeout=30)
    sent, done = threading.Barrier(51, timeout=60), threading.Barrier(51, timeout=60)
    th = [threading.Thread(target=flood_once, args=(port, ca, bar, sent, done)) for _ in range(50)]
    for t in th:
        t.start()
    sent.wait()  # every peer sent its 1 MiB (or was cut off) and is still connected
    time.sleep(3)  # the server reads what the sockets hold
    after = rss(pid)
    done.wait()
    for t in th:
        t.join()
    print("VmRSS before %d KiB, with 50 peers that sent 1 MiB pre-auth each (%d KiB accepted by the sockets): %d KiB (growth %d KiB, limit %d)" %
          (before, SENT[0] // 1024, after, after - before, limit_kib))
    if after - before > limit_kib:
        fail("RSS grew by %d KiB" % (after - before))


def result(cid, status, receipt=None, reason=""):
    r = f_bytes(1, cid) + f_varint(2, status) + (f_bytes(3, reason) if reason else b"") + f_varint(4, int(time.time()))
    return r + (f_bytes(5, receipt) if receipt else b"")


def wipe_receipt(priv, dev, vp, cid, corrupt=False):
    p = f_bytes(1, dev) + f_bytes(2, vp) + f_bytes(3, cid) + f_varint(4, int(time.time())) + f_varint(5, 3) + \
        f_varint(6, 1) + f_varint(7, 1) + f_bytes(8, "intent") + f_bytes(8, "delete-data") + f_bytes(9, "delete") + \
        f_varint(10, 3) + f_varint(11, 12)
    s = signed(5, p, priv)
    if corrupt:
        s = s[:-1] + bytes([s[-1] ^ 1])  # the last byte of the signature
    return s


def next_command(ws):
    """The next command envelope: (queue entry id, Signed dict, Command dict)."""
    while True:
        env = ws.recv()
        if COMMAND in env:
            sg = parse(one(env, COMMAND))
            return one(env, 2).decode(), sg, parse(one(sg, 2))


def expect_answer(ws, mid):
    while True:
        env = ws.recv()
        if one(env, 3).decode() == mid and (ACK in env or ERROR in env):
            return env


def t_foreign(port, ca, pre, entry, cid):
    """Device B answers device A's queue entry: Error{8}, nothing changes."""
    ws = dev_ws(port, ca, pre)
    dev = dev_id(pre)
    hello(ws, dev)
    rc = wipe_receipt(load_key(pre), dev, "work", cid)
    mid = "res-foreign-1"
    ws.send(envelope(RESULT, result(cid, 2, rc), corr=entry, mid=mid))
    e = error_of(expect_answer(ws, mid))
    if not e or e[0] != 8:
        fail("a result for another device's entry was answered %r, not Error{8}" % (e,))
    print("result for another device's entry: Error{8} %r" % e[1])


def t_receipt(port, ca, pre):
    """A wipe: a forged receipt is refused (Error{4}, entry failed), the genuine one that
    follows is verified, stored and acknowledged (entry acknowledged)."""
    ws = dev_ws(port, ca, pre)
    dev = dev_id(pre)
    hello(ws, dev)
    entry, sg, cmd = next_command(ws)
    cid = one(cmd, 1).decode()
    if 10 not in cmd:
        fail("not a wipe command: %r" % cmd)
    vp = one(parse(one(cmd, 10)), 1).decode()
    key = load_key(pre)
    ws.send(envelope(RESULT, result(cid, 2, wipe_receipt(key, dev, vp, cid, corrupt=True)), corr=entry, mid="res-forged"))
    e = error_of(expect_answer(ws, "res-forged"))
    if not e or e[0] != 4:
        fail("a forged receipt was answered %r, not Error{4}" % (e,))
    print("forged receipt: Error{4} %r" % e[1])
    open(os.environ.get("CONFORM_OUT", "/dev/null"), "w").write(entry)
    if os.environ.get("CONFORM_PAUSE"):  # the shell checks the entry's state meanwhile
        while not os.path.exists(os.environ["CONFORM_PAUSE"]):
            time.sleep(0.1)
    ws.send(envelope(RESULT, result(cid, 2, wipe_receipt(key, dev, vp, cid)), corr=entry, mid="res-genuine"))
    env = expect_answer(ws, "res-genuine")
    if ACK not in env:
        fail("the genuine receipt was answered %r, not Ack" % (error_of(env),))
    print("genuine receipt: Ack")


def t_lock(port, ca, pre, signing_pub_hex, vp, unlock):
    """The next command delivered is a LockVp{vp, unlock} signed (SIGNED_COMMAND) by the
    delegated signing key for this device; answered DONE."""
    ws = dev_ws(port, ca, pre)
    dev = dev_id(pre)
    hello(ws, dev)
    entry, sg, cmd = next_command(ws)
    from cryptography.hazmat.primitives.asymmetric import ed25519
    pub = bytes.fromhex(signing_pub_hex)
    if one(sg, 1, 0) != 2:
        fail("kind %r, not SIGNED_COMMAND" % one(sg, 1, 0))
    sigs = [parse(x) for x in sg.get(3, [])]
    ok = [s for s in sigs if one(s, 1) == hashlib.sha256(pub).digest()]
    if not ok:
        fail("not signed by the signing key")
    ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(one(ok[0], 2), b"cells.v1.command\0" + one(sg, 2))
    if one(cmd, 2).decode() != dev or 14 not in cmd:
        fail("not a LockVp for this device: %r" % cmd)
    lk = parse(one(cmd, 14))
    if one(lk, 1).decode() != vp or bool(one(lk, 2, 0)) != (unlock == "1"):
        fail("LockVp %r, expected vp %s unlock %s" % (lk, vp, unlock))
    if not one(cmd, 4, 0) > time.time():  # expires_at
        fail("no expiry")
    ws.send(envelope(RESULT, result(one(cmd, 1).decode(), 2), corr=entry, mid="res-lock-" + entry))
    if ACK not in expect_answer(ws, "res-lock-" + entry):
        fail("result not acknowledged")
    print("LockVp{%s, unlock=%s} delivered, signature verified, acknowledged" % (vp, unlock == "1"))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    t, a = sys.argv[1], sys.argv[2:]
    if t == "mkdev":
        mkdev(*a)
        return 0
    port, ca, rest = int(a[0]), a[1], a[2:]
    {"version2": t_version2, "oversize": t_oversize, "text": t_text, "enroll-limit": t_enroll_limit,
     "header-limit": t_header_limit, "rss": t_rss, "foreign": t_foreign, "receipt": t_receipt,
     "lock": t_lock}[t](port, ca, *rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
