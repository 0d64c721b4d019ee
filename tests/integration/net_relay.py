#!/usr/bin/env python3
"""net_relay.py - a hostile network process for tests, run by `cellsd --net-helper`.
It starts the real cellsd-net behind itself, relays the socketpair both ways and,
per the mode in DIR/mode (read at each start), tampers once it sees the session open:
  relay     relay only; every RECV datagram is recorded in DIR/rec (for `replay`)
  flood     forged commands and policies (fresh message ids) as fast as it can
  flood_all forged acks, commands and policies for ever at just under cellsd's rate
            limits (200 acks/s, 3 commands or policies/s), at every start (the
            benchmark: the most a network process can make cellsd do)
  noread    never reads what cellsd sends again; a few forged commands, so that
            cellsd has results to send
  replay    sends every recorded datagram again, three times
  bad       round 0: an oversized datagram; 1: a truncated one; 2: an out-of-state
            ENROLL_RESULT; later rounds relay
A mode that tampers does so at its first start only (DIR/done.MODE), except flood_all.
cellsd gives it a clean environment: the test copies it with @DIR@, @NET@ (a copy of
cellsd-net it can execute) and @DEV@ filled in."""
import ctypes, os, select, signal, socket, struct, subprocess, sys, time

D, NET, DEV = "@DIR@", "@NET@", "@DEV@"
# cellsd runs this copy through /dev/fd (execveat): pbwire.py is found beside it in D
sys.path.insert(0, D)
from pbwire import f_varint as vi, f_bytes as ld, dgram  # noqa: E402
args = sys.argv[1:]
up = socket.socket(fileno=int(args[args.index("--ipc-fd") + 1]))
keyfd = int(args[args.index("--key-fd") + 1])
retry = args[args.index("--retry-max-ms") + 1] if "--retry-max-ms" in args else "0"
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
libc = ctypes.CDLL(None, use_errno=True)

def log(*m):
    with open(os.path.join(D, "relay.log"), "a") as f:
        print(time.strftime("%H:%M:%S"), os.getpid(), *m, file=f)

def die_with_parent():
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

net = subprocess.Popen([NET, "--ipc-fd", str(b.fileno()), "--key-fd", str(keyfd),
                        "--retry-max-ms", retry], pass_fds=(b.fileno(), keyfd), env={},
                       preexec_fn=die_with_parent)
b.close()
os.close(keyfd)

sig = ld(3, ld(1, os.urandom(32)) + ld(2, os.urandom(64)))
def forged_command(i):
    c = b"\x08\x02" + ld(2, ld(1, "c-forged-%d" % i) + ld(2, DEV) + vi(4, int(time.time()) + 999)
                     + ld(10, ld(1, "work"))) + sig
    return dgram(17, vi(1, 1) + ld(2, "fc-%d-%d" % (os.getpid(), i)) + ld(15, c))
def forged_policy(i):
    p = b"\x08\x01" + ld(2, vi(1, 1000 + i) + ld(4, DEV)) + sig
    return dgram(17, vi(1, 1) + ld(2, "fp-%d-%d" % (os.getpid(), i)) + ld(14, p))
def forged_ack(i):
    return dgram(17, vi(1, 1) + ld(2, "fa-%d-%d" % (os.getpid(), i)) + ld(17, ld(1, "o-%d" % i)))
STATUS_UP, STATUS_DOWN = dgram(16, b"\x08\x01"), dgram(16, ld(2, "forged"))

def mode():
    try: return open(os.path.join(D, "mode")).read().strip()
    except OSError: return "relay"
M = mode()
done = os.path.join(D, "done." + M)
if M not in ("relay", "flood_all") and os.path.exists(done):
    M = "relay"
rnd = 0
if M == "bad":
    path = os.path.join(D, "round")
    rnd = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(rnd + 1))
    if rnd >= 2: open(done, "w").write("1")
log("start", M, rnd)
os.makedirs(os.path.join(D, "rec"), exist_ok=True)

def send_up(d):
    try: up.send(d)
    except OSError as e:
        log("cellsd closed:", e); sys.exit(0)

def tamper():
    if M not in ("relay", "flood_all", "bad"): open(done, "w").write("1")
    if M == "flood":
        i = 0
        t0 = time.time()
        while time.time() - t0 < 30:
            send_up(forged_command(i)); send_up(forged_policy(i))
            i += 1
    elif M == "flood_all":
        i, t0 = 0, time.time()
        while True:
            send_up(forged_ack(i))
            if i % 67 == 0: send_up(forged_command(i) if i % 2 else forged_policy(i))
            i += 1
            # keep relaying the real process's messages meanwhile
            r, _, _ = select.select([a, up], [], [], 0)
            if a in r: send_up(a.recv(2 << 20))
            if up in r: a.send(up.recv(2 << 20))
            delay = t0 + i / 200.0 - time.time()
            if delay > 0: time.sleep(delay)
    elif M == "noread":
        for i in range(20): send_up(forged_command(i))
    elif M == "replay":
        recs = sorted(os.listdir(os.path.join(D, "rec")))
        for _ in range(3):
            for r in recs: send_up(open(os.path.join(D, "rec", r), "rb").read())
        log("replayed", len(recs))
    elif M == "bad":
        if rnd == 0: send_up(dgram(17, b"\0" * (1024 * 1024 + 64 * 1024 + 16)))
        elif rnd == 1: send_up(dgram(17, b"\x08\x01", length=4096))
        elif rnd == 2: send_up(dgram(18, b""))

connected, tampered, reading, nrec = False, False, True, 0
while True:
    rl = [a] + ([up] if reading else [])
    r, _, _ = select.select(rl, [], [], 0.2)
    if a in r:
        d = a.recv(2 << 20)
        if not d: log("cellsd-net exited"); sys.exit(0)
        if d[3] == 16: connected = d[8:10] == b"\x08\x01"
        if d[3] == 17 and M == "relay":
            nrec += 1
            open(os.path.join(D, "rec", "%d-%05d" % (os.getpid(), nrec)), "wb").write(d)
        send_up(d)
    if up in r:
        d = up.recv(2 << 20)
        if not d: log("cellsd closed"); sys.exit(0)
        a.send(d)
    if connected and not tampered and M != "relay":
        tampered = True
        if M == "noread": reading = False
        log("tamper", M)
        tamper()
        log("tampered", M)
