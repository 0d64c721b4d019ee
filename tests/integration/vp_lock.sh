#!/usr/bin/env bash
# A lock that is an effect (issue 18.4) and the VP password's scope (18.5), seen from
# outside the agent: a counter inside the locked VP stops (its file, read from the host
# through /proc/PID/root) and the kernel reports the VP's cgroup frozen; exec, start and
# config are refused and audited; a key injected while it is locked never reaches its
# input FIFO; the screen shows the lock screen cellsd draws, then the VP's frame after the
# unlock; a wrong password is refused and counted; a paused VP's network is down (a
# packet sent to it while paused never arrives). Then, a table: each operation the VP's
# password guards, without and with it.
. "$CELLS_SRC/tests/lib.sh"
need_root
command -v busybox >/dev/null || skip "busybox-static not installed"
PNG="python3 $CELLS_SRC/tests/integration/display_png.py"
TOOLS="$CELLS_BUILD/tests/tools"
IMG="$T/img"
bash "$CELLS_SRC/scripts/mkimage.sh" "$IMG" "$TOOLS/cells-draw" "$TOOLS/cells-input-read" >/dev/null || exit 1
export CELLS_MDM_STATE_DIR="$T/mdm"
audit_n() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where event='$1' and outcome='$2' and vp='${3:-work}'"; }
jf() { cellctl --json vp status "$1" | python3 -c "import json,sys; v=json.load(sys.stdin).get('$2'); print('' if v is None else v)"; }
screen() { cellctl screenshot "$T/s.png" >/dev/null && $PNG "$T/s.png" | tail -n +2 | paste -sd, -; }
wait_screen() { for _ in $(seq 50); do [ "$(screen)" = "$1" ] && return 0; sleep 0.1; done; echo "screen: $(screen)"; return 1; }
# the bytes waiting in a VP's input FIFO, seen from the host without reading them
fifo_pending() {
	python3 -c 'import fcntl,os,struct,sys,termios
fd=os.open(sys.argv[1], os.O_RDONLY|os.O_NONBLOCK)
print(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])' "$CELLS_RUN_DIR/vp/$1/devcells/input"
}
# the counter lives in the VP's /dev/shm (tmpfs): a file in its encrypted upper dir may
# no longer be found once the lock has removed the key and the kernel evicted its inode
counter() { cat "/proc/$WPID/root/dev/shm/count" 2>/dev/null; }
advancing() { local a b; a=$(counter); sleep 0.6; b=$(counter); [ -n "$a" ] && [ "$a" != "$b" ]; }
stalled() { local a b; a=$(counter); sleep 1; b=$(counter); [ -n "$a" ] && [ "$a" = "$b" ]; }
# every task of the VP's cgroup is stopped by the freezer (its wchan in /proc)
tasks_frozen() {
	local dir n=0 p w
	dir=$(dirname "$(jf work freezer)")
	for p in $(cat "$dir/cgroup.procs"); do
		w=$(cat "/proc/$p/wchan" 2>/dev/null)
		case "$w" in *freezer* | *refrigerator* | get_signal) n=$((n + 1)) ;; *) echo "pid $p: $w ($(awk '{print $3}' /proc/$p/stat))"; return 1 ;; esac
	done
	[ "$n" -ge 2 ]
}

# 90x60 screen: the lock screen is a checkerboard of 32-pixel tiles
LOCKSCREEN="102a43 2752,f0a000 2648"
start_cellsd --display shm:90x60 || exit 1
cells-mdm init >/dev/null || exit 1
ID=$(cellctl device id)
cells-mdm export-root >"$T/root.pub" && cellctl trust pin "$T/root.pub" >/dev/null
cells-mdm policy example --device "$ID" >"$T/p.json"
cells-mdm policy sign "$T/p.json" -o "$T/p.bin" >/dev/null
cellctl policy apply "$T/p.bin" >/dev/null || exit 1
printf 'correct horse battery\n' >"$T/pw"
printf 'wrong-password\n' >"$T/bad"; printf '\n' >"$T/empty"
for v in work personal; do
	check "create and start $v" bash -c "cellctl vp create $v --image '$IMG' --net nat >/dev/null && cellctl vp start $v >/dev/null"
done

# 18.5: start, exec and destroy are open until the first password is set (root sets up
# a fresh VP); from then on root without the password is refused, in one line, audited
check "exec into work before its password is set" cellctl vp exec work -- true
check "set work's password" cellctl vp password work --new-password-file "$T/pw"
check_fails "exec without it now: refused" "vp exec work: the VP's password: wrong password" cellctl vp exec work -- true
check_eq "the refusal is audited" 1 "$(audit_n vp.exec refused)"
X() { cellctl vp exec work --password-file "$T/pw" -- "$@"; }
WPID=$(jf work pid)
X sh -c 'echo ff0000 >/tmp/colour; cells-draw --file /tmp/colour >/dev/null 2>&1 &
i=0; while :; do i=$((i+1)); echo $i >/dev/shm/count; usleep 50000; done >/dev/null 2>&1 &' >/dev/null
check "work's counter advances" advancing
check "work's frame (red) is on the screen" wait_screen "ff0000 5400"
X sh -c 'echo locked-secret >/secret.txt' >/dev/null
# work is encrypted (cellsd's default): its overlay upper dir in its fscrypt directory
UPPER=$(ls -d "$CELLS_RUN_DIR/wipe/mnt/vp/work/upper" "$CELLS_STATE/wipe/data/vp/work/upper" 2>/dev/null | head -1)
check_eq "work's file is in its encrypted upper dir (control: readable while unlocked)" locked-secret "$(cat "$UPPER/secret.txt" 2>&1)"
KEYID=$(cellctl --json wipe status work | python3 -c 'import json,sys; print([v["key_id"] for v in json.load(sys.stdin)["keys"] if v["vp"] == "work"][0])')
# the kernel's own word on work's key: 1 absent, 2 present, 3 incompletely removed
key_status() {
	python3 - "${UPPER%/vp/work/upper}" "$KEYID" <<'PY'
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
arg = bytearray(struct.pack("<II", 2, 0) + bytes.fromhex(sys.argv[2]).ljust(32, b"\0") + bytes(88))
fcntl.ioctl(fd, (3 << 30) | (len(arg) << 16) | (ord("f") << 8) | 26, arg)
print(struct.unpack_from("<I", arg, 64)[0])
PY
}
check_eq "control: the kernel has work's key while it runs (present)" 2 "$(key_status)"

# --- lock ---
check "cellctl vp lock work" cellctl vp lock work
FRZ=$(jf work freezer)
check "the VP's cgroup has a freezer file" test -f "$FRZ"
case "$FRZ" in
*cgroup.freeze) check_eq "cgroup.freeze is 1" 1 "$(cat "$FRZ")"
	check "the kernel reports it frozen (cgroup.events)" grep -qx "frozen 1" "$(dirname "$FRZ")/cgroup.events" ;;
*) check_eq "freezer.state is FROZEN" FROZEN "$(cat "$FRZ")" ;;
esac
check "every task of the VP is stopped by the freezer (/proc/PID/wchan)" tasks_frozen
check "the counter inside the VP stopped (seen through /proc/PID/root)" stalled
check_eq "vp status says locked" locked "$(jf work lock)"
check_eq "its fscrypt key left the kernel (FS_IOC_GET_ENCRYPTION_KEY_STATUS: incompletely removed, its secret wiped; the frozen VP's open files stay)" 3 "$(key_status)"
check "vp list shows it" bash -c "cellctl vp list | grep -E '^work +\\* +running +locked'"
check_eq "the screen shows the lock screen, not work's frame" "$LOCKSCREEN" "$(screen)"
check_fails "exec refused while locked" "the VP is locked" X true
check_fails "start refused while locked" "the VP is locked" cellctl vp start work --password-file "$T/pw"
check_fails "config refused while locked" "the VP is locked" cellctl vp config work net=none --password-file "$T/pw"
check "the refusals are audited" bash -c "[ $(audit_n vp.exec refused) -ge 2 ] && [ $(audit_n vp.start refused) -ge 1 ] && [ $(audit_n vp.config refused) -ge 1 ]"
cellctl input key 30 >/dev/null; cellctl input key 30 --up >/dev/null
check_eq "a key injected while locked never reaches work's input FIFO" 0 "$(fifo_pending work)"
check_fails "unlock with a wrong password: refused" "wrong password" cellctl vp unlock work --password-file "$T/bad"
check_eq "the failure is counted (state DB)" 1 "$(sqlite3 "$CELLS_STATE/state.db" "select failures from vp_password where vp='work'")"
check "still frozen after the wrong password" stalled
check "unlock with its password" cellctl vp unlock work --password-file "$T/pw"
check_eq "the failure count is reset" 0 "$(sqlite3 "$CELLS_STATE/state.db" "select failures from vp_password where vp='work'")"
check "the counter advances again" advancing
check_eq "the key is back after the unlock (present)" 2 "$(key_status)"
check_eq "the file reads again after the unlock" locked-secret "$(cat "$UPPER/secret.txt" 2>&1)"
check "the screen shows work's frame again" wait_screen "ff0000 5400"
check "exec works again" X true
X cells-input-read --count 2 --timeout 3 >"$T/in" 2>&1 &
r=$!
sleep 0.5
cellctl input key 31 >/dev/null
wait $r
check_eq "after the unlock a key reaches it (and only the new one)" "1 31 1|0 0 0" "$(paste -sd'|' "$T/in")"
check_eq "lock and unlock are audited" "1 1" "$(audit_n vp.lock ok) $(audit_n vp.unlock ok)"

# --- pause: frozen, no network, no foreground ---
ADDR=$(jf work address)
# tcp PORT TEXT: connect from the host to work's address and send TEXT (2 s timeout)
tcp() { python3 -c 'import socket,sys
try:
    s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); s.sendall(sys.argv[3].encode()+b"\n"); s.close()
except OSError as e: print(e)' "$ADDR" "$1" "$2"; }
X sh -c 'nc -l -p 7776 >/tmp/tcp1 2>/dev/null & nc -l -p 7777 >/tmp/tcp2 2>/dev/null &' >/dev/null
sleep 0.3
tcp 7776 first
sleep 0.3
check_eq "before the pause a packet reaches work" first "$(cat /proc/$WPID/root/tmp/tcp1)"
check "cellctl vp pause work" cellctl vp pause work
check_eq "vp status says paused" paused "$(jf work lock)"
check "paused: frozen" stalled
check "paused: the host end of its veth is down" bash -c "ip -o link show $(jf work veth) | grep -q 'state DOWN'"
# with the link up the kernel would queue this for the frozen listener (and hand it
# over at the resume); the pause must drop it
tcp 7777 during-pause >/dev/null
check_fails "paused: it cannot be brought to the front" "paused" cellctl switch work
check "switch to personal" cellctl switch personal
check_fails "resume without the password: refused" "password" cellctl vp resume work --password-file "$T/empty"
check "resume with its password" cellctl vp resume work --password-file "$T/pw"
check "resumed: the counter advances" advancing
sleep 0.5
tcp 7777 after-resume
sleep 0.5
check_eq "the packet sent while paused never arrived, the one after the resume did" "after-resume" "$(cat /proc/$WPID/root/tmp/tcp2)"
check "resumed: it can be in front again" cellctl switch work

# --- the lock survives a restart of cellsd (killed: the VP keeps running, frozen) ---
check "lock work again" cellctl vp lock work
kill -9 "$CELLSD_PID"; wait "$CELLSD_PID" 2>/dev/null
start_cellsd --display shm:90x60 || exit 1
check_eq "after a cellsd restart work is still locked" locked "$(jf work lock)"
check "and still frozen" stalled
check_fails "and exec is still refused" "the VP is locked" X true
check "unlock it" cellctl vp unlock work --password-file "$T/pw"
check "and it runs again" advancing

# --- 18.5: what the VP's password guards, each without and with it ---
printf 'another password\n' >"$T/pw2"
scope() { # NAME WITHOUT... ::: WITH...
	local name=$1; shift
	local without=() with=()
	while [ "$1" != ":::" ]; do without+=("$1"); shift; done
	shift
	with=("$@")
	check_fails "$name without the password: refused" "password" "${without[@]}"
	check "$name with the password" "${with[@]}"
}
scope "exec" cellctl vp exec work -- true ::: cellctl vp exec work --password-file "$T/pw" -- true
scope "config" cellctl vp config work device.camera=shared ::: cellctl vp config work device.camera=shared --password-file "$T/pw"
cellctl vp lock work >/dev/null
scope "unlock" cellctl vp unlock work --password-file "$T/empty" ::: cellctl vp unlock work --password-file "$T/pw"
cellctl vp pause work >/dev/null
scope "resume" cellctl vp resume work --password-file "$T/empty" ::: cellctl vp resume work --password-file "$T/pw"
scope "password change" cellctl vp password work --new-password-file "$T/pw2" --password-file "$T/empty" ::: cellctl vp password work --new-password-file "$T/pw2" --password-file "$T/pw"
cp "$T/pw2" "$T/pw"
cellctl vp stop work >/dev/null
scope "start" cellctl vp start work ::: cellctl vp start work --password-file "$T/pw"
scope "wipe" cellctl vp wipe work --recreate --password-file "$T/bad" ::: cellctl vp wipe work --recreate --password-file "$T/pw"
scope "destroy" cellctl vp destroy work ::: cellctl vp destroy work --password-file "$T/pw"
check "the refusals are audited (one line each, with the reason)" bash -c "[ $(sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit where vp='work' and outcome='refused' and details like '%password%'") -ge 6 ]"
check_eq "work is gone" "" "$(cellctl vp list | awk '$1=="work"')"
check "personal needs no password (its policy does not require one)" cellctl vp exec personal -- true
check "clean shutdown" stop_cellsd
finish
