/* knet.c - veth pairs and nftables NAT for VPs (see knet.h). */
#include "knet.h"
#include "cleanup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void knet_block_addr(unsigned block, struct knet_addr *a)
{
	block %= 16384;
	a->block = block;
	unsigned x = block >> 6, y = (block & 63) << 2;
	snprintf(a->host, sizeof a->host, "10.213.%u.%u", x, y + 1);
	snprintf(a->vp, sizeof a->vp, "10.213.%u.%u", x, y + 2);
}

int knet_alloc_block(unsigned hint, struct knet_addr *a, cells_err_t *err)
{
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) < 0)
		return cells_err_sys(err, errno, "getifaddrs");
	for (unsigned i = 0; i < 16384; i++) {
		unsigned b = (hint + i) % 16384;
		uint32_t net = (10u << 24) | (213u << 16) | (b << 2);
		bool used = false;
		for (struct ifaddrs *p = ifa; p && !used; p = p->ifa_next)
			if (p->ifa_addr && p->ifa_addr->sa_family == AF_INET) {
				uint32_t v =
				    ntohl(((struct sockaddr_in *)p->ifa_addr)->sin_addr.s_addr);
				used = (v & ~3u) == net;
			}
		if (!used) {
			freeifaddrs(ifa);
			knet_block_addr(b, a);
			return 0;
		}
	}
	freeifaddrs(ifa);
	return cells_err_set(err, EADDRINUSE, "no free VP subnet in 10.213.0.0/16");
}

int knet_run(char *const argv[], const char *input, cells_err_t *err)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1};
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		int e = errno;
		if (in[0] >= 0) {
			close(in[0]);
			close(in[1]);
		}
		return cells_err_sys(err, e, "pipe");
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, out[1], 2);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (rc != 0) {
		close(in[1]);
		close(out[0]);
		return cells_err_sys(err, rc, "run %s", argv[0]);
	}
	if (input)
		(void)!write(in[1], input, strlen(input));
	close(in[1]);
	char buf[512];
	size_t n = 0;
	ssize_t r;
	while ((r = read(out[0], buf + n, sizeof buf - 1 - n)) > 0 || (r < 0 && errno == EINTR))
		if (r > 0 && (n += (size_t)r) >= sizeof buf - 1)
			break;
	buf[n] = 0;
	close(out[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	buf[strcspn(buf, "\n")] = 0;
	return cells_err_set(err, EIO, "%s: %s", argv[0], buf[0] ? buf : "failed");
}

bool knet_link_exists(const char *ifname)
{
	return if_nametoindex(ifname) != 0;
}

int knet_veth_setup(const char *ifname, pid_t pid, const struct knet_addr *a, cells_err_t *err)
{
	char pidbuf[16], batch[512];
	snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
	snprintf(batch, sizeof batch,
		 "link add %s type veth peer name eth0 netns %s\n"
		 "addr add %s/30 dev %s\n"
		 "link set %s up\n",
		 ifname, pidbuf, a->host, ifname, ifname);
	char *host[] = {"ip", "-batch", "-", NULL};
	if (knet_run(host, batch, err) < 0)
		return cells_err_prefix(err, "veth %s", ifname);
	/* no IPv6 on the host end: the nftables table is IPv4 only, and a link-local
	 * address there would be a way to the host's services around it */
	char sysctl[96];
	snprintf(sysctl, sizeof sysctl, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
	int fd = open(sysctl, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		cells_err_sys(err, errno, "open %s", sysctl);
		goto undo;
	}
	if (fd >= 0) {
		bool ok = write(fd, "1", 1) == 1;
		int e = errno;
		close(fd);
		if (!ok) {
			cells_err_sys(err, e, "disable IPv6 on %s", ifname);
			goto undo;
		}
	}
	snprintf(batch, sizeof batch,
		 "addr add %s/30 dev eth0\n"
		 "link set eth0 up\n"
		 "route add default via %s\n",
		 a->vp, a->host);
	char *vp[] = {"nsenter", "-t", pidbuf, "-n", "ip", "-batch", "-", NULL};
	if (knet_run(vp, batch, err) < 0) {
		cells_err_prefix(err, "VP end");
		goto undo;
	}
	return 0;
undo:;
	cells_err_t e2;
	knet_veth_del(ifname, &e2);
	return cells_err_prefix(err, "veth %s", ifname);
}

int knet_veth_del(const char *ifname, cells_err_t *err)
{
	if (!knet_link_exists(ifname))
		return 0;
	char *argv[] = {"ip", "link", "del", (char *)ifname, NULL};
	return knet_run(argv, NULL, err);
}

int knet_nat_setup(const char *table, const char *ifprefix, cells_err_t *err)
{
	cleanup_close int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDWR | O_CLOEXEC);
	char c = '0';
	if (fd >= 0 && pread(fd, &c, 1, 0) == 1 && c != '1' && pwrite(fd, "1", 1, 0) != 1)
		return cells_err_sys(err, errno, "enable IPv4 forwarding");
	char rules[1024];
	snprintf(rules, sizeof rules,
		 "table ip %s\n"
		 "delete table ip %s\n"
		 "table ip %s {\n"
		 " chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
		 "  iifname \"%s*\" oifname != \"cv*\" masquerade\n }\n"
		 " chain forward { type filter hook forward priority filter; policy accept;\n"
		 "  iifname \"cv*\" oifname \"cv*\" drop\n }\n"
		 " chain input { type filter hook input priority filter; policy accept;\n"
		 "  iifname \"%s*\" ct state established,related accept\n"
		 "  iifname \"%s*\" drop\n }\n"
		 "}\n",
		 table, table, table, ifprefix, ifprefix, ifprefix);
	char *argv[] = {"nft", "-f", "-", NULL};
	if (knet_run(argv, rules, err) < 0)
		return cells_err_prefix(err, "nftables table %s", table);
	return 0;
}

bool knet_nat_exists(const char *table)
{
	char *argv[] = {"nft", "list", "table", "ip", (char *)table, NULL};
	cells_err_t e;
	return knet_run(argv, NULL, &e) == 0;
}

int knet_nat_del(const char *table, cells_err_t *err)
{
	char rules[256];
	snprintf(rules, sizeof rules, "table ip %s\ndelete table ip %s\n", table, table);
	char *argv[] = {"nft", "-f", "-", NULL};
	return knet_run(argv, rules, err);
}
