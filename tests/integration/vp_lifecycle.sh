#!/usr/bin/env bash
# VP lifecycle: 100 create/start/stop/destroy cycles leave nothing behind; exec passes
# stdio and the exit status through; vp run; an init that dies marks the VP stopped;
# cellsd killed and restarted finds running VPs again or cleans them up.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
start_cellsd || exit 1
ID=$(vp_instance)
N=${VP_CYCLES:-100}

# exec and run pass stdio and exit status through
ctl vp create a --image "$IMG" >/dev/null && ctl vp start a >/dev/null
check_eq "exec: stdin to stdout" "ping-pong" "$(echo ping-pong | cellctl vp exec a -- cat)"
cellctl vp exec a -- sh -c 'echo to-stderr >&2; exit 7' 2>"$T/err.out"
check_eq "exec: exit status passes through" 7 $?
check_eq "exec: stderr passes through" "to-stderr" "$(cat "$T/err.out")"
cellctl vp exec a -- sh -c 'kill -9 $$'
check_eq "exec: killed command gives 128+9" 137 $?
cellctl vp exec a -- no-such-command 2>/dev/null
check_eq "exec: unknown command gives 127" 127 $?
cellctl vp run r1 --image "$IMG" -- sh -c 'echo run-out; exit 5' >"$T/run.out"
check_eq "run: exit status" 5 $?
check_eq "run: stdout" "run-out" "$(cat "$T/run.out")"
check_fails "run: transient VP is gone afterwards" "no VP named" cellctl vp status r1

# an init that dies marks the VP stopped and releases everything
ctl vp create dies --image "$IMG" --init /bin/sh -c 'sleep 0.3' >/dev/null
check "start a VP whose init exits" ctl vp start dies
for _ in $(seq 50); do [ "$(vp_field dies state)" = stopped ] && break; sleep 0.1; done
check_eq "VP is marked stopped when its init dies" stopped "$(vp_field dies state)"
check "and its cgroups are gone" bash -c "! find /sys/fs/cgroup -maxdepth 6 -type d -name 'cells-$ID-dies' | grep -q ."
ctl vp destroy dies >/dev/null; ctl vp stop a >/dev/null; ctl vp destroy a >/dev/null

# N cycles; every 10th with a veth (nat)
start=$(date +%s.%N)
bad=0
for i in $(seq 1 "$N"); do
	net=none
	[ $((i % 10)) = 0 ] && net=nat
	if ! { ctl vp create c --image "$IMG" --net $net && ctl vp start c && ctl vp stop c &&
		ctl vp destroy c; } >"$T/cycle.out" 2>&1; then
		bad=$((bad + 1))
		sed 's/^/    /' "$T/cycle.out" | head -5
		ctl vp destroy c >/dev/null 2>&1
	fi
done
secs=$(echo "$(date +%s.%N) - $start" | bc)
echo "# $N create/start/stop/destroy cycles took ${secs}s"
check_eq "$N cycles all succeed" 0 "$bad"
check_eq "after $N cycles nothing is left (cgroups, veths, mounts, processes, nft)" "" "$(vp_leftovers "$ID")"
check_eq "state DB has no VP left" 0 "$(sqlite3 "$CELLS_STATE/state.db" 'select count(*) from vp')"

# cellsd killed: running VPs are found again
ctl vp create keep --image "$IMG" --net nat >/dev/null && ctl vp start keep >/dev/null
ipid=$(vp_field keep pid)
kill -9 "$CELLSD_PID"; wait "$CELLSD_PID" 2>/dev/null
check "VP survives cellsd being killed" kill -0 "$ipid"
start_cellsd || exit 1
check_eq "restarted cellsd finds the VP running" running "$(vp_field keep state)"
check_eq "with the same init" "$ipid" "$(vp_field keep pid)"
check_eq "exec works in the found VP" ok "$(cellctl vp exec keep -- echo ok)"
# cellsd killed and the VP's init gone meanwhile: cleaned up on restart
kill -9 "$CELLSD_PID"; wait "$CELLSD_PID" 2>/dev/null
kill -9 "$ipid"
for _ in $(seq 50); do kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
start_cellsd || exit 1
check_eq "restarted cellsd marks the dead VP stopped" stopped "$(vp_field keep state)"
check_eq "and cleans up what it held" "" "$(vp_leftovers "$ID")"
check "VP starts again after that" ctl vp start keep
check "clean shutdown stops running VPs" stop_cellsd
check_eq "nothing left after shutdown" "" "$(vp_leftovers "$ID")"
finish
