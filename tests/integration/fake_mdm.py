#!/usr/bin/env python3
"""fake_mdm.py PORT CERT KEY CA MODE LOG - a hostile MDM for tests: it completes mutual
TLS and the websocket handshake, then sends MODE (garbage | oversize | text) and counts
connections in LOG. Stops by itself after 30 s."""
import base64, hashlib, socket, ssl, sys, time

port, cert, key, ca, mode, log = sys.argv[1:7]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(port)))
ls.listen(8)
ls.settimeout(1)
end = time.time() + 30
n = 0
while time.time() < end:
    try:
        c, _ = ls.accept()
    except socket.timeout:
        continue
    try:
        c.settimeout(5)
        t = ctx.wrap_socket(c, server_side=True)
        req = b""
        while b"\r\n\r\n" not in req:
            d = t.recv(4096)
            if not d: break
            req += d
        k = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
        acc = base64.b64encode(hashlib.sha1(k + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        t.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + acc + b"\r\nSec-WebSocket-Protocol: cells.v1\r\n\r\n")
        n += 1
        open(log, "a").write("connection %d\n" % n)
        time.sleep(0.3)
        if mode == "garbage":
            p = b"\xff\xfe\xfd\xfc garbage"
            t.sendall(bytes([0x82, len(p)]) + p)
        elif mode == "text":
            t.sendall(bytes([0x81, 5]) + b"hello")
        elif mode == "oversize":
            ln = 2 * 1024 * 1024
            t.sendall(bytes([0x82, 127]) + ln.to_bytes(8, "big"))
            chunk = b"\0" * 65536
            for _ in range(ln // 65536):
                t.sendall(chunk)
        time.sleep(1)
        t.close()
    except Exception as e:
        open(log, "a").write("error %s\n" % e)
        try: c.close()
        except Exception: pass
