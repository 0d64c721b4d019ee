#!/usr/bin/env python3
"""image_mdm.py PORT CERT KEY CA IMAGE MODE LOG ENVDIR - a test MDM for image delivery
(the "hostile MDM network" until cells-mdm serves images): mutual TLS (the device
certificate required) on 127.0.0.1:PORT; a websocket session on /v1 gets every file of
ENVDIR (sorted; each the bytes of one Envelope) as binary frames, and the device's
CommandResults are logged ("result ID STATUS REASON"); GET /v1/images/<sha256> serves
IMAGE with Range ("get OFFSET STATUS" logged). MODE: ok | cut:N (the first GET stops
after N body bytes and drops the connection) | stall:N (the first GET stops after N
body bytes and holds the connection open, silent, for 120 s) | slow:N (N ms between 64 KiB chunks) |
wrong (one byte of the body flipped) | oversize (16 KiB more than IMAGE). Runs until
killed."""
import hashlib, base64, os, socket, ssl, sys, threading, time

port, cert, key, ca, image, mode, log, envdir = sys.argv[1:9]
data = open(image, "rb").read()
if mode == "wrong":
    b = bytearray(data); b[len(b) // 3] ^= 1; data = bytes(b)
elif mode == "oversize":
    data = data + b"\0" * 16384
sha = hashlib.sha256(open(image, "rb").read()).hexdigest()
lock = threading.Lock()
gets = [0]

def note(s):
    with lock:
        with open(log, "a") as f:
            f.write(s + "\n")

def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7F) << s; s += 7
        if not c & 0x80: return v, i

def fields(b):
    i, out = 0, {}
    while i < len(b):
        k, i = varint(b, i); f, t = k >> 3, k & 7
        if t == 0: v, i = varint(b, i)
        elif t == 2: n, i = varint(b, i); v = b[i:i + n]; i += n
        elif t == 1: v = b[i:i + 8]; i += 8
        elif t == 5: v = b[i:i + 4]; i += 4
        else: return out
        out.setdefault(f, v)
    return out

def recv_exact(t, n):
    b = b""
    while len(b) < n:
        d = t.recv(n - len(b))
        if not d: raise EOFError
        b += d
    return b

def frame(op, p):
    n = len(p)
    h = bytes([0x80 | op]) + (bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big") if n < 65536 else bytes([127]) + n.to_bytes(8, "big"))
    return h + p

def session(t, req):
    k = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    acc = base64.b64encode(hashlib.sha1(k + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    t.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + acc + b"\r\nSec-WebSocket-Protocol: cells.v1\r\n\r\n")
    note("session")
    time.sleep(0.5)
    for name in sorted(os.listdir(envdir)):
        t.sendall(frame(2, open(os.path.join(envdir, name), "rb").read()))
        time.sleep(0.3)
    t.settimeout(None)
    while True:
        h = recv_exact(t, 2); op = h[0] & 0xF; n = h[1] & 0x7F
        if n == 126: n = int.from_bytes(recv_exact(t, 2), "big")
        elif n == 127: n = int.from_bytes(recv_exact(t, 8), "big")
        m = recv_exact(t, 4) if h[1] & 0x80 else b"\0\0\0\0"
        p = bytes(c ^ m[i % 4] for i, c in enumerate(recv_exact(t, n)))
        if op == 8: return
        if op == 9: t.sendall(frame(10, p)); continue
        env = fields(p)
        if 16 in env:
            r = fields(env[16])
            note("result %s %d %s" % (r.get(1, b"").decode(), r.get(2, 0), r.get(3, b"").decode()))
        if 17 in env:
            note("ack")

def get(t, req):
    line = req.split(b"\r\n")[0].decode()
    path = line.split()[1]
    off = 0
    for l in req.split(b"\r\n")[1:]:
        if l.lower().startswith(b"range:"):
            off = int(l.split(b"=", 1)[1].split(b"-")[0])
    with lock:
        gets[0] += 1; nget = gets[0]
    if path != "/v1/images/" + sha:
        t.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        note("get %d 404" % off); return
    body = data[off:]
    if off:
        hdr = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %d-%d/%d\r\n" % (off, len(data) - 1, len(data))
    else:
        hdr = "HTTP/1.1 200 OK\r\n"
    hdr += "Content-Length: %d\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n" % len(body)
    note("get %d %s" % (off, "206" if off else "200"))
    t.sendall(hdr.encode())
    limit = len(body)
    if (mode.startswith("cut:") or mode.startswith("stall:")) and nget == 1:
        limit = min(limit, int(mode.split(":")[1]))
    delay = int(mode[5:]) / 1000 if mode.startswith("slow:") else 0
    i = 0
    while i < limit:
        j = min(limit, i + 65536)
        t.sendall(body[i:j]); i = j
        if delay: time.sleep(delay)
    if limit < len(body) and mode.startswith("stall:"):
        note("stall %d" % (off + limit))
        time.sleep(120)
    elif limit < len(body):
        note("cut %d" % (off + limit))
        t.shutdown(socket.SHUT_RDWR)

def handle(c):
    try:
        c.settimeout(10)
        t = ctx.wrap_socket(c, server_side=True)
        req = b""
        while b"\r\n\r\n" not in req:
            d = t.recv(4096)
            if not d: return
            req += d
        if b"upgrade: websocket" in req.lower():
            session(t, req)
        else:
            get(t, req)
        t.close()
    except Exception as e:
        note("conn error %s" % type(e).__name__)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(port)))
ls.listen(16)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
