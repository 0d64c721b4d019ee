#!/usr/bin/env python3
"""fake_net.py - a compromised cellsd-net for tests (run by `cellsd --net-helper`).
It writes forged and out-of-state messages on the socketpair; cellsd must refuse them.
Each start is one round (counter in DIR/round). cellsd starts it with a clean
environment: the test copies it with @FAKE_NET_DIR@ and @FAKE_NET_DEVICE@ filled in."""
import os, socket, sys, time

D = os.environ.get("FAKE_NET_DIR", "@FAKE_NET_DIR@")
# cellsd runs this copy through /dev/fd (execveat): pbwire.py is found beside it in D
sys.path.insert(0, D)
from pbwire import f_varint as vi, f_bytes as ld, dgram  # noqa: E402
DEV = os.environ.get("FAKE_NET_DEVICE", "@FAKE_NET_DEVICE@")
fd = int(sys.argv[sys.argv.index("--ipc-fd") + 1])
s = socket.socket(fileno=fd)

def ipc(t, payload):
    s.send(dgram(t, payload))

sig = ld(3, ld(1, os.urandom(32)) + ld(2, os.urandom(64)))
policy = b"\x08\x01" + ld(2, vi(1, 99) + ld(4, DEV)) + sig
command = b"\x08\x02" + ld(2, ld(1, "c-forged") + ld(2, DEV) + vi(4, int(time.time()) + 999) + ld(10, ld(1, "work"))) + sig
env_policy = vi(1, 1) + ld(2, "forged-policy") + ld(14, policy)
env_command = vi(1, 1) + ld(2, "forged-command") + ld(15, command)
env_enroll = vi(1, 1) + ld(2, "forged-enroll") + ld(13, ld(1, DEV))

# what cellsd gave us, for the test to check: uid, capabilities, environment, fds (the
# list holds one more: the directory fd of listdir itself)
fds = " ".join(sorted(os.listdir("/proc/self/fd"), key=int))
with open(os.path.join(D, "confinement.%d" % os.getpid()), "w") as f:
    st = {l.split(":")[0]: l.split(":", 1)[1].strip() for l in open("/proc/self/status")}
    print("uid", os.getuid(), os.geteuid(), "gid", os.getgid(), "groups", len(os.getgroups()), file=f)
    print("CapBnd", st["CapBnd"], "CapInh", st["CapInh"], "CapAmb", st["CapAmb"], "CapEff", st["CapEff"], file=f)
    print("NoNewPrivs", st["NoNewPrivs"], file=f)
    print("environ", len(open("/proc/self/environ", "rb").read()), file=f)
    print("fds", fds, file=f)

path = os.path.join(D, "round")
r = int(open(path).read()) if os.path.exists(path) else 0
open(path, "w").write(str(r + 1))
if r == 0:
    ipc(17, env_policy)            # RECV before "connected": out of state -> killed
    time.sleep(5)
elif r == 1:
    ipc(16, b"\x08\x01")           # STATUS connected
    time.sleep(0.3)
    ipc(17, env_policy)            # a forged policy: refused by signature
    ipc(17, env_command)           # a forged wipe: refused by signature
    ipc(17, env_enroll)            # an enrollment answer on a session: refused
    time.sleep(0.5)
    ipc(18, b"")                   # ENROLL_RESULT with no enrollment: out of state -> killed
    time.sleep(5)
elif r == 2:
    s.send(b"\xde\xad\xbe\xef" * 4)  # garbage -> killed
    time.sleep(5)
else:
    open(os.path.join(D, "done"), "w").write("1")
    time.sleep(60)
