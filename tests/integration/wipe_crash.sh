#!/usr/bin/env bash
# Crash safety: cellsd SIGKILLs itself after each wipe step (cellsd --test-crash-at, a CELLS_TEST_HOOKS build);
# the restarted agent finishes the wipe, exactly one receipt exists and verifies, the
# canary and the wrapped key are gone, the key is absent; another restart changes nothing.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"

for N in 0 1 2 3 4 5 6 7; do
	wipe_use_instance "n$N"
	start_cellsd --test-crash-at "wipe-step-$N" || exit 1
	wipe_policy || { not_ok "step $N: policy"; continue; }
	W=$(cellctl wipe prepare work)
	CANARY="CANARY-$N-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
	echo "$CANARY" >"$W/canary.txt"
	WRAPPED=$(slot_wrapped work)
	KEK=$(kek_hex)
	cellctl vp wipe work --password-file "$T/pw" >"$T/wipe$N.out" 2>&1
	wait "$CELLSD_PID"; rc=$?
	check_eq "step $N: cellsd was killed at the step" 137 "$rc"
	start_cellsd || exit 1
	cellctl --json wipe status work >"$T/s$N.json"
	check_eq "step $N: wipe finished at restart" done "$(json_get "$T/s$N.json" 'j["ops"][0]["state"]')"
	check_eq "step $N: exactly one op" 1 "$(json_get "$T/s$N.json" 'len(j["ops"])')"
	check_eq "step $N: exactly one receipt" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from wipe_receipts")"
	check "step $N: receipt verifies" verify_receipt "$T/s$N.json"
	check_eq "step $N: kernel key absent" absent "$(json_get "$T/s$N.json" 'j["ops"][0]["kernel_key_status"]')"
	check_not "step $N: wrapped key gone from DB files" db_files_have_hex "$WRAPPED"
	check_not "step $N: wrapped key gone from the key-slot file" file_has_hex "$CELLS_STATE/wipe.slots" "$WRAPPED"
	check_not "step $N: the old KEK is gone" file_has_hex "$CELLS_STATE/wipe.kek" "$KEK"
	sync
	check_not "step $N: canary not in the image" env LC_ALL=C grep -qazF "$CANARY" "$(wipe_image)"
	if [ "$N" -lt 7 ]; then
		check_eq "step $N: resumption audited" 1 "$(audit_count "event='wipe.resumed'")"
	fi
	steps=$(audit_count "event='wipe.step'")
	stop_cellsd
	start_cellsd || exit 1
	check_eq "step $N: a further restart repeats nothing" "$steps" "$(audit_count "event='wipe.step'")"
	check_eq "step $N: still one receipt" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from wipe_receipts")"
	stop_cellsd
done
finish
