"""bench_tel.py MODEM_LINK RUN_DIR N - incoming-call routing latency of the telephony
proxy: RING written on the real modem's pty -> RING read on the VP's virtual modem.
This script plays the real modem itself (a pty whose slave cellsd opens as --modem), so
t0 is the moment RING enters the real modem's line. Peer, side by side: the same RING
through the same two pty hops with a trivial relay process (read, write) instead of
cellsd: the floor any user-space proxy pays."""
import os, select, statistics, sys, time, tty
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from tel_vp import Vp

link, run, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
master, slave = os.openpty()
tty.setraw(slave)
os.symlink(os.ttyname(slave), link)
# keep our slave fd open: the master never reads EIO while cellsd (re)opens the path
mbuf = b""
ANSW = {"AT+CPIN?": "\r\n+CPIN: READY\r\n", "AT+CIMI": "\r\n001010123456789\r\n",
        "AT+CCID": "\r\n+CCID: 8901001012345678901\r\n"}


def modem_serve(secs):
    """Answer the proxy's commands for up to secs (OK to everything, SIM data)."""
    global mbuf
    end = time.monotonic() + secs
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.02)
        if not r:
            continue
        mbuf += os.read(master, 4096)
        while b"\r" in mbuf:
            l, mbuf = mbuf.split(b"\r", 1)
            l = l.strip().decode()
            if l:
                os.write(master, (ANSW.get(l, "") + "\r\nOK\r\n").encode())


modem_serve(1.5)  # cellsd connects, initialises (ATE0, AT+CLIP=1, SIM once)
work = Vp(run + "/tel/work.pty")
work.cmd("ATE0")
lat = []
for i in range(n):
    t0 = time.perf_counter_ns()
    os.write(master, b'\r\nRING\r\n\r\n+CLIP: "+155577700001",145,,,,0\r\n')
    got = work.lines(2, lambda l: l == "RING")
    t1 = time.perf_counter_ns()
    if "RING" not in got:
        sys.exit("call %d: no RING on the VP's pty" % i)
    lat.append((t1 - t0) / 1000)
    modem_serve(0.002)
    os.write(master, b"\r\nNO CARRIER\r\n")
    work.lines(2, lambda l: l == "NO CARRIER")
    modem_serve(0.002)

# the peer: the same topology with a trivial relay process instead of cellsd
# (modem pty master -> relay reads slave, writes VP pty master -> reader on VP slave)
am, as_ = os.openpty()
bm, bs = os.openpty()
tty.setraw(as_)
tty.setraw(bs)
pid = os.fork()
if pid == 0:
    while True:
        d = os.read(as_, 4096)
        if not d:
            os._exit(0)
        os.write(bm, d)
base = []
for i in range(n):
    t0 = time.perf_counter_ns()
    os.write(am, b"\r\nRING\r\n")
    b = b""
    while b"RING" not in b:
        select.select([bs], [], [], 2)
        b += os.read(bs, 64)
    base.append((time.perf_counter_ns() - t0) / 1000)
    time.sleep(0.002)
os.kill(pid, 9)
os.waitpid(pid, 0)


def pct(a, p):
    a = sorted(a)
    return a[min(len(a) - 1, int(len(a) * p / 100))]


p50, p99 = pct(lat, 50), pct(lat, 99)
b50, b99 = pct(base, 50), pct(base, 99)
print("incoming-call routing, %d calls (RING on the real modem -> RING on the VP's pty)" % n)
print("  proxy (cellsd):  p50 %7.1f us   p99 %7.1f us   max %7.1f us" % (p50, p99, max(lat)))
print("  trivial relay:   p50 %7.1f us   p99 %7.1f us" % (b50, b99))
print("  ratio proxy/trivial relay: p50 %.1fx  p99 %.1fx" % (p50 / b50, p99 / b99))
