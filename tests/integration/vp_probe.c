/* vp_probe.c - a static helper copied into the VP image by the VP tests: tries each
 * syscall the VP seccomp filter must refuse and prints NAME=EPERM (or NAME=ok /
 * NAME=errno:N), one per line. Built by the test with `cc -static`.
 *
 *   vp_probe escape: the calls Docker's default profile refuses that an allowlist must
 *   refuse too (io_uring, modify_ldt, personality flags, AF_VSOCK, kcmp, NUMA policy,
 *   memfd_secret, namespace clones, TIOCSTI, clone3, an x32 call), each made so that it
 *   succeeds on the host, same output format.
 *
 *   vp_probe work: what a normal program does (fork/exec, files, pipes, polling,
 *   sockets, mmap, threads, clocks, timers, ptys); NAME=ok or NAME=errno:N per line.
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
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

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

static int escape_probe(void)
{
	struct io_uring_params up;
	memset(&up, 0, sizeof up);
	long r = syscall(SYS_io_uring_setup, 1, &up);
	report("io_uring_setup", r);
	if (r >= 0)
		close((int)r);
#ifdef SYS_modify_ldt
	char ldt[16];
	report("modify_ldt", syscall(SYS_modify_ldt, 0, ldt, sizeof ldt)); /* read */
#endif
	int old = personality(0xffffffff);
	r = personality(PER_LINUX | READ_IMPLIES_EXEC);
	report("personality_read_implies_exec", r);
	if (r >= 0)
		personality((unsigned long)old);
	r = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* the host may lack the vsock module: EAFNOSUPPORT there is "not refused" */
	report("socket_vsock", r);
	if (r >= 0)
		close((int)r);
	report("kcmp", syscall(SYS_kcmp, getpid(), getpid(), KCMP_VM, 0, 0));
	report("set_mempolicy", syscall(SYS_set_mempolicy, 0 /* MPOL_DEFAULT */, NULL, 0));
	report("move_pages", syscall(SYS_move_pages, 0, 0, NULL, NULL, NULL, 0));
	r = syscall(SYS_memfd_secret, 0);
	report("memfd_secret", r);
	if (r >= 0)
		close((int)r);
	r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, NULL, NULL, 0);
	if (r == 0)
		_exit(0);
	report("clone_newuser", r);
	if (r > 0)
		waitpid((pid_t)r, NULL, 0);
	r = syscall(SYS_clone3, NULL, 0);
	report("clone3", r);
	/* TIOCSTI on our own controlling terminal (a new session's pty), which the
	 * kernel allows without CAP_SYS_ADMIN (dev.tty.legacy_tiocsti=1): only a filter
	 * refuses it */
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
		report("tiocsti", -1);
	} else {
		int sp[2];
		if (pipe(sp) < 0)
			return 1;
		pid_t k = fork();
		if (k == 0) {
			char c = '\n';
			int e = 0, s = -1;
			if (setsid() < 0 || (s = open(ptsname(m), O_RDWR | O_CLOEXEC)) < 0 ||
			    ioctl(s, TIOCSCTTY, 0) < 0)
				e = errno ? errno : EIO;
			else if (ioctl(s, TIOCSTI, &c) < 0)
				e = errno;
			(void)!write(sp[1], &e, sizeof e);
			_exit(0);
		}
		int e = EIO;
		close(sp[1]);
		if (k < 0 || read(sp[0], &e, sizeof e) != sizeof e)
			e = EIO;
		if (k > 0)
			waitpid(k, NULL, 0);
		close(sp[0]);
		errno = e;
		report("tiocsti", e ? -1 : 0);
	}
	if (m >= 0)
		close(m);
	/* x32 ABI: getpid with bit 30 set */
	report("x32_getpid", syscall(0x40000000 | SYS_getpid));
	return 0;
}

static void *thread_main(void *arg)
{
	*(int *)arg = 42;
	return NULL;
}

static int work_probe(void)
{
	/* fork and exec a shell, its status comes back */
	pid_t p = fork();
	if (p == 0) {
		execl("/bin/sh", "sh", "-c", "exit 7", (char *)NULL);
		_exit(99);
	}
	int st = 0;
	errno = EIO;
	report("fork_exec_sh",
	       p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : -1);
	/* files */
	char path[64], buf[64];
	snprintf(path, sizeof path, "/tmp/vp-probe-%d", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	errno = EIO;
	int okf = fd >= 0 && write(fd, "hello", 5) == 5 && fsync(fd) == 0 &&
		  pread(fd, buf, 5, 0) == 5 && !memcmp(buf, "hello", 5) && ftruncate(fd, 1) == 0;
	struct stat sb;
	okf = okf && fstat(fd, &sb) == 0 && sb.st_size == 1;
	char path2[80];
	snprintf(path2, sizeof path2, "%s.2", path);
	okf = okf && rename(path, path2) == 0 && unlink(path2) == 0;
	report("file_io", okf ? 0 : -1);
	if (fd >= 0)
		close(fd);
	/* a FIFO (mknod of a non-device node) */
	okf = mknod(path, S_IFIFO | 0600, 0) == 0 && unlink(path) == 0;
	report("mkfifo", okf ? 0 : -1);
	/* mmap: anonymous and of a file */
	char *a = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	okf = a != MAP_FAILED;
	if (okf) {
		a[4096] = 1;
		okf = mprotect(a, 4096, PROT_READ) == 0 && munmap(a, 1 << 20) == 0;
	}
	int mfd = memfd_create("probe", MFD_CLOEXEC);
	okf = okf && mfd >= 0 && ftruncate(mfd, 4096) == 0;
	char *fm = okf ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0) : MAP_FAILED;
	okf = fm != MAP_FAILED && (fm[0] = 'x', pread(mfd, buf, 1, 0) == 1 && buf[0] == 'x');
	report("mmap", okf ? 0 : -1);
	if (mfd >= 0)
		close(mfd);
	/* threads (glibc tries clone3, gets ENOSYS, falls back to clone) */
	pthread_t t;
	int v = 0;
	int e = pthread_create(&t, NULL, thread_main, &v);
	if (e == 0)
		e = pthread_join(t, NULL);
	errno = e ? e : EIO;
	report("threads", e == 0 && v == 42 ? 0 : -1);
	/* clocks and timers */
	struct timespec ts, ts2 = {0, 1000000};
	okf = clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && clock_gettime(CLOCK_REALTIME, &ts) == 0 &&
	      nanosleep(&ts2, NULL) == 0;
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	struct itimerspec its = {.it_value = {0, 1000000}};
	uint64_t ticks = 0;
	okf = okf && tfd >= 0 && timerfd_settime(tfd, 0, &its, NULL) == 0 &&
	      read(tfd, &ticks, sizeof ticks) == sizeof ticks && ticks >= 1;
	report("clock_timers", okf ? 0 : -1);
	if (tfd >= 0)
		close(tfd);
	/* pipes, epoll, eventfd */
	int pp[2];
	okf = pipe2(pp, O_CLOEXEC) == 0 && write(pp[1], "p", 1) == 1;
	int ep = epoll_create1(EPOLL_CLOEXEC), ev = eventfd(0, EFD_CLOEXEC);
	struct epoll_event ee = {.events = EPOLLIN}, out;
	okf = okf && ep >= 0 && ev >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ee) == 0 &&
	      epoll_wait(ep, &out, 1, 1000) == 1 && eventfd_write(ev, 1) == 0;
	report("pipe_epoll_eventfd", okf ? 0 : -1);
	/* sockets: AF_UNIX pair and listener, TCP and UDP over loopback, IPv6 */
	int sv[2];
	okf = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0 &&
	      write(sv[0], "u", 1) == 1 && read(sv[1], buf, 1) == 1;
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	snprintf(su.sun_path, sizeof su.sun_path, "/tmp/vp-probe-%d.sock", (int)getpid());
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    cs = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	okf = okf && ls >= 0 && cs >= 0 && bind(ls, (struct sockaddr *)&su, sizeof su) == 0 &&
	      listen(ls, 1) == 0 && connect(cs, (struct sockaddr *)&su, sizeof su) == 0;
	unlink(su.sun_path);
	report("socket_unix", okf ? 0 : -1);
	struct sockaddr_in si = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof si;
	int tl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    tc = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	okf = tl >= 0 && tc >= 0 && bind(tl, (struct sockaddr *)&si, sizeof si) == 0 &&
	      listen(tl, 1) == 0 && getsockname(tl, (struct sockaddr *)&si, &sl) == 0 &&
	      connect(tc, (struct sockaddr *)&si, sizeof si) == 0;
	int ta = okf ? accept4(tl, NULL, NULL, SOCK_CLOEXEC) : -1;
	okf = ta >= 0 && send(tc, "tcp", 3, 0) == 3 && recv(ta, buf, 3, MSG_WAITALL) == 3;
	report("socket_inet_tcp", okf ? 0 : -1);
	int u1 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0),
	    u2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	si.sin_port = 0;
	sl = sizeof si;
	okf = u1 >= 0 && u2 >= 0 && bind(u1, (struct sockaddr *)&si, sizeof si) == 0 &&
	      getsockname(u1, (struct sockaddr *)&si, &sl) == 0 &&
	      sendto(u2, "udp", 3, 0, (struct sockaddr *)&si, sizeof si) == 3 &&
	      recv(u1, buf, 3, 0) == 3;
	report("socket_inet_udp", okf ? 0 : -1);
	int s6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	report("socket_inet6", s6);
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0 /* NETLINK_ROUTE */);
	report("socket_netlink", nl);
	/* a terminal: window size, as the shell asks */
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct winsize ws;
	report("pty_ioctl", m < 0 ? -1 : ioctl(m, TIOCGWINSZ, &ws));
	/* randomness, personality query, identity */
	report("getrandom", getrandom(buf, 16, 0) == 16 ? 0 : -1);
	report("personality_query", personality(0xffffffff));
	report("uname_getuid", getuid() == 0 ? 0 : (errno = EIO, -1));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5)
		return net_probe(argv[1], argv[2], argv[3], argv[4]);
	if (argc == 2 && !strcmp(argv[1], "escape"))
		return escape_probe();
	if (argc == 2 && !strcmp(argv[1], "work"))
		return work_probe();
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
