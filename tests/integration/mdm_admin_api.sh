#!/usr/bin/env bash
# The admin HTTPS+JSON API of `cells-mdm serve --admin-port` (docs/openapi.yaml) with curl,
# against a device enrolled by the real agent: admin client certificates and their roles
# (admin, helpdesk, auditor), what each role is refused (403, one line, nothing changed),
# revocation from the next request, bad input (4xx, one line, nothing changed), CSRF and
# anti-framing headers, policy push acknowledged by the device, a wipe with its verified
# receipt, the device's uploaded audit log searched and exported, and the hash-chained
# admin audit log verified through the API and the CLI, then tampered with and caught.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh" # its json_get (stdin) wins
command -v curl >/dev/null || skip "curl missing"
wipe_use_instance m
APORT=$(free_port)
MDM_ARGS=(--admin-port "$APORT")
setup_enrolled || { cat "$T/cellsd.log" "$T/mdm.log"; exit 1; }
wait_for 10 port_open "$APORT" || { echo "admin listener did not start"; cat "$T/mdm.log"; exit 1; }
A="https://localhost:$APORT"
CA="$CELLS_MDM_STATE_DIR/ca.pem"
for r in admin helpdesk auditor; do
	check "admin add $r" cells-mdm admin add "the-$r" --role "$r" --out "$T/admins"
done
check "admin add: PKCS#12 with a password from the environment" bash -c \
	"P12PW=s3cret cells-mdm admin add p12test --role auditor --out '$T/p12' --p12-password-env P12PW >/dev/null && openssl pkcs12 -in '$T/p12/p12test.p12' -passin pass:s3cret -nokeys | grep -q 'CN = p12test'"
check_fails "admin add: a missing password variable" "is not set" cells-mdm admin add p12b --role auditor --p12-password-env NO_SUCH_VAR
check_fails "admin add: an unknown role" "admin, helpdesk or auditor" cells-mdm admin add eve --role root
check_fails "admin add: a taken name" "exists" cells-mdm admin add the-admin --role auditor --out "$T/admins"

# api ROLE METHOD PATH [BODY [EXTRA CURL ARGS]]: the body to stdout, the status to $T/status
api() {
	local who=$1 m=$2 p=$3 body=${4-} ; shift 3; [ $# -gt 0 ] && shift
	local a=(-sS --cacert "$CA" --cert "$T/admins/the-$who.pem" --key "$T/admins/the-$who.key"
		-o "$T/body" -w '%{http_code}' -X "$m")
	if [ "$m" = POST ]; then
		a+=(-H "Content-Type: application/json" -H "X-Cells-CSRF: ${XCSRF-$(csrf "$who")}" --data-binary "$body")
	fi
	curl "${a[@]}" "$@" "$A$p" >"$T/status" 2>"$T/curl.err"
	cat "$T/body"
}
csrf() { curl -sS --cacert "$CA" --cert "$T/admins/the-$1.pem" --key "$T/admins/the-$1.key" "$A/api/v1/session" | json_get "d['csrf']"; }
status() { cat "$T/status"; }
one_line_error() { [ "$(wc -l <"$T/body")" -le 1 ] && json_get "d['error']" <"$T/body" >/dev/null; }
queued() { cells-mdm --json command list | json_get "len(d)"; }
export T A CA
export -f api csrf status

# --- who is who
for r in admin helpdesk auditor; do
	check_eq "$r: the session names the role" "$r" "$(api "$r" GET /api/v1/session | json_get "d['role']")"
	check_eq "$r: sees the enrolled device online" "True" "$(api "$r" GET /api/v1/devices | json_get "[x['online'] for x in d if x['device_id']=='$DEV'][0]")"
done
check_eq "auditor: offered no changing call" "[]" "$(api auditor GET /api/v1/session | json_get "d['may']")"
check_eq "helpdesk: offered lock, unlock, token" "['device.lock', 'device.unlock', 'enroll-token.create']" "$(api helpdesk GET /api/v1/session | json_get "d['may']")"
check_fails "no client certificate: the TLS handshake is refused" "curl: \\(|alert|certificate|handshake" curl -sS --cacert "$CA" "$A/api/v1/devices"
# a certificate of this CA that is not an admin's (as a device's would be)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/admins/the-stranger.key" \
	-subj "/O=Cells MDM/CN=stranger/OU=admin" -out "$T/stranger.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$T/ext.cnf"
openssl x509 -req -in "$T/stranger.csr" -CA "$CA" -CAkey "$CELLS_MDM_STATE_DIR/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext.cnf" -out "$T/admins/the-stranger.pem" 2>/dev/null
api stranger GET /api/v1/devices >/dev/null
check_eq "a CA certificate not issued as an admin: 401" 401 "$(status)"
check "... with a one-line JSON reason" one_line_error

# --- the page's protections
curl -sS -D "$T/hdr" -o /dev/null --cacert "$CA" --cert "$T/admins/the-admin.pem" --key "$T/admins/the-admin.key" "$A/"
check "X-Frame-Options: DENY" grep -qi '^x-frame-options: DENY' "$T/hdr"
check "CSP frame-ancestors 'none'" grep -qi "^content-security-policy:.*frame-ancestors 'none'" "$T/hdr"
check "no-store and nosniff" bash -c "grep -qi '^cache-control: no-store' '$T/hdr' && grep -qi '^x-content-type-options: nosniff' '$T/hdr'"

# --- refused by role: 403, one line, nothing queued, recorded
N0=$(queued)
api auditor POST "/api/v1/devices/$DEV/wipe" '{"vp":"work"}' >/dev/null
check_eq "auditor: wipe refused 403" 403 "$(status)"
check "... with a one-line JSON reason" one_line_error
api helpdesk POST "/api/v1/devices/$DEV/wipe" '{"vp":"work"}' >/dev/null
check_eq "helpdesk: wipe refused 403" 403 "$(status)"
api helpdesk POST "/api/v1/devices/$DEV/policy" '{"policy":{}}' >/dev/null
check_eq "helpdesk: policy push refused 403" 403 "$(status)"
api auditor POST "/api/v1/devices/$DEV/lock" '{"vp":"work"}' >/dev/null
check_eq "auditor: lock refused 403" 403 "$(status)"
api auditor POST /api/v1/enroll-tokens '{}' >/dev/null
check_eq "auditor: enrollment token refused 403" 403 "$(status)"
api helpdesk GET /api/v1/admin-audit >/dev/null
check_eq "helpdesk: the admin audit log is not theirs to read (403)" 403 "$(status)"
check_eq "nothing was queued by the refused calls" "$N0" "$(queued)"

# --- bad input: 4xx, one line, nothing queued
bad() { # DESC STATUS BODY [CURL ARGS]
	local d=$1 s=$2 b=$3; shift 3
	api admin POST "/api/v1/devices/$DEV/lock" "$b" "$@" >/dev/null
	check_eq "bad input: $d -> $s" "$s" "$(status)"
	one_line_error || not_ok "bad input: $d: no one-line JSON reason"
}
bad "not JSON" 400 '{"vp":'
bad "not an object" 400 '["work"]'
bad "an unknown member" 400 '{"vp":"work","x":1}'
bad "a VP name with a slash" 400 '{"vp":"../etc"}'
bad "vp not a string" 400 '{"vp":7}'
bad "missing vp" 400 '{}'
bad "data after the value" 400 '{"vp":"work"} {}'
bad "too deep" 400 "{\"vp\":$(printf '[%.0s' $(seq 40))$(printf ']%.0s' $(seq 40))}"
head -c 70000 /dev/zero | tr '\0' ' ' >"$T/big"
bad "a body over 64 KiB" 413 "@$T/big"
bad "a wrong content type" 415 '{"vp":"work"}' -H 'Content-Type: text/plain'
bad "a foreign Origin" 403 '{"vp":"work"}' -H 'Origin: https://evil.example'
XCSRF=$(printf '0%.0s' $(seq 64)) bad "a wrong CSRF token" 403 '{"vp":"work"}'
XCSRF=$(csrf auditor) bad "another admin's CSRF token" 403 '{"vp":"work"}'
XCSRF= bad "no CSRF header" 403 '{"vp":"work"}'
api admin POST "/api/v1/devices/0123456789abcdef0123456789abcdef/lock" '{"vp":"work"}' >/dev/null
check_eq "an unknown device -> 404" 404 "$(status)"
api admin GET "/api/v1/nope" >/dev/null
check_eq "an unknown path -> 404" 404 "$(status)"
api admin PUT "/api/v1/devices" >/dev/null
check_eq "PUT -> 405" 405 "$(status)"
api admin GET "/api/v1/devices/$DEV/audit?limit=abc" >/dev/null
check_eq "a bad query argument -> 400" 400 "$(status)"
api admin POST "/api/v1/devices/$DEV/policy" '{"policy":{"version":"seven"}}' >/dev/null
check_eq "an invalid policy -> 422" 422 "$(status)"
check "... with the policy code's reason on one line" one_line_error
check_eq "nothing was queued by bad input" "$N0" "$(queued)"

# --- what the roles may do
api helpdesk POST "/api/v1/devices/$DEV/lock" '{"vp":"work"}' >"$T/lock.json"
check_eq "helpdesk: lock work -> 201" 201 "$(status)"
LID=$(json_get "d['id']" <"$T/lock.json")
api helpdesk POST "/api/v1/devices/$DEV/unlock" '{"vp":"work"}' >/dev/null
check_eq "helpdesk: unlock work -> 201" 201 "$(status)"
api helpdesk POST /api/v1/enroll-tokens '{"ttl":600}' >"$T/tok.json"
check_eq "helpdesk: a re-enrollment token -> 201" 201 "$(status)"
check "... the token is in the body (never in a URL)" bash -c "json_get \"d['token']\" <'$T/tok.json' | grep -qE '^[0-9a-f]{48}\.[0-9a-f]{64}$'"
cells-mdm policy example --device "$DEV" --version 7 >"$T/p.json"
PBODY=$(python3 -c "import json,sys; print(json.dumps({'policy': json.load(open(sys.argv[1]))}))" "$T/p.json")
api admin POST "/api/v1/devices/$DEV/policy" "$PBODY" >"$T/pol.json"
check_eq "admin: policy push -> 201" 201 "$(status)"
PID1=$(json_get "d['id']" <"$T/pol.json")
check "the device acknowledges the policy" wait_for 30 entry_is "$PID1" acknowledged
check "the API shows the device's policy version 7" wait_for 10 bash -c "[ \"\$(api auditor GET /api/v1/devices | json_get \"[x['policy_version'] for x in d if x['device_id']=='$DEV'][0]\")\" = 7 ]"

# --- wipe the work VP; the device page shows the verified receipt
W=$(cellctl wipe prepare work)
check "work storage prepared" test -d "$W"
api admin POST "/api/v1/devices/$DEV/wipe" '{"vp":"work"}' >"$T/wipe.json"
check_eq "admin: wipe work -> 201" 201 "$(status)"
WID=$(json_get "d['id']" <"$T/wipe.json")
check "the wipe is acknowledged" wait_for 60 entry_is "$WID" acknowledged
api auditor GET "/api/v1/devices/$DEV" >"$T/dev.json"
check_eq "auditor: the device page has the verified receipt of work" "True" "$(json_get "[r['verified'] for r in d['receipts'] if r['vp']=='work'][0]" <"$T/dev.json")"
check_eq "... and the queue with the wipe acknowledged" acknowledged "$(json_get "[e['state'] for e in d['queue'] if e['id']=='$WID'][0]" <"$T/dev.json")"
check "... and its VPs" bash -c "json_get \"'work' in d['vps']\" <'$T/dev.json' | grep -q True"

VID=$(cells-mdm --json voip assign "$DEV" personal +15550101 1 | json_get "d['id']")
check "a VoIP number assignment is acknowledged" wait_for 30 entry_is "$VID" acknowledged
api auditor GET "/api/v1/devices/$DEV" >"$T/dev.json"
check_eq "the device page has personal's VoIP number" "+15550101/1" "$(json_get "d['voip'].get('personal')" <"$T/dev.json")"
check_eq "... and its VPs: personal and work, nothing else" "['personal', 'work']" "$(json_get "sorted(d['vps'])" <"$T/dev.json")"

# --- the device's uploaded audit log: search, filter, export, verification
cells-mdm audit request "$DEV" >/dev/null
check "the device uploads its audit log" wait_for 30 bash -c "[ \"\$(api auditor GET '/api/v1/devices/$DEV/audit' | json_get 'len(d)')\" -gt 0 ]"
check_eq "the uploaded log verifies" True "$(api auditor GET "/api/v1/devices/$DEV" | json_get "d['audit']['verified']")"
api auditor GET "/api/v1/devices/$DEV/audit?type=wipe&limit=50" >"$T/f.json"
check_eq "filter by event type" True "$(json_get 'all(r["event"].startswith("wipe.") for r in d) and len(d) > 0' <"$T/f.json")"
check "limit" bash -c "[ \"\$(api auditor GET '/api/v1/devices/$DEV/audit?limit=1' | json_get 'len(d)')\" = 1 ]"
api auditor GET "/api/v1/devices/$DEV/audit?format=csv" >"$T/a.csv"
check_eq "CSV export: its header" '"seq","time_us","vp","actor","event","outcome","details"' "$(head -1 "$T/a.csv")"
check "CSV export: one row per record" bash -c "[ \$((\$(wc -l <'$T/a.csv') - 1)) -eq \"\$(api auditor GET '/api/v1/devices/$DEV/audit' | json_get 'len(d)')\" ]"

# --- revocation holds from the next request
check "admin revoke the-helpdesk" cells-mdm admin revoke the-helpdesk
api helpdesk GET /api/v1/devices >/dev/null
check_eq "a revoked admin: 401" 401 "$(status)"

# --- the admin audit log
api auditor GET /api/v1/admin-audit >"$T/aa.json"
check "it records the auditor's refused wipe" bash -c "json_get \"any(e['admin']=='the-auditor' and e['action']=='device.wipe' and e['outcome'].startswith('refused 403') for e in d)\" <'$T/aa.json' | grep -q True"
check "it records the admin's wipe" bash -c "json_get \"any(e['admin']=='the-admin' and e['action']=='device.wipe' and e['outcome']=='ok' and e['target']=='$DEV' for e in d)\" <'$T/aa.json' | grep -q True"
check "it never holds an enrollment token" bash -c "! grep -q \"\$(json_get \"d['token']\" <'$T/tok.json')\" '$T/aa.json'"
check_eq "auditor: the chain verifies (API)" True "$(api auditor GET /api/v1/admin-audit/verify | json_get "d['ok']")"
check "the chain verifies (CLI)" cells-mdm admin audit-verify
# an independent verifier written from the chain's description (docs/openapi.yaml)
cat >"$T/chain.py" <<'PY'
import hashlib, json, struct, sys
prev = bytes(32)
for e in json.load(sys.stdin):
    h = hashlib.sha256(b"cells.v1.admin-audit\0" + prev + struct.pack(">Qq", e["seq"], e["at"]))
    for k in ("admin", "role", "action", "target", "detail", "outcome"):
        b = e[k].encode()
        h.update(struct.pack(">I", len(b)) + b)
    if h.hexdigest() != e["hash"]:
        sys.exit("entry %d does not verify" % e["seq"])
    prev = h.digest()
print("ok")
PY
check_eq "the chain verifies with an independent verifier of the documented format" ok "$(api auditor GET /api/v1/admin-audit | python3 "$T/chain.py")"
SEQ=$(json_get "[e['seq'] for e in d if e['action']=='device.wipe' and e['outcome']=='ok'][0]" <"$T/aa.json")
sqlite3 "$CELLS_MDM_STATE_DIR/admin.db" "UPDATE admin_audit SET admin='someone-else' WHERE seq=$SEQ"
api auditor GET /api/v1/admin-audit/verify >"$T/v.json"
check_eq "an edited entry breaks the chain (API)" False "$(json_get "d['ok']" <"$T/v.json")"
check_eq "... at that entry" "$SEQ" "$(json_get "d['bad_seq']" <"$T/v.json")"
check_fails "... and the CLI says so" "does not match its hash" cells-mdm admin audit-verify
sqlite3 "$CELLS_MDM_STATE_DIR/admin.db" "UPDATE admin_audit SET admin='the-admin' WHERE seq=$SEQ"
check "restored, it verifies again" cells-mdm admin audit-verify
LAST=$(sqlite3 "$CELLS_MDM_STATE_DIR/admin.db" "SELECT max(seq) FROM admin_audit")
sqlite3 "$CELLS_MDM_STATE_DIR/admin.db" "DELETE FROM admin_audit WHERE seq=$LAST"
check_fails "the newest entry removed: caught by the head kept outside the database" "entries $LAST..$LAST are missing" cells-mdm admin audit-verify
sqlite3 "$CELLS_MDM_STATE_DIR/admin.db" "DELETE FROM admin_audit WHERE seq=2"
check_fails "a removed entry breaks the chain" "entry 2 is missing" cells-mdm admin audit-verify
finish
