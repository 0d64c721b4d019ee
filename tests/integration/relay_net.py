#!/usr/bin/python3
"""relay_net.py - a compromised cellsd-net for tests (run by `cellsd --net-helper`).

It holds what a compromised network process holds: the IPC socket to cellsd and the
TLS key (read from --key-fd). It runs the real cellsd-net (RELAY_REAL) behind a
socketpair of its own (handing it the same key on a fresh memfd), relays every message
both ways, and tampers according to RELAY_DIR/mode (read at each message):
  pass        relay only
  swap-root   the EnrollResponse's trust_root gets another key (an attacker's root)
  bare-ack    an Ack from the server loses its signed audit_ack
  forged-ack  an Ack's audit_ack signature is replaced by random bytes
  resign-tls  what the device sends signed by its identity key is re-signed with the
              TLS key: audit checkpoints, and every CommandResult gets a wipe receipt
              signed with the TLS key
Each tampering appends a line to RELAY_DIR/log."""
import os, select, socket, struct, sys, time

# cellsd starts its network process with an empty environment: the test writes these
# into its copy of this file (mgmt_trust.sh)
D = "@RELAY_DIR@"
# cellsd runs this copy through /dev/fd (execveat): pbwire.py is found beside it in D
sys.path.insert(0, D)
REAL = "@RELAY_REAL@"
HDR = ">HBBI"
MAXD = 2 * 1024 * 1024


def log(s):
    with open(os.path.join(D, "log"), "a") as f:
        f.write(s + "\n")


def mode():
    try:
        return open(os.path.join(D, "mode")).read().strip()
    except OSError:
        return "pass"


# --- the protobuf wire format: a message is a list of [field, wiretype, value]
from pbwire import fields as parse, ser, get  # noqa: E402


# --- the TLS key (what cellsd gave the network process) ---
keyfd = int(sys.argv[sys.argv.index("--key-fd") + 1])
ipcfd = int(sys.argv[sys.argv.index("--ipc-fd") + 1])
pem = b""
os.lseek(keyfd, 0, 0)  # a memfd cellsd wrote: read it from its start
while True:
    c = os.read(keyfd, 65536)
    if not c:
        break
    pem += c
os.close(keyfd)
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
import hashlib  # noqa: E402

tls = serialization.load_pem_private_key(pem, None)
tls_pub = tls.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
with open(os.path.join(D, "netkey"), "w") as f:  # the public half of the key we were given
    f.write(tls_pub.hex() + "\n")


def sign_tls(domain, payload):
    sig = tls.sign(domain + b"\x00" + payload)
    return ser([[1, 2, hashlib.sha256(tls_pub).digest()], [2, 2, sig]])


def resign(signed, domain):
    m = parse(signed)
    m = [e for e in m if e[0] != 3] + [[3, 2, sign_tls(domain, get(m, 2)[2])]]
    return ser(m)


# --- the real network process behind our own socketpair ---
mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
mfd = os.memfd_create("relay-key", 0)
os.write(mfd, pem)
os.lseek(mfd, 0, 0)
pid = os.fork()
if pid == 0:
    os.dup2(theirs.fileno(), 3)
    os.dup2(mfd, 4)
    os.closerange(5, 1024)
    os.execv(REAL, ["cellsd-net", "--ipc-fd", "3", "--key-fd", "4"])
theirs.close()
os.close(mfd)
up = socket.socket(fileno=ipcfd)


def tamper_down(t, p):
    """from the real cellsd-net to cellsd"""
    md = mode()
    if t == 17:  # what the server says in its hello (observed, not changed)
        sh = get(parse(p), 11)
        if sh:
            v = get(parse(sh[2]), 2)
            log("server hello: latest_policy_version=%d" % (v[2] if v else 0))
    if t == 18 and md == "swap-root":  # NET_ENROLL_RESULT
        r = parse(p)
        env = parse(get(r, 3)[2])
        e = get(env, 13)
        if e:
            er = parse(e[2])
            trf = get(er, 4)
            tr = parse(trf[2])
            tr = [x for x in tr if x[0] != 2] + [[2, 2, Ed25519PrivateKey.generate().public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)]]
            trf[2] = ser(tr)
            e[2] = ser(er)
            get(r, 3)[2] = ser(env)
            log("swapped the trust root of the EnrollResponse")
            return ser(r)
    if t == 17 and md in ("bare-ack", "forged-ack"):  # NET_RECV: an Envelope
        env = parse(p)
        e = get(env, 17)
        if e:
            ack = parse(e[2])
            a = get(ack, 2)
            if md == "bare-ack":
                ack = [x for x in ack if x[0] != 2]
                log("stripped the audit_ack of an Ack")
            elif a:
                s = parse(a[2])
                sigs = [parse(x[2]) for x in s if x[0] == 3]  # the real key ids, random signatures
                s = [x for x in s if x[0] != 3] + [[3, 2, ser([get(g, 1), [2, 2, os.urandom(64)]])] for g in sigs]
                a[2] = ser(s)
                log("forged the audit_ack signature of an Ack")
            e[2] = ser(ack)
            return ser(env)
    return p


def tamper_up(t, p):
    """from cellsd to the real cellsd-net"""
    if t != 2 or mode() != "resign-tls":  # NET_SEND: an Envelope
        return p
    env = parse(p)
    b = get(env, 18)
    if b:  # AuditBatch: its checkpoint re-signed with the TLS key
        batch = parse(b[2])
        cp = get(batch, 3)
        if cp:
            cp[2] = resign(cp[2], b"cells.v1.audit-checkpoint")
            b[2] = ser(batch)
            log("re-signed an audit checkpoint with the TLS key")
            return ser(env)
    r = get(env, 16)
    if r:  # CommandResult: a wipe receipt signed with the TLS key
        res = parse(r[2])
        dev = open(os.path.join(D, "device")).read().strip().encode()
        cid = get(res, 1)[2] if get(res, 1) else b""
        wr = ser([[1, 2, dev], [2, 2, b"work"], [3, 2, cid], [4, 0, int(time.time())], [5, 0, 1]])
        sig = sign_tls(b"cells.v1.wipe-receipt", wr)
        res = [x for x in res if x[0] != 5] + [[5, 2, ser([[1, 0, 5], [2, 2, wr], [3, 2, sig]])]]
        r[2] = ser(res)
        log("attached a wipe receipt signed with the TLS key to result %s" % cid.decode())
        return ser(env)
    return p


def relay(src, dst, fn):
    d = src.recv(MAXD)
    if not d:
        return False
    if len(d) >= 8:
        magic, ver, t, n = struct.unpack(HDR, d[:8])
        try:
            p = fn(t, d[8:8 + n])
            d = struct.pack(HDR, magic, ver, t, len(p)) + p
        except Exception as ex:  # relay untouched what we cannot parse
            log("tamper error: %r" % ex)
    dst.send(d)
    return True


while True:
    rs, _, _ = select.select([up, mine], [], [])
    if up in rs and not relay(up, mine, tamper_up):
        break
    if mine in rs and not relay(mine, up, tamper_down):
        break
os.kill(pid, 9)
