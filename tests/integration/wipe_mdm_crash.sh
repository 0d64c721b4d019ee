#!/usr/bin/env bash
# A remote wipe survives the agent dying at any step: `cells-mdm wipe DEV work` reaches
# cellsd, which SIGKILLs itself after wipe step N (cellsd --test-crash-at, a CELLS_TEST_HOOKS build); the restarted
# agent finishes the wipe, the server sends the unanswered command again and gets the
# stored receipt: exactly one receipt per command reaches the server, verified with the
# device key, and the wipe ran once. The work VP's data (written inside the running VP)
# is gone each time; personal's stays.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
. "$CELLS_SRC/tests/integration/wipe_lib.sh"
. "$CELLS_SRC/tests/integration/mgmt_lib.sh" # its json_get (stdin) and audit_count win
wipe_use_instance c
setup_enrolled || { cat "$T/cellsd.log" "$T/mdm.log"; exit 1; }
cells-mdm policy example --device "$DEV" >"$T/p1.json"
PID1=$(cells-mdm --json policy push "$DEV" "$T/p1.json" | json_get "d[0]['id']")
check "the policy (and the command key's delegation) is acknowledged" wait_for 20 entry_is "$PID1" acknowledged
check "create work" cellctl vp create work --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "create personal" cellctl vp create personal --image "$IMG" --init /bin/sh -c 'sleep 100000'
check "start personal" cellctl vp start personal
check "personal writes data" cellctl vp exec personal -- sh -c 'echo keep-me >/keep.txt'

for N in 0 2 4 5 7; do
	check "step $N: work runs" bash -c "cellctl vp start work >/dev/null 2>&1; [ \"\$(cellctl --json vp status work | json_get \"d['state']\")\" = running ]"
	check "step $N: work writes data" cellctl vp exec work -- sh -c "echo secret-$N >/secret.txt"
	UP="$CELLS_RUN_DIR/wipe/mnt/vp/work/upper/secret.txt"
	check_eq "step $N: it is in work's encrypted directory" "secret-$N" "$(cat "$UP" 2>&1)"
	stop_cellsd
	start_cellsd --test-crash-at "wipe-step-$N" || exit 1
	wait_for 15 connected
	WID=$(cells-mdm --json wipe "$DEV" work | json_get "d['id']")
	wait "$CELLSD_PID"
	check_eq "step $N: cellsd was killed at the step" 137 "$?"
	start_cellsd || exit 1
	check "step $N: the wipe command is acknowledged after the restart" wait_for 30 entry_is "$WID" acknowledged
	CID=$(sqlite3 "$CELLS_STATE/state.db" "select command_id from wipe_ops order by id desc limit 1")
	check "step $N: the device ran the MDM's command" grep -q '^c-' <<<"$CID"
	cells-mdm --json receipts "$DEV" >"$T/r$N.json"
	check_eq "step $N: exactly one receipt for the command at the server, verified" "1 True" \
		"$(json_get "' '.join(str(x) for x in ([len([r for r in d if r['command_id'] == '$CID'])] + [r['verified'] for r in d if r['command_id'] == '$CID'][:1]))" <"$T/r$N.json")"
	check_eq "step $N: one wipe op for it on the device" 1 \
		"$(sqlite3 "$CELLS_STATE/state.db" "select count(*) from wipe_ops where command_id=(select command_id from wipe_ops order by id desc limit 1)")"
	check_eq "step $N: the kernel key is absent" absent \
		"$(cellctl --json wipe status work | json_get "d['ops'][-1]['kernel_key_status']")"
	check_not "step $N: what work wrote is gone" test -e "$UP"
	cellctl vp start personal >/dev/null 2>&1 # a clean stop stopped it; the crash did not
	check_eq "step $N: personal's data stays" keep-me "$(cellctl vp exec personal -- cat /keep.txt)"
done
check_eq "five wipes, five receipts at the server" 5 "$(cells-mdm --json receipts "$DEV" | json_get "len(d)")"
check "clean shutdown" stop_cellsd
[ "$FAIL" -eq 0 ] || tail -30 "$T/cellsd.log"
finish
