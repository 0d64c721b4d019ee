#!/usr/bin/env bash
# The isolation battery: run as root inside a VP with `vp exec`, a malicious app must
# not see or reach the other VP or the host.
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

# network
PADDR=$(vp_field personal address) PHOST=$(vp_field personal host_address)
WADDR=$(vp_field work address)
check "personal has a veth address" grep -qE '^10\.213\.' <<<"$PADDR"
cellctl vp exec work -- sh -c 'mkdir -p /www && echo hello-work >/www/index.html && httpd -p 7000 -h /www'
check_eq "host reaches work's server (control)" "hello-work" "$(host_get "http://$WADDR:7000/" 2>&1)"
check_eq "work serves from inside (control)" "hello-work" "$(vp_get work 127.0.0.1 7000)"
check_eq "personal cannot reach work's server" "" "$(vp_get personal "$WADDR" 7000)"
check_not "personal cannot ping work" x ping -c 1 -W 1 "$WADDR"
mkdir -p "$T/www" && echo hello-host >"$T/www/index.html"
python3 -m http.server --bind "$PHOST" --directory "$T/www" 7001 >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 30); do host_get "http://$PHOST:7001/" >/dev/null 2>&1 && break; sleep 0.1; done
check_eq "nat: personal reaches a server on the host end of its veth" "hello-host" "$(vp_get personal "$PHOST" 7001)"
check_eq "none: offline has only loopback" "lo" "$(cellctl vp exec offline -- ls /sys/class/net | tr -d '\n')"
check_eq "none: offline cannot reach the host server" "" "$(vp_get offline "$PHOST" 7001)"

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
