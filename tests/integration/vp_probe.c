/* vp_probe.c - a static helper copied into the VP image by the VP tests: tries each
 * syscall the VP seccomp filter must refuse and prints NAME=EPERM (or NAME=ok /
 * NAME=errno:N), one per line. Built by the test with `cc -static`.
 *
 *   vp_probe tcp|udp ADDR PORT MSG: send MSG to ADDR:PORT (TCP: connect with a 2 s
 *   timeout; UDP: one datagram, then wait 2 s for an answer). Prints "reply=TEXT",
 *   "noreply" or "error=N" and exits 0 only when an answer came back. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void report(const char *name, long rc)
{
	if (rc >= 0)
		printf("%s=ok\n", name);
	else if (errno == EPERM)
		printf("%s=EPERM\n", name);
	else
		printf("%s=errno:%d\n", name, errno);
	fflush(stdout);
}

static int net_probe(const char *proto, const char *addr, const char *port, const char *msg)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((unsigned short)atoi(port))};
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		printf("error=bad address\n");
		return 2;
	}
	bool tcp = !strcmp(proto, "tcp");
	int s = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
	if (s < 0) {
		printf("error=%d\n", errno);
		return 1;
	}
	struct pollfd p = {.fd = s};
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
		if (errno != EINPROGRESS) {
			printf("error=%d\n", errno);
			return 1;
		}
		p.events = POLLOUT;
		int e = 0;
		socklen_t el = sizeof e;
		if (poll(&p, 1, 2000) <= 0) {
			printf("noreply\n");
			return 1;
		}
		getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el);
		if (e) {
			printf("error=%d\n", e);
			return 1;
		}
	}
	if (send(s, msg, strlen(msg), 0) < 0) {
		printf("error=%d\n", errno);
		return 1;
	}
	p.events = POLLIN;
	char buf[256];
	ssize_t n;
	if (poll(&p, 1, 2000) <= 0 || (n = recv(s, buf, sizeof buf - 1, 0)) <= 0) {
		printf("noreply\n");
		return 1;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	printf("reply=%s\n", buf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5)
		return net_probe(argv[1], argv[2], argv[3], argv[4]);
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	struct perf_event_attr pe;
	memset(&pe, 0, sizeof pe);
	pe.size = sizeof pe;
	pe.type = PERF_TYPE_SOFTWARE;
	pe.config = PERF_COUNT_SW_CPU_CLOCK;
	char handle[128];
	memset(handle, 0, sizeof handle);
	((unsigned *)handle)[0] = 8;
	int nsfd = open("/proc/1/ns/net", O_RDONLY);

	report("mknod", mknod("/tmp/probe-null", S_IFCHR | 0600, makedev(1, 3)));
	report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
	report("umount", umount2("/proc", MNT_DETACH));
	report("unshare", unshare(CLONE_NEWNET));
	report("setns", setns(nsfd, CLONE_NEWNET));
	report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
	report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -3));
	report("request_key", syscall(SYS_request_key, "user", "probe", NULL, 0));
	report("bpf", syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a));
	report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, handle, O_RDONLY));
	report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
	report("init_module", syscall(SYS_init_module, NULL, 0, ""));
	report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
	report("swapon", swapon("/nonexistent", 0));
	report("reboot", syscall(SYS_reboot, 0, 0, 0, NULL)); /* bad magic: never reboots */
	report("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
	report("sethostname", sethostname("probe-host", 10));
	return 0;
}
