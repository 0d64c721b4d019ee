"""tel_vp.py - the VP side of the telephony tests: talk AT to the virtual modems (pty
slaves) and drive the modem simulator's control socket. Used by tel_proxy.sh and
tests/bench/bench_tel.sh."""
import os, select, socket, time, tty

FINAL = ("OK", "ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")


class Vp:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        os.write(self.fd, data)

    def lines(self, secs, until=None):
        """Read lines for up to secs; stop early when until(line) is true."""
        out, end = [], time.monotonic() + secs
        while True:
            while b"\n" in self.buf or b"\r" in self.buf:
                i = min(x for x in (self.buf.find(b"\r"), self.buf.find(b"\n")) if x >= 0)
                l, self.buf = self.buf[:i].decode(errors="replace"), self.buf[i + 1:]
                if l:
                    out.append(l)
                    if until and until(l):
                        return out
            left = end - time.monotonic()
            if left <= 0:
                return out
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    self.buf += os.read(self.fd, 4096)
                except BlockingIOError:
                    pass

    def cmd(self, line, secs=5):
        self.send(line + "\r")
        return self.lines(secs, lambda l: l in FINAL or l.startswith("+CME ERROR"))

    def drain(self):
        self.lines(0.05)


def sim(sim_dir, req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(sim_dir, "modem.sock"))
    s.sendall((req + "\n").encode())
    rep = b""
    while True:
        b = s.recv(256)
        if not b:
            break
        rep += b
    s.close()
    return rep.decode().strip()
