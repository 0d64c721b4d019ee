#!/usr/bin/env bash
# Offline limits (issue 18.7): a policy gives work lock_after_offline_s and
# wipe_after_offline_s of a few seconds and the device never reaches an MDM. Seen from
# outside the agent: work is locked (its cgroup frozen, a counter inside it stops),
# later its data is gone from the disk and the VP with it, and a signed receipt for the
# MDM is queued. The strict policy JSON checks the new fields' ranges.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v busybox >/dev/null || skip "busybox-static not installed"
IMG="$T/img"
bash "$CELLS_SRC/scripts/mkimage.sh" "$IMG" >/dev/null || exit 1
export CELLS_MDM_STATE_DIR="$T/mdm"
jf() { cellctl --json vp status "$1" | python3 -c "import json,sys; v=json.load(sys.stdin).get('$2'); print('' if v is None else v)"; }
counter() { cat "/proc/$WPID/root/dev/shm/count" 2>/dev/null; }
stalled() { local a b; a=$(counter); sleep 1; b=$(counter); [ -n "$a" ] && [ "$a" = "$b" ]; }
# policy LOCK WIPE > FILE: the example policy with work's offline limits
policy() {
	cells-mdm policy example --device "$ID" | python3 -c 'import json,sys
p=json.load(sys.stdin); w=p["vps"][0]
w["lock_after_offline_s"]=int(sys.argv[1]); w["wipe_after_offline_s"]=int(sys.argv[2])
w["password"]["required"]=False  # no Argon2id in the timed part
print(json.dumps(p))' "$1" "$2"
}
LOCK_S=15 WIPE_S=40
printf '\n' >"$T/empty"

start_cellsd || exit 1
cells-mdm init >/dev/null || exit 1
ID=$(cellctl device id)
cells-mdm export-root >"$T/root.pub" && cellctl trust pin "$T/root.pub" >/dev/null
policy 10 5 >"$T/bad.json"
check_fails "a wipe limit before the lock limit is refused" "wipe_after_offline_s \\(5\\) is before lock_after_offline_s" cells-mdm policy sign "$T/bad.json" -o "$T/bad.bin"
policy 0 40000000 >"$T/bad2.json"
check_fails "an offline limit over a year is refused" "wipe_after_offline_s: 40000000 is out of range" cells-mdm policy sign "$T/bad2.json" -o "$T/bad2.bin"
policy $LOCK_S $WIPE_S >"$T/p.json"
cells-mdm policy sign "$T/p.json" -o "$T/p.bin" >/dev/null
check "a policy with offline limits of ${LOCK_S}s/${WIPE_S}s is installed" cellctl policy apply "$T/p.bin"
check_eq "the limits are in the policy in force" "$LOCK_S $WIPE_S" "$(cellctl --json policy show | python3 -c 'import json,sys; w=json.load(sys.stdin)["policy"]["vps"][0]; print(w["lock_after_offline_s"], w["wipe_after_offline_s"])')"
T0=$(date +%s)
check "create and start work" bash -c "cellctl vp create work --image '$IMG' >/dev/null && cellctl vp start work >/dev/null"
WPID=$(jf work pid)
cellctl vp exec work -- sh -c 'echo offline-canary-7c1e >/root/canary-7c1e
i=0; while :; do i=$((i+1)); echo $i >/dev/shm/count; usleep 50000; done >/dev/null 2>&1 &' >/dev/null
check "work is running, not locked yet" test "$(jf work lock)" = ""
check "work's data is on the disk" bash -c "find '$CELLS_STATE' '$CELLS_RUN_DIR' -name canary-7c1e | grep -q ."

for _ in $(seq 100); do [ "$(jf work lock)" = locked ] && break; sleep 0.2; done
TL=$(($(date +%s) - T0))
check_eq "work is locked after the offline limit" locked "$(jf work lock)"
check "not before it (${TL}s >= ${LOCK_S}s)" test "$TL" -ge "$LOCK_S"
check_eq "the lock's reason is offline" offline "$(jf work lock_reason)"
FRZ=$(jf work freezer)
case "$FRZ" in
*cgroup.freeze) check "the kernel reports it frozen (cgroup.events)" grep -qx "frozen 1" "$(dirname "$FRZ")/cgroup.events" ;;
*) check_eq "freezer.state is FROZEN" FROZEN "$(cat "$FRZ")" ;;
esac
check "the counter inside it stopped (/proc/PID/root)" stalled
check_eq "the offline lock is audited" 1 "$(sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='offline.lock' and vp='work'")"

for _ in $(seq 150); do cellctl vp list | awk '$1=="work"' | grep -q . || break; sleep 0.2; done
TW=$(($(date +%s) - T0))
check_eq "after the wipe limit work is gone" "" "$(cellctl vp list | awk '$1=="work"')"
check "not before it (${TW}s >= ${WIPE_S}s)" test "$TW" -ge "$WIPE_S"
check_eq "its data is gone from the disk" "" "$(find "$CELLS_STATE" "$CELLS_RUN_DIR" -name canary-7c1e)"
check "the counter's process is gone" bash -c "! kill -0 $WPID 2>/dev/null"
check "a signed receipt for the MDM is queued (wipe status)" bash -c "cellctl --json wipe status | python3 -c 'import json,sys
d=json.load(sys.stdin); r=[x for x in d[\"ops\"] if x.get(\"vp\")==\"work\" and x[\"command_id\"].startswith(\"offline:\") and x.get(\"receipt\") and x.get(\"receipt_signature\")]
sys.exit(0 if r else 1)'"
check_eq "the offline wipe is audited once" 1 "$(sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='offline.wipe' and vp='work' and outcome='ok'")"

# --- lock_on_expiry is a lock too: an expired policy (on_expiry lock-vp) freezes work
# until a valid policy is in force; its password cannot lift that ---
# expiring VERSION EXPIRES_AT > FILE: the example policy (no offline limits)
expiring() {
	cells-mdm policy example --device "$ID" --version "$1" | python3 -c 'import json,sys
p=json.load(sys.stdin); p["expires_at"]=int(sys.argv[1]); p["on_expiry"]="lock-vp"
p["vps"][0]["password"]["required"]=False
print(json.dumps(p))' "$2"
}
expiring 2 $(($(date +%s) + 12)) >"$T/e.json"
cells-mdm policy sign "$T/e.json" -o "$T/e.bin" >/dev/null
check "a policy expiring in 12 s with on_expiry lock-vp (no offline limits) is installed" cellctl policy apply "$T/e.bin"
check "create and start a new work" bash -c "cellctl vp create work --image '$IMG' >/dev/null && cellctl vp start work >/dev/null"
check_eq "a new work does not inherit the old lock" "" "$(jf work lock)"
WPID=$(jf work pid)
cellctl vp exec work -- sh -c 'i=0; while :; do i=$((i+1)); echo $i >/dev/shm/count; usleep 50000; done >/dev/null 2>&1 &' >/dev/null
for _ in $(seq 100); do [ "$(jf work lock)" = locked ] && break; sleep 0.2; done
check_eq "after the expiry work is locked (policy-expired)" "locked policy-expired" "$(jf work lock) $(jf work lock_reason)"
check "the counter inside it stopped (/proc/PID/root)" stalled
check_fails "an unlock cannot lift it while the policy is expired" "stays locked while the policy in force is expired" cellctl vp unlock work --password-file "$T/empty"
check "still frozen" stalled
expiring 3 0 >"$T/f.json"
cells-mdm policy sign "$T/f.json" -o "$T/f.bin" >/dev/null
check "a valid policy is installed" cellctl policy apply "$T/f.bin"
for _ in $(seq 50); do [ "$(jf work lock)" = "" ] && break; sleep 0.2; done
check_eq "the expiry lock is lifted by itself" "" "$(jf work lock)"
counter_adv() { local a b; a=$(counter); sleep 0.6; b=$(counter); [ -n "$a" ] && [ "$a" != "$b" ]; }
check "the counter advances again" counter_adv
check "clean shutdown" stop_cellsd
finish
