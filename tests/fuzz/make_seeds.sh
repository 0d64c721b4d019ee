#!/usr/bin/env bash
# make_seeds.sh - regenerate the checked-in seed corpora from text-format messages
# (needs protoc from Debian's protobuf-compiler; only developers run it).
set -euo pipefail
cd "$(dirname "$0")"
P=../../proto
enc() { # enc TYPE PROTO OUT <<< text
	protoc --encode="$1" -I"$P" "$P/$2" >"$3"
}
C=corpus/fuzz_envelope
mkdir -p $C corpus/fuzz_ctl_request
enc cells.v1.Envelope cells.proto $C/hello <<<'version: 1 message_id: "m1" hello { device_id: "abc" policy_version: 3 vps { name: "work" running: true foreground: true } }'
enc cells.v1.Envelope cells.proto $C/policy <<<'version: 1 message_id: "m2" policy { kind: SIGNED_POLICY payload: "\x08\x01" signatures { key_id: "01234567890123456789012345678901" signature: "0123456789012345678901234567890123456789012345678901234567890123" } }'
enc cells.v1.Envelope cells.proto $C/command <<<'version: 1 message_id: "m3" correlation_id: "m2" command { kind: SIGNED_COMMAND payload: "\x0a\x02id" signatures { key_id: "01234567890123456789012345678901" signature: "0123456789012345678901234567890123456789012345678901234567890123" } }'
enc cells.v1.Envelope cells.proto $C/enroll <<<'version: 1 message_id: "m4" enroll_request { token: "tok" csr_der: "\x30\x00" agent_version: "0.1" }'
enc cells.v1.Envelope cells.proto $C/result <<<'version: 1 message_id: "m5" result { command_id: "c1" status: RESULT_DONE reason: "ok" }'
enc cells.v1.Envelope cells.proto $C/audit <<<'version: 1 message_id: "m6" audit_batch { device_id: "d" records { seq: 1 event: "agent.started" outcome: "ok" } }'
enc cells.v1.Envelope cells.proto $C/badversion <<<'version: 2 message_id: "m7" ack { message_ids: "m1" }'
enc cells.v1.Signed cells.proto $C/signed <<<'kind: SIGNED_POLICY payload: "\x08\x05" signatures { key_id: "01234567890123456789012345678901" signature: "0123456789012345678901234567890123456789012345678901234567890123" }'
printf '\xff\xff\xff' >$C/garbage
C=corpus/fuzz_ctl_request
enc cells.ctl.v1.CtlRequest control.proto $C/ping <<<'version: 1 ping {}'
enc cells.ctl.v1.CtlRequest control.proto $C/create <<<'version: 1 vp_create { name: "work" image: "/img" net: "nat" init: "/bin/sh" }'
enc cells.ctl.v1.CtlRequest control.proto $C/exec <<<'version: 1 vp_exec { name: "work" argv: "/bin/true" }'
enc cells.ctl.v1.CtlRequest control.proto $C/policy <<<'version: 1 policy_apply { data: "\x08\x01" }'
enc cells.ctl.v1.CtlRequest control.proto $C/audit <<<'version: 1 audit_query { vp: "work" limit: 10 }'
printf '\x08\x07' >$C/novalue
echo "seeds written"
