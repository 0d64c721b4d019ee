#!/usr/bin/env bash
# vp_userns.sh - a VP is an unprivileged container (issue 14): its root is a subordinate
# id range of its own on the host, seen from the host (/proc/PID/uid_map, owners on
# disk), never from the agent's own words. Two VPs get disjoint ranges; a VP keeps its
# range across restarts of itself and of cellsd, and a range is reused only after its
# VP is destroyed; files the VP writes are owned on disk by BASE+uid (plain and
# encrypted storage); the shared base image appears root-owned inside and is never
# modified; VP root cannot write a root-owned host file (nor enter a root-owned 0700
# directory) that the test binds into its mount namespace, which real root can; `vp
# exec` runs in the VP's user namespace; the standard devices and /dev/cells work;
# `cellsd --check-kernel` reports user namespaces and idmapped mounts.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
command -v python3 >/dev/null || skip "python3 not installed"
export CELLS_WIPE_STORAGE=image CELLS_WIPE_IMAGE_MB=256
start_cellsd || exit 1

ipid() { vp_field "$1" pid; }
# the host id VP root maps to, from the host's /proc (uid_map and gid_map agree)
host_base() {
	local p u g
	p=$(ipid "$1")
	u=$(awk '$1 == 0 {print $2 " " $3}' "/proc/$p/uid_map")
	g=$(awk '$1 == 0 {print $2 " " $3}' "/proc/$p/gid_map")
	[ "$u" = "$g" ] || { echo "uid_map '$u' != gid_map '$g'"; return 1; }
	echo "${u% *}"
}
map_lines() { wc -l <"/proc/$(ipid "$1")/uid_map"; }
disjoint() { [ $(($1 + 65536)) -le "$2" ] || [ $(($2 + 65536)) -le "$1" ]; }
# where a file the VP wrote lies on the host: its overlay upper dir, wherever the
# storage is (plain directory or the encrypted area)
on_disk() { find "$CELLS_STATE" "$CELLS_RUN_DIR" -name "$1" -path "*/upper/*" 2>/dev/null | head -1; }

# --check-kernel: real probes
cellsd --check-kernel >"$T/kc.out" 2>&1
check "check-kernel reports user namespaces" grep -qE '^userns +ok' "$T/kc.out"
check "check-kernel reports idmapped mounts" grep -qE '^idmap +ok' "$T/kc.out"

sha_img() { (cd "$IMG" && find . -xdev -type f -exec sha256sum {} + | sort; find . -xdev -printf '%U:%G %m %p\n' | sort) | sha256sum; }
IMG_SUM=$(sha_img)

for v in a b work; do ctl vp create "$v" --image "$IMG" >/dev/null && ctl vp start "$v" >/dev/null; done
A=$(host_base a)
B=$(host_base b)
W=$(host_base work)
check_eq "VP a's uid_map is one range of 65536 ids" "1 65536" \
	"$(map_lines a) $(awk '$1 == 0 {print $3}' "/proc/$(ipid a)/uid_map")"
check "VP a's root is not host root (range at $A, from --uid-base 1048576 up)" test "$A" -ge 1048576
check "VPs a and b have disjoint ranges ($A, $B)" disjoint "$A" "$B"
check "VPs a and work have disjoint ranges ($A, $W)" disjoint "$A" "$W"
check "VPs b and work have disjoint ranges ($B, $W)" disjoint "$B" "$W"
check_eq "the init runs as the range's root on the host" "$A $A" \
	"$(awk '/^Uid:/ {u=$3} /^Gid:/ {g=$3} END {print u " " g}' "/proc/$(ipid a)/status")"

# vp exec: in the VP's user namespace (seen from the host), as its root
cellctl vp exec a -- sleep 424242 &
EXP=$!
ep=
for _ in $(seq 50); do
	ep=$(pgrep -f '^sleep 424242$' | while read -r p; do [ "$(readlink "/proc/$p/ns/pid")" = "$(readlink "/proc/$(ipid a)/ns/pid")" ] && echo "$p"; done | head -1)
	[ -n "$ep" ] && break
	sleep 0.1
done
check "vp exec: the command is found on the host" test -n "$ep"
check_eq "vp exec: in the VP init's user namespace" "$(readlink "/proc/$(ipid a)/ns/user")" \
	"$(readlink "/proc/$ep/ns/user" 2>&1)"
check_eq "vp exec: runs as the range's root on the host" "$A" \
	"$(awk '/^Uid:/ {print $3}' "/proc/$ep/status" 2>&1)"
kill "$ep" 2>/dev/null; wait "$EXP" 2>/dev/null
check_eq "vp exec: root inside" "0:0" "$(cellctl vp exec a -- id -u):$(cellctl vp exec a -- id -g)"

# files the VP writes: BASE+uid on disk (plain storage and the encrypted one of 'work')
cellctl vp exec a -- sh -c 'echo x >/uns-root-file; echo y >/uns-user-file; chown 1000:1001 /uns-user-file' >/dev/null
f=$(on_disk uns-root-file)
check_eq "a file VP root created is owned by the range's root on disk" "$A:$A" "$(stat -c %u:%g "$f" 2>&1)"
f=$(on_disk uns-user-file)
check_eq "a file of VP uid 1000/gid 1001 is BASE+1000/BASE+1001 on disk" "$((A + 1000)):$((A + 1001))" \
	"$(stat -c %u:%g "$f" 2>&1)"
cellctl vp exec work -- sh -c 'echo z >/uns-work-file' >/dev/null
f=$(on_disk uns-work-file)
check "the work VP's file is in its encrypted storage" test -n "$f"
check_eq "the work VP's file is owned by its range on disk" "$W:$W" "$(stat -c %u:%g "$f" 2>&1)"

# the shared base image: root-owned inside, never modified, however the VP writes
check_eq "base image files appear root-owned inside" "0:0" \
	"$(cellctl vp exec a -- stat -c %u:%g /bin/busybox)"
cellctl vp exec a -- sh -c 'echo evil >>/etc/passwd; rm -f /etc/group; chmod 4777 /bin/busybox' >/dev/null 2>&1
cellctl vp exec b -- sh -c 'echo evil >/etc/hostname' >/dev/null 2>&1
check_eq "the VP sees its own changes (copy-up)" "evil" "$(cellctl vp exec a -- tail -1 /etc/passwd)"
check_eq "the base image on the host is unmodified (content, owners, modes)" "$IMG_SUM" "$(sha_img)"
check "another VP does not see them" bash -c "! cellctl vp exec b -- grep -q evil /etc/passwd"

# a root-owned host file and a root-owned 0700 dir bound into the VP's mount namespace
# (as if it had reached them by an escape): VP root cannot write or enter them
echo host-data >"$T/hostfile"
chmod 0644 "$T/hostfile"
mkdir -m 0700 "$T/hostdir"
echo secret >"$T/hostdir/secret"
cellctl vp exec a -- sh -c 'touch /tmp/planted-file; mkdir -p /tmp/planted-dir' >/dev/null
# plant SRC PID TARGET: bind host SRC over TARGET in the VP's mount namespace
plant() {
	python3 - "$@" <<'PY'
import ctypes, os, sys
src, pid, dst = sys.argv[1], sys.argv[2], sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_open_tree, SYS_move_mount = 428, 429
OPEN_TREE_CLONE, O_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = 1, 0o2000000, 4
AT_FDCWD = -100
t = libc.syscall(SYS_open_tree, AT_FDCWD, src.encode(), OPEN_TREE_CLONE | O_CLOEXEC)
if t < 0: sys.exit("open_tree: " + os.strerror(ctypes.get_errno()))
ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
if libc.setns(ns, 0x00020000) < 0: sys.exit("setns: " + os.strerror(ctypes.get_errno()))
os.fchdir(root); os.chroot(".")
if libc.syscall(SYS_move_mount, t, b"", AT_FDCWD, dst.encode(), MOVE_MOUNT_F_EMPTY_PATH) < 0:
    sys.exit("move_mount: " + os.strerror(ctypes.get_errno()))
PY
}
check "plant a bind of a root-owned 0644 host file into the VP" plant "$T/hostfile" "$(ipid a)" /tmp/planted-file
check "plant a bind of a root-owned 0700 host dir into the VP" plant "$T/hostdir" "$(ipid a)" /tmp/planted-dir
check_eq "the planted file is visible in the VP" "host-data" "$(cellctl vp exec a -- cat /tmp/planted-file)"
check_fails "VP root cannot write the planted host file" "Permission denied|Operation not permitted|Read-only" \
	cellctl vp exec a -- sh -c 'echo pwned >>/tmp/planted-file'
check_fails "VP root cannot chmod it" "Permission denied|Operation not permitted" \
	cellctl vp exec a -- chmod 0666 /tmp/planted-file
check_fails "VP root cannot list the planted 0700 dir" "Permission denied" \
	cellctl vp exec a -- ls /tmp/planted-dir
check_fails "VP root cannot create a file in it" "Permission denied|Operation not permitted" \
	cellctl vp exec a -- touch /tmp/planted-dir/new
check_fails "VP root cannot read the secret in it" "Permission denied|Operation not permitted" \
	cellctl vp exec a -- cat /tmp/planted-dir/secret
check_eq "the host file is unchanged" "host-data" "$(cat "$T/hostfile")"
check "real root on the host can write the same file" bash -c "echo root-was-here >>'$T/hostfile'"
check_eq "and the VP sees real root's write through its bind" "root-was-here" \
	"$(cellctl vp exec a -- tail -1 /tmp/planted-file)"
check "VP root can write its own files (the refusals are not a read-only VP)" \
	cellctl vp exec a -- sh -c 'echo ok >/tmp/own-file && chmod 0600 /tmp/own-file'

# devices: the standard nodes and /dev/cells
check "/dev/null, /dev/zero, /dev/urandom work in the VP" cellctl vp exec a -- \
	sh -c 'echo x >/dev/null && head -c 4 /dev/zero | wc -c | grep -q 4 && head -c 8 /dev/urandom | wc -c | grep -q 8'
check_eq "/dev is owned by the VP's root" "0:0" "$(cellctl vp exec a -- stat -c %u:%g /dev /dev/null | sort -u)"
check "/dev/cells is there and readable" cellctl vp exec a -- ls /dev/cells
check "a pty works in the VP (devpts of its own)" cellctl vp exec a -- \
	sh -c 'test -c /dev/pts/ptmx && exec 3<>/dev/ptmx'

# the range persists: VP restart, cellsd restart
ctl vp stop a >/dev/null && ctl vp start a >/dev/null
check_eq "VP a keeps its range across its restart" "$A" "$(host_base a)"
kill -9 "$CELLSD_PID"; wait "$CELLSD_PID" 2>/dev/null
start_cellsd || exit 1
check_eq "VP a keeps its range after cellsd restarts (adopted)" "$A" "$(host_base a)"
ctl vp stop a >/dev/null && ctl vp start a >/dev/null
check_eq "VP a keeps its range when started by the new cellsd" "$A" "$(host_base a)"
check_eq "and its files are still there" "x" "$(cellctl vp exec a -- cat /uns-root-file)"

# data of an older cellsd (VP root was host root): moves into the range at the next start
ctl vp stop a >/dev/null
u=$(dirname "$(on_disk uns-root-file)")
chown -R 0:0 "$u"
mkdir -p "$u/olddir" && echo old >"$u/olddir/oldfile" && chown 1000:1000 "$u/olddir/oldfile"
ctl vp start a >/dev/null
check_eq "an older VP's files move into its range at start" "$A:$A $((A + 1000)):$((A + 1000))" \
	"$(stat -c %u:%g "$u/uns-root-file") $(stat -c %u:%g "$u/olddir/oldfile")"
check_eq "and are its root's and uid 1000's inside" "0 1000" \
	"$(cellctl vp exec a -- stat -c %u /uns-root-file) $(cellctl vp exec a -- stat -c %u /olddir/oldfile)"

# a range is reused after destroy only
ctl vp create c --image "$IMG" >/dev/null && ctl vp start c >/dev/null
C=$(host_base c)
for o in "$A" "$B" "$W"; do check "a new VP gets a range of its own ($C vs $o)" disjoint "$C" "$o"; done
ctl vp destroy b >/dev/null
ctl vp create d --image "$IMG" >/dev/null && ctl vp start d >/dev/null
check_eq "the range of a destroyed VP is reused" "$B" "$(host_base d)"
check "d does not see b's files" bash -c "! cellctl vp exec d -- grep -q evil /etc/hostname"
for v in a c d work; do ctl vp stop "$v" >/dev/null; ctl vp destroy "$v" >/dev/null 2>&1; done
finish
