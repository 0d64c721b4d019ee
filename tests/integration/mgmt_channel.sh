#!/usr/bin/env bash
# The management channel end to end on loopback: a real cells-mdm and a real cellsd
# (with its unprivileged cellsd-net): enrollment, a signed policy pushed, applied and
# acknowledged, restarts of both sides in the middle of a push (nothing lost, nothing
# applied twice), redelivery de-duplicated, commands, token rules.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh"
need_root
PORT=$(free_port)
URL="wss://localhost:$PORT"

check "cells-mdm init makes the CA, server cert and DB" cells-mdm init
check "server certificate names localhost and 127.0.0.1" bash -c \
	"openssl x509 -in '$CELLS_MDM_STATE_DIR/server.pem' -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1'"
check "server certificate chains to the CA" openssl verify -CAfile "$CELLS_MDM_STATE_DIR/ca.pem" "$CELLS_MDM_STATE_DIR/server.pem"
cells-mdm ca-cert >"$T/ca.pem"
check "ca-cert prints the CA" cmp "$T/ca.pem" "$CELLS_MDM_STATE_DIR/ca.pem"
TOKEN=$(cells-mdm enroll-token --ttl 600 | tail -1)
check "enroll-token prints the token alone on its last line: SECRET.ROOTDIGEST" grep -qE '^[0-9a-f]{48}\.[0-9a-f]{64}$' <<<"$TOKEN"
start_mdm || exit 1
start_cellsd || exit 1
DEV=$(cellctl device id)
NETPID=$(mgmt_field net_pid)
# the sandbox of cellsd-net, seen from outside (/proc), once it has applied it
wait_for 10 grep -q 'Seccomp:.*2' /proc/$NETPID/status
check "cellsd-net runs as its own unprivileged uid (not root, not nobody)" bash -c \
	"awk '/^Uid:/ {exit !(\$2 != 0 && \$2 != 65534 && \$2 == \$3 && \$3 == \$4 && \$4 == \$5)}' /proc/$NETPID/status"
check "cellsd-net has no_new_privs and a seccomp filter" bash -c \
	"grep -q 'NoNewPrivs:.*1' /proc/$NETPID/status && grep -q 'Seccomp:.*2' /proc/$NETPID/status"
check "cellsd-net has no capabilities at all (bounding set empty)" bash -c \
	"grep -qx 'CapBnd:[[:space:]]*0000000000000000' /proc/$NETPID/status && grep -qx 'CapInh:[[:space:]]*0000000000000000' /proc/$NETPID/status && grep -qx 'CapAmb:[[:space:]]*0000000000000000' /proc/$NETPID/status && grep -qx 'CapEff:[[:space:]]*0000000000000000' /proc/$NETPID/status"
check "cellsd-net is not dumpable (its /proc files belong to root)" bash -c \
	"[ \$(stat -c %u /proc/$NETPID/environ) = 0 ]"
check "cellsd-net has an empty environment" bash -c "[ \$(wc -c </proc/$NETPID/environ) = 0 ]"
check "cellsd-net holds only stdio, the IPC socket and what it opened itself" bash -c \
	"[ -z \"\$(ls /proc/$NETPID/fd | grep -vxE '[0-6]')\" ] && readlink /proc/$NETPID/fd/3 | grep -q '^socket:' && ! ls -l /proc/$NETPID/fd | grep -qE 'cellsd.log|state|audit|\\.db'"
check "cellsd-net's root is not the host's (empty tmpfs: only etc)" bash -c \
	"[ \"\$(ls -A /proc/$NETPID/root)\" = etc ] && ! [ -e /proc/$NETPID/root/usr ]"
check "cellsd-net is in its own mount/ipc/uts (and user) namespaces" bash -c \
	"[ \$(readlink /proc/$NETPID/ns/ipc) != \$(readlink /proc/self/ns/ipc) ] && [ \$(readlink /proc/$NETPID/ns/mnt) != \$(readlink /proc/self/ns/mnt) ] && [ \$(readlink /proc/$NETPID/ns/user) != \$(readlink /proc/self/ns/user) ]"

# enrollment
check_fails "an unknown token is refused" "unknown or already used" cellctl enroll "$URL" "00$TOKEN" --ca "$T/ca.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
	-out "$T/other.pem" -subj /CN=other -days 1 2>/dev/null
check_fails "a server not signed by the given CA is refused" "enrollment failed" cellctl enroll "$URL" "$TOKEN" --ca "$T/other.pem"
check "enroll with the token and the pinned CA" cellctl enroll "$URL" "$TOKEN" --ca "$T/ca.pem"
check_fails "the token is single-use" "unknown or already used" cellctl enroll "$URL" "$TOKEN" --ca "$T/ca.pem"
SHORT=$(cells-mdm enroll-token --ttl 1 | tail -1); sleep 2
check_fails "an expired token is refused" "expired" cellctl enroll "$URL" "$SHORT" --ca "$T/ca.pem"
check "the agent connects with mutual TLS" wait_for 15 connected
check "the device is listed online" wait_for 10 bash -c "cells-mdm --json devices | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[0][\"device_id\"]==\"$DEV\" and d[0][\"online\"] else 1)'"

# a signed policy, pushed, applied and acknowledged
cells-mdm policy example --device "$DEV" --version 3 >"$T/p3.json"
ID3=$(cells-mdm --json policy push "$DEV" "$T/p3.json" | json_get "d[0]['id']")
check "policy push queues an entry" grep -q '^q-' <<<"$ID3"
check "the policy is acknowledged" wait_for 15 entry_is "$ID3" acknowledged
check_eq "the agent runs policy version 3" 3 "$(mgmt_field policy_version)"
check "devices shows policy version 3" wait_for 10 bash -c "cells-mdm --json devices | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[0][\"policy_version\"]==3 else 1)'"
check "pushing the same version again is de-duplicated" bash -c "cells-mdm --json policy push $DEV '$T/p3.json' | grep -q '\"duplicate\":false'"
check_eq "the policy was installed once" 1 "$(audit_count policy.accepted)"
check "the agent's outbox drains" wait_for 10 bash -c "[ \$(cellctl --json mgmt status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"outbox\"])') = 0 ]"

# restart the server, then the agent, in the middle of a push
cells-mdm policy example --device "$DEV" --version 4 >"$T/p4.json"
ID4=$(cells-mdm --json policy push "$DEV" "$T/p4.json" | json_get "d[0]['id']")
kill -9 "$MDM_PID"; wait "$MDM_PID" 2>/dev/null
start_mdm
stop_cellsd
start_cellsd
check "after both restarts the push is acknowledged" wait_for 20 entry_is "$ID4" acknowledged
check_eq "policy 4 was installed exactly once" 1 "$(audit_count policy.accepted "details like '%\"version\":4%'")"
check_eq "the agent runs policy version 4" 4 "$(mgmt_field policy_version)"

# the server loses its record of the acknowledgement: it sends the entry again, the
# agent answers it again and does not apply it again
stop_mdm
mdm_sql "update queue set state=0 where id='$ID4'"
start_mdm
check "a redelivered policy is acknowledged again" wait_for 20 entry_is "$ID4" acknowledged
check_eq "...and not installed again" 1 "$(audit_count policy.accepted "details like '%\"version\":4%'")"
check "the agent logged the replay" grep -q "is a replay" "$T/cellsd.log"

# an older policy is refused (rollback) and reported as failed
cells-mdm policy example --device "$DEV" --version 2 >"$T/p2.json"
ID2=$(cells-mdm --json policy push "$DEV" "$T/p2.json" | json_get "d[0]['id']")
check "a rollback is refused and reported failed" wait_for 15 entry_is "$ID2" failed
check_eq "the agent still runs policy version 4" 4 "$(mgmt_field policy_version)"

# commands: signed, priority, cancel, idempotent
stop_mdm
WID=$(cells-mdm --json wipe "$DEV" work | json_get "d['id']")
VID=$(cells-mdm --json voip assign "$DEV" work +15550100 1 | json_get "d['id']")
VID2=$(cells-mdm --json voip assign "$DEV" work +15550101 2 | json_get "d['id']")
check_eq "a newer voip assignment replaces the queued one" cancelled "$(entry_state "$VID")"
check "a queued command can be cancelled" cells-mdm command cancel "$VID2"
check_fails "a cancelled command cannot be cancelled again" "already cancelled" cells-mdm command cancel "$VID2"
check "the wipe is listed with priority 100" bash -c "cells-mdm command list | grep '$WID' | grep -q ' 100 '"
start_mdm
check "the wipe command gets an answer from the agent" wait_for 20 bash -c "entry_is $WID failed || entry_is $WID acknowledged"
check "the agent verified and started the command once" bash -c "[ \$(sqlite3 '$CELLS_STATE/audit.db' \"select count(*) from audit where event='mgmt.command.started'\") = 1 ]"
check_eq "the agent recorded the command id" 1 "$(mgmt_field commands_done)"

# agent keeps running, shuts down cleanly
check "the agent is healthy" cellctl ping
check "cellsd-net restarts are audited when it dies" bash -c "kill -9 \$(cellctl --json mgmt status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"net_pid\"])')"
check "the channel comes back after cellsd-net died" wait_for 20 connected
check_eq "the restart is audited" 1 "$(audit_count mgmt.net.restarted)"
check "clean shutdown" stop_cellsd
finish
