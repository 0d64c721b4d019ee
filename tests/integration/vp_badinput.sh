#!/usr/bin/env bash
# Bad input to the VP commands: a clear one-line error, an audit record, and the state
# DB unchanged.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
start_cellsd || exit 1
check "create a good VP" ctl vp create good --image "$IMG"
check "start it" ctl vp start good
db() { sqlite3 "$CELLS_STATE/state.db" "select name,image,net,memory,pids,init,hostname,slot,state from vp order by name"; }
audits() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where outcome='refused'"; }
# bad CASE PATTERN CMD...: fails with one line matching PATTERN, DB unchanged, audited
bad() {
	local d=$1 pat=$2; shift 2
	local before after a0 a1
	before=$(db); a0=$(audits)
	check_fails "$d" "$pat" "$@"
	check_eq "$d: one line of error" 1 "$(wc -l <"$T/last.out")"
	after=$(db); a1=$(audits)
	check_eq "$d: state DB unchanged" "$before" "$after"
	check "$d: audited as refused" test "$a1" -gt "$a0"
}
long=$(printf 'a%.0s' $(seq 33))
bad "name with /" "may hold only" ctl vp create a/b --image "$IMG"
bad "name with .." "may hold only|must start" ctl vp create .. --image "$IMG"
bad "name ../x" "may hold only|must start" ctl vp create ../x --image "$IMG"
bad "name over 32 chars" "over 32 characters" ctl vp create "$long" --image "$IMG"
bad "missing image" "No such file" ctl vp create nope --image "$T/no-such-image"
bad "image is a file" "not a directory" ctl vp create nope --image /etc/hostname
bad "bad net mode" "net must be" ctl vp create nope --image "$IMG" --net bridge
bad "duplicate name" "already exists" ctl vp create good --image "$IMG"
bad "start a running VP" "already running" ctl vp start good
bad "destroy an unknown VP" "no VP named 'ghost'" ctl vp destroy ghost
bad "stop an unknown VP" "no VP named 'ghost'" ctl vp stop ghost
bad "exec in an unknown VP" "no VP named" cellctl vp exec ghost -- true
check_fails "status with a bad name (read-only: not audited)" "must start" ctl vp status ../etc
check "the good VP still runs" bash -c "cellctl vp status good | grep -q 'state: running'"
check "clean shutdown" stop_cellsd
finish
