#!/usr/bin/env bash
# The management channel against hostile peers: TLS servers that must be refused
# (expired certificate, wrong host name, untrusted CA, TLS 1.1 only), a client without
# a certificate, a server sending garbage / oversized / text frames, and a compromised
# network process writing forged and out-of-state messages on the socketpair.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
M=$CELLS_MDM_STATE_DIR
setup_enrolled || { cat "$T/cellsd.log" "$T/mdm.log"; exit 1; }
ok "enrolled and connected"
cells-mdm policy example --device "$DEV" --version 2 >"$T/p2.json"
ID=$(cells-mdm --json policy push "$DEV" "$T/p2.json" | json_get "d[0]['id']")
check "baseline policy acknowledged" wait_for 15 entry_is "$ID" acknowledged

# --- the server refuses a client without a certificate (or with a foreign one)
python3 - "$PORT" "$T/ca.pem" >"$T/nocert.out" 2>&1 <<'PY'
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
    t.sendall(b"GET /v1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Protocol: cells.v1\r\n\r\n")
    print(t.recv(4096))
except Exception as e:
    print("refused:", e)
PY
check "a session without a client certificate is refused" bash -c "! grep -q ' 101 ' '$T/nocert.out'"

# --- TLS peers the agent must refuse
stop_mdm
# Debian's python3 with python3-cryptography (scripts/deps.sh), not a version manager's
PY=$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
"$PY" - "$M" "$T" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
m, t = sys.argv[1], sys.argv[2]
cakey = serialization.load_pem_private_key(open(m + "/ca.key", "rb").read(), None)
ca = x509.load_pem_x509_certificate(open(m + "/ca.pem", "rb").read())
now = datetime.datetime.utcnow()
def mk(name, issuer, ikey, nb, na, sans):
    k = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
         .issuer_name(issuer).public_key(k.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False))
    c = b.sign(ikey, hashes.SHA256())
    open(f"{t}/{name}.pem", "wb").write(c.public_bytes(serialization.Encoding.PEM))
    open(f"{t}/{name}.key", "wb").write(k.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return k, c
d = datetime.timedelta(days=1)
mk("expired", ca.subject, cakey, now - 10 * d, now - d, ["localhost"])
mk("wronghost", ca.subject, cakey, now - d, now + d, ["wrong.example"])
rk = ec.generate_private_key(ec.SECP256R1())
rn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
mk("untrusted", rn, rk, now - d, now + d, ["localhost"])
PY
tls_refused() { # tls_refused DESC CERT KEY [s_server args]
	local desc=$1 cert=$2 key=$3; shift 3
	openssl s_server -accept "127.0.0.1:$PORT" -cert "$cert" -key "$key" -www "$@" >"$T/s_server.log" 2>&1 &
	local sp=$!
	wait_for 5 port_open "$PORT"
	: >"$T/s_server.log"
	sleep 4
	check "$desc: refused by the agent" not_connected
	check "$desc: the handshake failed at the server" grep -qiE "error|alert|wrong version|unsupported|no shared" "$T/s_server.log"
	kill "$sp"; wait "$sp" 2>/dev/null
	check "$desc: the agent keeps running" cellctl ping
}
tls_refused "expired certificate" "$T/expired.pem" "$T/expired.key"
tls_refused "wrong host name" "$T/wronghost.pem" "$T/wronghost.key"
tls_refused "untrusted CA" "$T/untrusted.pem" "$T/untrusted.key"
tls_refused "TLS 1.0/1.1 only" "$M/server.pem" "$M/server.key" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
start_mdm
check "back with the real server: connected again" wait_for 20 connected
cat "$T/s_server.log" >>"$T/tls.log"

# --- a server sending garbage, oversized or text frames: dropped and re-established
for mode in garbage oversize text; do
	stop_mdm
	: >"$T/fake_$mode.log"
	python3 "$CELLS_SRC/tests/integration/fake_mdm.py" "$PORT" "$M/server.pem" "$M/server.key" "$M/ca.pem" "$mode" "$T/fake_$mode.log" &
	FP=$!
	check "$mode from the server: the agent reconnects" wait_for 20 bash -c "[ \$(grep -c connection '$T/fake_$mode.log') -ge 2 ]"
	check "$mode from the server: reported as a protocol error" bash -c "grep -qiE 'protocol error|closed|size' '$T/cellsd.log'"
	kill "$FP"; wait "$FP" 2>/dev/null
	check "$mode from the server: the agent is healthy" cellctl ping
	start_mdm
	check "$mode from the server: connected again to the real server" wait_for 20 connected
done

# --- a compromised network process cannot change the policy or start a command
STARTED=$(audit_count mgmt.command.started)
stop_cellsd
mkdir -p "$T/fake" && chmod 777 "$T/fake" && chmod 711 "$T"
# cellsd gives the helper a clean environment: the settings are written into its copy
sed -e "s|@FAKE_NET_DIR@|$T/fake|" -e "s|@FAKE_NET_DEVICE@|$DEV|" \
	"$CELLS_SRC/tests/integration/fake_net.py" >"$T/fake/fake_net.py"
chmod 755 "$T/fake/fake_net.py"
install -m 644 "$CELLS_SRC/tests/integration/pbwire.py" "$T/fake/pbwire.py"
start_cellsd --net-helper "$T/fake/fake_net.py" || exit 1
check "the fake network process ran all its rounds" wait_for 40 test -e "$T/fake/done"
# how cellsd starts any network process (kspawn ksp_spawn_helper), seen by the helper
C=$(cat "$T/fake"/confinement.* | head -5)
echo "$C" >"$T/confinement.txt"
check "the helper runs as the dedicated uid, no groups" grep -qE "^uid ([1-9][0-9]*) \1 gid [1-9][0-9]* groups 0$" "$T/confinement.txt"
check "the helper's uid is not nobody's" bash -c "! grep -q '^uid 65534' '$T/confinement.txt'"
check "the helper has no capabilities (bounding set empty)" grep -q "^CapBnd 0000000000000000 CapInh 0000000000000000 CapAmb 0000000000000000 CapEff 0000000000000000$" "$T/confinement.txt"
check "the helper has no_new_privs" grep -q "^NoNewPrivs 1$" "$T/confinement.txt"
check "the helper got an empty environment" grep -q "^environ 0$" "$T/confinement.txt"
# 0-2 stdio, 3 ipc, 4 key, 5 the script (its interpreter reads it), then python's own
check "the helper inherited only stdio, the IPC socket, the key and its program" bash -c \
	"grep '^fds' '$T/confinement.txt' | grep -qE '^fds 0 1 2 3 4 5( [0-9]+)?$'"
check_eq "the policy did not change" 2 "$(mgmt_field policy_version)"
check "the forged policy was rejected and audited" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='policy.rejected'\") -ge 1 ]"
check "the forged command was rejected and audited" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='mgmt.command.rejected'\") -ge 1 ]"
check_eq "no command was started" "$STARTED" "$(audit_count mgmt.command.started)"
check "out-of-state and malformed messages were refused and audited" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='mgmt.ipc.refused'\") -ge 3 ]"
check "the agent restarted the network process with backoff" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='mgmt.net.restarted'\") -ge 3 ]"
check "the agent is healthy" cellctl ping
stop_cellsd
start_cellsd || exit 1
check "with the real network process the channel is back" wait_for 20 connected
check "clean shutdown" stop_cellsd
finish
