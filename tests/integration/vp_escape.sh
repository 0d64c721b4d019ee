#!/usr/bin/env bash
# Escape battery of a VP's seccomp allowlist and masks (issue 14): in a running `net=none`
# VP, as root with `vp exec`, the calls Docker's default profile refuses fail (EPERM, or
# ENOSYS for clone3 and a foreign ABI) while the same probe succeeds on the host; the
# masked /proc and /sys paths are empty inside and readable on the host; the read-only
# ones are read-only mounts that refuse writes; a normal workload still runs.
. "$CELLS_SRC/tests/lib.sh"
. "$CELLS_SRC/tests/integration/vp_lib.sh"
start_cellsd || exit 1
check "create offline (none)" ctl vp create offline --image "$IMG" --net none
check "start offline" ctl vp start offline
ID=$(vp_instance)
x() { cellctl vp exec offline -- "$@"; }

# syscalls: refused inside, not refused on the host
inside=$(x vp_probe escape 2>&1)
host=$("$T/vp_probe" escape 2>&1)
field() { grep "^$1=" <<<"$2" | head -1; }
for s in io_uring_setup modify_ldt personality_read_implies_exec socket_vsock kcmp \
	set_mempolicy move_pages memfd_secret clone_newuser tiocsti; do
	check_eq "$s fails inside with EPERM" "$s=EPERM" "$(field "$s" "$inside")"
	h=$(field "$s" "$host")
	if [ -n "$h" ] && [ "$h" != "$s=EPERM" ]; then ok "$s is not refused on the host ($h)"
	else not_ok "$s is not refused on the host (got '$h')"; fi
done
check_eq "clone3 fails inside with ENOSYS (libc falls back to clone)" "clone3=errno:38" "$(field clone3 "$inside")"
h=$(field clone3 "$host")
if [ -n "$h" ] && [ "$h" != "clone3=errno:38" ]; then ok "clone3 exists on the host ($h)"
else not_ok "clone3 exists on the host (got '$h')"; fi
# x32: the filter's bad-architecture action (ENOSYS); a kernel without x32 answers
# ENOSYS on the host too, so the host line is information only
check_eq "an x32 syscall (getpid | 0x40000000) fails inside with ENOSYS" "x32_getpid=errno:38" "$(field x32_getpid "$inside")"
echo "# x32 on the host: $(field x32_getpid "$host")"

# masked paths: empty inside (a read-only tmpfs over a directory, the null device over
# a file), readable on the host when the host has them
for p in /proc/acpi /proc/asound /proc/scsi /sys/firmware /sys/devices/virtual/powercap \
	/proc/kcore /proc/keys /proc/interrupts /proc/latency_stats /proc/timer_list \
	/proc/timer_stats /proc/sched_debug; do
	if [ ! -e "$p" ]; then
		check_fails "$p (absent on this host) is absent or empty inside" "^absent|^empty" \
			x sh -c "if [ ! -e $p ]; then echo absent; exit 1; fi; [ -z \"\$(ls -A $p)\" ] && [ ! -s $p ] && echo empty && exit 1"
		continue
	fi
	if [ -d "$p" ]; then
		check "$p is readable on the host" ls "$p"
		check_eq "$p is an empty directory inside" "" "$(x ls -A "$p" 2>&1)"
		check_fails "$p cannot be written inside" "Read-only" x mkdir "$p/x"
		check "$p is a read-only tmpfs inside" x sh -c "awk '\$5 == \"$p\" && \$6 ~ /^ro/ && \$9 == \"tmpfs\"' /proc/self/mountinfo | grep -q ."
	else
		check "$p is readable on the host" sh -c "head -c 16 $p >/dev/null"
		check_eq "$p reads empty inside" 0 "$(x sh -c "cat $p | wc -c" 2>&1)"
		check_eq "$p is the null device inside" "character special file 1,3" "$(x stat -c '%F %t,%T' "$p" 2>&1)"
	fi
done

# read-only paths: read-only mounts inside, a write is refused
for p in /proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger; do
	[ -e "$p" ] || { ok "$p absent on this host"; continue; }
	check "$p is a read-only mount inside" x sh -c "awk '\$5 == \"$p\" && \$6 ~ /^ro/' /proc/self/mountinfo | grep -q ."
done
check_fails "/proc/sys refuses a write inside" "Read-only" x sh -c 'echo 1 > /proc/sys/kernel/ns_last_pid'
[ -e /proc/sysrq-trigger ] &&
	check_fails "/proc/sysrq-trigger refuses a write inside" "Read-only" x sh -c 'echo h > /proc/sysrq-trigger'
[ -e /proc/irq/default_smp_affinity ] &&
	check_fails "/proc/irq refuses a write inside" "Read-only" x sh -c 'echo 1 > /proc/irq/default_smp_affinity'
check "/proc/sys is still readable inside" x cat /proc/sys/kernel/ostype

# a normal workload still runs under the allowlist
work=$(x vp_probe work 2>&1)
check_eq "the workload probe ran every step" 16 "$(grep -c '=' <<<"$work")"
check_eq "every workload step works inside" "" "$(grep -v '=ok$' <<<"$work")"
check "busybox: pipes, ps, date, sleep, files, sort, wc" x sh -c 'ps >/dev/null && date >/dev/null && sleep 0.1 && echo hi >/tmp/f && sort /tmp/f | wc -l | grep -q 1'
check "busybox: a background job and wait" x sh -c 'sleep 0.1 & wait $!'
check_eq "the VP is still running" running "$(vp_field offline state)"

check "stop offline" ctl vp stop offline
check_eq "nothing left on the host" "" "$(vp_leftovers "$ID")"
check "clean shutdown" stop_cellsd
finish
