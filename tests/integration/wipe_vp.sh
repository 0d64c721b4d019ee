#!/usr/bin/env bash
# Wipe with real VPs (vpm): the running work VP is stopped and (no --recreate) removed;
# the personal VP keeps running with the same init process and loses nothing.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"

wipe_use_instance v
start_cellsd || exit 1
check "signed policy applied, work password set" wipe_policy
check "create work VP" cellctl vp create work --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "create personal VP" cellctl vp create personal --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "start work" cellctl vp start work --password-file "$T/pw"
check "start personal" cellctl vp start personal
check "personal writes data" cellctl vp exec personal -- sh -c 'echo keep-me >/keep.txt'
CANARY=c4na7y-w0rk-$$-d474
check "work writes data" cellctl vp exec work --password-file "$T/pw" -- sh -c "echo $CANARY >/report.txt"
sync
check_eq "work's overlay upper is in its encrypted directory" "$CANARY" \
	"$(cat "$CELLS_RUN_DIR/wipe/mnt/vp/work/upper/report.txt" 2>&1)"
check_not "the raw storage image never holds work's data in clear" \
	file_has_hex "$(wipe_image)" "$(printf %s "$CANARY" | od -An -tx1 | tr -d ' \n')"
check "stop work" cellctl vp stop work
check_not "a stopped work VP's files are ciphertext (its key left the kernel): no plaintext name" \
	test -e "$CELLS_RUN_DIR/wipe/mnt/vp/work/upper/report.txt"
check "start work again" cellctl vp start work --password-file "$T/pw"
check_eq "started again, its data reads back" "$CANARY" \
	"$(cat "$CELLS_RUN_DIR/wipe/mnt/vp/work/upper/report.txt" 2>&1)"
check "personal's data is not in the encrypted area" test ! -e "$CELLS_RUN_DIR/wipe/mnt/vp/personal"
PPID0=$(vp_field personal pid)
check "personal init has a pid" bash -c "[ '$PPID0' -gt 0 ]"
check "work VP runs" bash -c "[ \"\$(cellctl --json vp status work | grep -o '\"state\":\"running\"')\" ]"
sleep 1

check "wipe the work VP" cellctl vp wipe work --password-file "$T/pw"
check_not "the work VP is gone (left absent)" cellctl vp status work
check_eq "personal keeps running" running "$(vp_field personal state)"
check_eq "personal init is the same process (uptime unaffected)" "$PPID0" "$(vp_field personal pid)"
check_eq "personal data intact" keep-me "$(cellctl vp exec personal -- cat /keep.txt)"
cellctl --json wipe status work >"$T/s.json"
check_eq "wipe done" done "$(json_get "$T/s.json" 'j["ops"][0]["state"]')"
check "receipt verifies" verify_receipt "$T/s.json"
# destroying an encrypted VP is a crypto-erase too: a new VP of that name starts empty
check "work again" cellctl vp create work --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "start the new work" cellctl vp start work --password-file "$T/pw"
check "the new work writes data" cellctl vp exec work --password-file "$T/pw" -- sh -c 'echo old-data >/old.txt'
check_not "destroy without the password is refused" cellctl vp destroy work
check "destroy the running work VP" cellctl vp destroy work --password-file "$T/pw"
check_not "it is gone" cellctl vp status work
check_eq "the destroy ran as a wipe (key absent)" absent \
	"$(cellctl --json wipe status work | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["ops"][-1]["kernel_key_status"])' 2>&1)"
check "a third work VP" cellctl vp create work --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "starts" cellctl vp start work --password-file "$T/pw"
check_not "it does not see the destroyed VP's data" cellctl vp exec work --password-file "$T/pw" -- cat /old.txt
check "destroy it" cellctl vp destroy work --password-file "$T/pw"
check "stop personal" cellctl vp stop personal
check "clean shutdown" stop_cellsd
finish
