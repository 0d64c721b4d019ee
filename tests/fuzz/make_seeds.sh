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
# issue 13 item 4: every position that carries a Signed, given another kind (refused at
# decode, before anything reads the payload), and payloads one byte over their kind's limit
SG='signatures { key_id: "01234567890123456789012345678901" signature: "0123456789012345678901234567890123456789012345678901234567890123" }'
wk() { # wk NAME BODY-TEXT
	enc cells.v1.Envelope cells.proto $C/wrongkind_$1 <<<"version: 1 message_id: \"k-$1\" $2"
}
wk policy "policy { kind: SIGNED_COMMAND payload: \"\\x0a\\x02id\" $SG }"
wk command "command { kind: SIGNED_POLICY payload: \"\\x08\\x01\" $SG }"
wk command_unknown "command { kind: 99 payload: \"\\x08\\x01\" $SG }"
wk receipt "result { command_id: \"c1\" status: RESULT_DONE receipt { kind: SIGNED_COMMAND payload: \"\\x0a\\x01x\" $SG } }"
wk checkpoint "audit_batch { device_id: \"d\" checkpoint { kind: SIGNED_WIPE_RECEIPT payload: \"\\x0a\\x01d\" $SG } }"
wk audit_ack "ack { message_ids: \"m6\" audit_ack { kind: SIGNED_AUDIT_CHECKPOINT payload: \"\\x10\\x01\" $SG } }"
wk binding "enroll_request { token: \"tok\" identity_binding { kind: SIGNED_POLICY payload: \"\\x08\\x01\" $SG } }"
wk enroll_delegation "enroll_response { device_id: \"d\" delegations { kind: SIGNED_ROOT_ROTATION payload: \"\\x08\\x02\" $SG } }"
wk trust_rotation "trust_update { root_rotations { kind: SIGNED_KEY_DELEGATION payload: \"\\x0a\\x00\" $SG } }"
wk trust_delegation "trust_update { delegations { kind: SIGNED_POLICY payload: \"\\x08\\x01\" $SG } }"
# the right kinds, for the fuzzer to mutate from
wk ok_receipt "result { command_id: \"c1\" status: RESULT_DONE receipt { kind: SIGNED_WIPE_RECEIPT payload: \"\\x0a\\x01d\" $SG } }"
wk ok_audit_ack "ack { message_ids: \"m6\" audit_ack { kind: SIGNED_AUDIT_ACK payload: \"\\x10\\x01\" $SG } }"
wk ok_trust "trust_update { root_rotations { kind: SIGNED_ROOT_ROTATION payload: \"\\x08\\x02\" $SG } delegations { kind: SIGNED_KEY_DELEGATION payload: \"\\x0a\\x00\" $SG } }"
big() { head -c "$1" /dev/zero | tr '\0' 'A'; }
wk oversize_command "command { kind: SIGNED_COMMAND payload: \"$(big 4097)\" $SG }"
wk oversize_checkpoint "audit_batch { device_id: \"d\" checkpoint { kind: SIGNED_AUDIT_CHECKPOINT payload: \"$(big 1025)\" $SG } }"
wk oversize_binding "enroll_request { token: \"tok\" identity_binding { kind: SIGNED_ENROLL_BINDING payload: \"$(big 513)\" $SG } }"
# the bundle decoder given a bare Signed of another kind (the use-after-free of item 4)
C=corpus/fuzz_policy_signed
mkdir -p $C
for k in SIGNED_COMMAND SIGNED_WIPE_RECEIPT SIGNED_AUDIT_ACK SIGNED_ENROLL_BINDING 99; do
	enc cells.v1.Signed cells.proto $C/wrongkind_$k <<<"kind: $k payload: \"\\x08\\x01\" $SG"
done
enc cells.v1.Signed cells.proto $C/oversize_policy <<<"kind: SIGNED_POLICY payload: \"$(big 65537)\" $SG"
enc cells.v1.PolicyBundle cells.proto $C/bundle_wrongkinds <<<"policy { kind: SIGNED_COMMAND payload: \"\\x0a\\x02id\" $SG } delegations { kind: SIGNED_POLICY payload: \"\\x08\\x01\" $SG } root_rotations { kind: SIGNED_KEY_DELEGATION payload: \"\\x0a\\x00\" $SG }"
# a payload of another message type where a Policy is expected
C=corpus/fuzz_policy_decode
mkdir -p $C
enc cells.v1.Command cells.proto $C/wrongkind_command <<<'command_id: "c1" device_id: "0123456789abcdef0123456789abcdef" expires_at: 99 wipe { vp: "work" }'
enc cells.v1.WipeReceipt cells.proto $C/wrongkind_receipt <<<'device_id: "0123456789abcdef0123456789abcdef" vp: "work" command_id: "c1" method: "crypto-erase"'
big 65537 >$C/oversize
C=corpus/fuzz_ctl_request
enc cells.ctl.v1.CtlRequest control.proto $C/ping <<<'version: 1 ping {}'
enc cells.ctl.v1.CtlRequest control.proto $C/create <<<'version: 1 vp_create { name: "work" image: "/img" net: "nat" init: "/bin/sh" }'
enc cells.ctl.v1.CtlRequest control.proto $C/exec <<<'version: 1 vp_exec { name: "work" argv: "/bin/true" }'
enc cells.ctl.v1.CtlRequest control.proto $C/policy <<<'version: 1 policy_apply { data: "\x08\x01" }'
enc cells.ctl.v1.CtlRequest control.proto $C/audit <<<'version: 1 audit_query { vp: "work" limit: 10 }'
printf '\x08\x07' >$C/novalue
# control frames as cellsd's reader gets them: 1 byte piece size, then 4-byte big-endian
# length + request, possibly several, cut short, or over the limit (issue 13 item 6)
C=corpus/fuzz_ctl_frame
mkdir -p $C
ping=$(xxd -p corpus/fuzz_ctl_request/ping)
frame() { printf '%08x%s' $((${#1} / 2)) "$1"; }
unhex() { xxd -r -p; }
{ printf '\x00'; frame "$ping" | unhex; } >$C/ping_bytewise
{ printf '\x07'; frame "$ping" | unhex; frame "$ping" | unhex; } >$C/two_pings
{ printf '\x1f'; frame "$(xxd -p corpus/fuzz_ctl_request/create | tr -d '\n')" | unhex; } >$C/create
{ printf '\x03'; printf '\x00\x00\x00\x64\x08\x01'; } >$C/truncated
{ printf '\x03'; printf '\x00\x00'; } >$C/half_header
{ printf '\x00'; printf '\x7f\xff\xff\xff\x08\x01'; } >$C/oversize
{ printf '\x05'; printf '\x00\x00\x00\x00'; frame "$ping" | unhex; } >$C/empty_then_ping
# image download requests: 8 bytes of file size (little endian), "URI\0RANGE"
C=corpus/fuzz_image_request
mkdir -p $C
sz() { printf "$(printf '%016x' "$1" | sed 's/../&\n/g' | tac | tr -d '\n' | sed 's/../\\x&/g')"; }
H=624a52bcf74a86b5fc74a9d49ae4068376ce3d0769d57840289f86772e9c891a
{ sz 209715200; printf '/v1/images/%s\0bytes=1048576-' $H; } >$C/resume
{ sz 209715200; printf '/v1/images/%s\0bytes=0-99' $H; } >$C/first_100
{ sz 209715200; printf '/v1/images/%s\0bytes=-500' $H; } >$C/suffix
{ sz 1000; printf '/v1/images/%s\0bytes=2000-' $H; } >$C/past_end
{ sz 1000; printf '/v1/images/%s\0bytes=0-1,5-9' $H; } >$C/list
{ sz 0; printf '/v1/images/%s\0bytes=-0' $H; } >$C/empty_file
{ sz 1000; printf '/v1/images/%sX\0bytes=18446744073709551615-' $H; } >$C/long_sha_huge
{ sz 1000; printf '/v1/images/../../etc/passwd\0' ; } >$C/traversal
# signed seeds (fixed keys of fuzz_policy_keys.h): policy_forge --fuzz-seeds corpus and
# image_forge --fuzz-seeds corpus/fuzz_image_bundle (build/tests/integration/)
echo "seeds written"
