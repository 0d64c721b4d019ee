#!/usr/bin/env bash
# The isolation battery: run as root inside a VP with `vp exec`, a malicious app must
# not see or reach the other VP or the host (no host address, TCP or UDP, on a server
# the test binds on 0.0.0.0), while the NAT route out works (to a network namespace
# the test creates as "the outside").
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
start_cellsd || exit 1
check "create personal (nat)" ctl vp create personal --image "$IMG" --net nat
check "create work (nat)" ctl vp create work --image "$IMG" --net nat
check "create offline (none)" ctl vp create offline --image "$IMG" --net none
check "start personal" ctl vp start personal
check "start work" ctl vp start work
check "start offline" ctl vp start offline
ID=$(vp_instance)
x() { cellctl vp exec personal -- "$@"; }

# processes
hm=$((40000 + $$ % 10000)) wm=$((50000 + $$ % 10000))
sleep "$hm" &
HOSTSLEEP=$!
PIDS+=("$HOSTSLEEP")
cellctl vp exec work -- sh -c "sleep $wm >/dev/null 2>&1 </dev/null &"
out=$(x ps -o pid,args)
check "VP sees its own init as pid 1" grep -qE '^ *1 .*init' <<<"$out"
check_not "VP does not see the host's processes" grep -F "sleep $hm" <<<"$out"
check_not "VP does not see the other VP's processes" grep -F "sleep $wm" <<<"$out"
check_not "VP does not see cellsd" grep -F "cellsd" <<<"$out"
check "VP sees at most a handful of processes" test "$(grep -c . <<<"$out")" -le 6
check "the other VP's process runs (control)" bash -c "cellctl vp exec work -- ps -o args | grep -q 'sleep $wm'"
check_eq "hostname is the VP's own" "personal" "$(x hostname)"

# syscalls refused by the seccomp filter / missing capabilities
probe=$(x vp_probe)
for s in mknod mount umount unshare setns keyctl add_key request_key bpf open_by_handle_at \
	perf_event_open init_module kexec_load swapon reboot pivot_root sethostname; do
	check_eq "$s fails with EPERM" "$s=EPERM" "$(grep "^$s=" <<<"$probe")"
done
check_fails "busybox mount fails" "denied|not permitted" x mount -t tmpfs none /mnt
check_fails "busybox unshare fails" "not permitted" x unshare -n true

# privileges
st=$(x cat /proc/self/status)
check "NoNewPrivs: 1" grep -qP '^NoNewPrivs:\t1$' <<<"$st"
check "seccomp filter on" grep -qP '^Seccomp:\t2$' <<<"$st"
capeff=$(awk '/^CapEff/ {print $2}' <<<"$st")
capbnd=$(awk '/^CapBnd/ {print $2}' <<<"$st")
check "CapEff is reduced (not full)" test "$capeff" != "000001ffffffffff"
for c in 21:SYS_ADMIN 27:MKNOD 16:SYS_MODULE 17:SYS_RAWIO 19:SYS_PTRACE 25:SYS_TIME 22:SYS_BOOT 12:NET_ADMIN; do
	bit=${c%%:*}
	check_eq "CAP_${c#*:} not in the bounding set" 0 $(( (0x$capbnd >> bit) & 1 ))
done

# fds of the VP's init: stdio on the VP's /dev/null and the init script only
fds=$(x sh -c 'for f in /proc/1/fd/*; do echo "${f##*/} $(readlink $f)"; done')
check "init holds only 0,1,2 and its script" bash -c "
	awk '{print \$1}' <<<'$fds' | sort -n | tr '\n' ' ' | grep -qE '^0 1 2 ([0-9]+ )?$' &&
	! grep -vE ' (/dev/null|/sbin/init)$' <<<'$fds'"
check_fails "control socket path is not visible" "No such file|can't" x ls "$CELLS_RUN_DIR/control.sock"
check_fails "/proc/sys is read-only" "Read-only|denied" x sh -c 'echo 1 > /proc/sys/kernel/ns_last_pid'
check_fails "/sys is read-only" "Read-only|denied" x sh -c 'echo x > /sys/kernel/uevent_helper'

# devices: the device cgroup (v1 devices and the v2 BPF program) allows only the listed
dc="$CELLS_RUN_DIR/vp/personal/devcells"
check "host makes device nodes in devcells" bash -c "mknod '$dc/mem' c 1 1 && mknod '$dc/null2' c 1 3"
check "allowed device (null) opens" x sh -c 'echo x > /dev/cells/null2'
check_fails "disallowed device (/dev/mem) cannot be opened" "not permitted|denied" x dd if=/dev/cells/mem of=/dev/null bs=1 count=1
check "VP /dev/null works" x sh -c 'echo hi >/dev/null && head -c 4 /dev/urandom | wc -c | grep -q 4'

# network: a VP reaches only what it is given (its NAT route out). VP-to-host (any host
# address) and VP-to-VP are dropped; replies to connections the host opens still pass.
PADDR=$(vp_field personal address) PHOST=$(vp_field personal host_address)
WADDR=$(vp_field work address) WHOST=$(vp_field work host_address)
PVETH=$(ip -o -4 addr show | awk -v a="$PHOST" 'index($4, a "/") == 1 {print $2}')
check "personal has a veth address" grep -qE '^10\.213\.' <<<"$PADDR"
cellctl vp exec work -- sh -c 'mkdir -p /www && echo hello-work >/www/index.html && httpd -p 7000 -h /www'
check_eq "host reaches work's server (control: replies to the host's connections pass)" "hello-work" "$(host_get "http://$WADDR:7000/" 2>&1)"
check_eq "work serves from inside (control)" "hello-work" "$(vp_get work 127.0.0.1 7000)"
check_eq "personal cannot reach work's server" "" "$(vp_get personal "$WADDR" 7000)"
check_not "personal cannot ping work" x ping -c 1 -W 1 "$WADDR"
# servers on 0.0.0.0 (TCP and UDP, one port) that log every peer; "the outside" is a
# network namespace this test creates, behind a veth pair of its own
cat >"$T/srv.py" <<'PY'
import socket, sys, threading
port, log = int(sys.argv[1]), sys.argv[2]
def out(s):
    with open(log, 'a') as f:
        f.write(s + '\n')
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('0.0.0.0', port))
t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('0.0.0.0', port))
def udp():
    while True:
        d, a = u.recvfrom(512)
        out('udp %s %s' % (a[0], d.decode(errors='replace')))
        u.sendto(b'udp-ok\n', a)
threading.Thread(target=udp, daemon=True).start()
open(log + '.ready', 'w').close()
while True:
    c, a = t.accept()
    c.settimeout(2)
    try:
        d = c.recv(512)
        out('tcp %s %s' % (a[0], d.decode(errors='replace')))
        c.sendall(b'tcp-ok\n')
    except OSError:
        pass
    c.close()
PY
PORT=$((20000 + $$ % 20000)) N=$(($$ % 250))
NS="cellsout$$" OV="cto$$" DM="ctd$$" # not cv*: the agent's names
OUT_HOST="198.18.$N.1" OUT_ADDR="198.18.$N.2" DUMMY_ADDR="198.19.$N.1"
net_cleanup() {
	ip netns del "$NS" 2>/dev/null
	ip link del "$OV" 2>/dev/null
	ip link del "$DM" 2>/dev/null
	cleanup
}
trap net_cleanup EXIT
# (a bridge without ports when the kernel has no dummy driver: an address on the host)
check "test network: a dummy host interface and an outside netns behind a veth" bash -c "
	{ ip link add $DM type dummy 2>/dev/null || ip link add $DM type bridge; } && ip addr add $DUMMY_ADDR/32 dev $DM && ip link set $DM up &&
	ip netns add $NS && ip link add $OV type veth peer name eth0 netns $NS &&
	ip addr add $OUT_HOST/30 dev $OV && ip link set $OV up &&
	ip -n $NS addr add $OUT_ADDR/30 dev eth0 && ip -n $NS link set eth0 up && ip -n $NS link set lo up"
python3 "$T/srv.py" "$PORT" "$T/host.log" >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec "$NS" python3 "$T/srv.py" "$PORT" "$T/out.log" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -e "$T/host.log.ready" ] && [ -e "$T/out.log.ready" ] && break; sleep 0.1; done
probe() { cellctl vp exec "$1" -- vp_probe "$2" "$3" "$PORT" "$4"; }
check_eq "host server answers the host (control)" "reply=tcp-ok" "$("$T/vp_probe" tcp 127.0.0.1 "$PORT" ctl)"
for a in "$PHOST:host end of its own veth" "$WHOST:host end of the other VP's veth" \
	"$DUMMY_ADDR:a dummy interface of the host" "$OUT_HOST:the host's address toward the outside"; do
	addr=${a%%:*} what=${a#*:}
	check_eq "nat: personal cannot reach a TCP server on 0.0.0.0 via $what" noreply "$(probe personal tcp "$addr" "tcp-from-vp-$addr")"
	check_eq "nat: personal cannot reach a UDP server on 0.0.0.0 via $what" noreply "$(probe personal udp "$addr" "udp-from-vp-$addr")"
done
check_eq "the host's servers saw nothing from the VP" "" "$(grep -- '-from-vp-' "$T/host.log" 2>/dev/null)"
check_eq "personal cannot reach work over UDP" noreply "$(probe personal udp "$WADDR" to-work)"
check_eq "the host end of the veth has no IPv6 (no way around the IPv4 table)" "" "$(ip -6 -o addr show dev "$PVETH" 2>&1)"
check_eq "nat: personal reaches the outside over TCP (its NAT route out)" "reply=tcp-ok" "$(probe personal tcp "$OUT_ADDR" tcp-out)"
check_eq "nat: personal reaches the outside over UDP" "reply=udp-ok" "$(probe personal udp "$OUT_ADDR" udp-out)"
check_eq "the outside saw the VP's traffic masqueraded to the host's address" "tcp $OUT_HOST tcp-out
udp $OUT_HOST udp-out" "$(sort "$T/out.log" 2>&1)"
# a cellsd that restarts with the VPs running (adopted) remakes its table as it writes
# it: a table of an older cellsd without the input chain stands in here
kill -KILL "$CELLSD_PID" && wait "$CELLSD_PID" 2>/dev/null
nft delete chain ip "cells_$ID" input
start_cellsd || exit 1
check_eq "after a restart with adopted VPs: the host is still out of reach (TCP)" noreply "$(probe personal tcp "$PHOST" tcp-from-vp-restart)"
check_eq "after a restart with adopted VPs: the host is still out of reach (UDP)" noreply "$(probe personal udp "$DUMMY_ADDR" udp-from-vp-restart)"
check_eq "after a restart: the host's servers still saw nothing from the VP" "" "$(grep -- '-from-vp-' "$T/host.log" 2>/dev/null)"
check_eq "after a restart: the NAT route out still works" "reply=tcp-ok" "$(probe personal tcp "$OUT_ADDR" tcp-out-2)"
check_eq "none: offline has only loopback" "lo" "$(cellctl vp exec offline -- ls /sys/class/net | tr -d '\n')"
check_eq "none: offline cannot reach the outside" noreply "$(probe offline tcp "$OUT_ADDR" x 2>&1 | sed 's/^error=.*/noreply/')"

# limits: pids and memory of the VP's cgroup
check "create and start a limited VP" bash -c "cellctl vp create lim --image '$IMG' --pids 16 --memory 64M >/dev/null && cellctl vp start lim >/dev/null"
pm=$(find /sys/fs/cgroup -maxdepth 6 -type d -name "cells-$ID-lim" -path '*pids*' | head -1)
mm=$(find /sys/fs/cgroup -maxdepth 6 -type d -name "cells-$ID-lim" -path '*memory*' | head -1)
[ -n "$pm" ] && check_eq "pids.max of the VP cgroup" 16 "$(cat "$pm/pids.max")"
[ -n "$mm" ] && check_eq "memory limit of the VP cgroup" $((64 << 20)) "$(cat "$mm/memory.limit_in_bytes")"
check_fails "a fork bomb stops at the pids limit" "can't fork|Resource temporarily" cellctl vp exec lim -- sh -c 'for i in $(seq 40); do sleep 30 & done; wait'
check "stop all" bash -c "cellctl vp stop personal && cellctl vp stop work && cellctl vp stop offline && cellctl vp stop lim"
kill "$HOSTSLEEP" 2>/dev/null
check_eq "nothing left on the host" "" "$(vp_leftovers "$ID")"
check "clean shutdown" stop_cellsd
check_eq "after the shutdown no mount is left (the encrypted area of work included)" "" \
	"$(grep -F "$T/" /proc/self/mountinfo | awk '{print $5}')"
finish
