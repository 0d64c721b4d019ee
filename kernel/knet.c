/* knet.c - veth pairs and nftables NAT for VPs (see knet.h). */
#include "knet.h"
#include "cleanup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

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

/* --- rtnetlink (libmnl) ---------------------------------------------------------- */

enum { NL_REQ = 1024, NL_RECV = 8192 };

struct nl {
	struct mnl_socket *sk;
	unsigned seq, portid;
};

static void nl_close(struct nl *n)
{
	if (n->sk)
		mnl_socket_close(n->sk);
	n->sk = NULL;
}
#define cleanup_nl __attribute__((cleanup(nl_close)))

/* A route netlink socket in the calling thread's current network namespace. */
static int nl_open(struct nl *n, cells_err_t *err)
{
	n->sk = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!n->sk)
		return cells_err_sys(err, errno, "netlink socket");
	if (mnl_socket_bind(n->sk, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		nl_close(n);
		return cells_err_sys(err, e, "netlink bind");
	}
	n->portid = mnl_socket_get_portid(n->sk);
	n->seq = (unsigned)time(NULL);
	return 0;
}

static struct nlmsghdr *nl_msg(struct nl *n, char *buf, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = type;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	h->nlmsg_seq = ++n->seq;
	return h;
}

/* Send one request and wait for its ack: 0, or -1 with the kernel's errno in err. */
static int nl_talk(struct nl *n, struct nlmsghdr *h, const char *what, cells_err_t *err)
{
	if (mnl_socket_sendto(n->sk, h, h->nlmsg_len) < 0)
		return cells_err_sys(err, errno, "netlink send (%s)", what);
	char buf[NL_RECV] __attribute__((aligned(NLMSG_ALIGNTO)));
	for (;;) {
		ssize_t r = mnl_socket_recvfrom(n->sk, buf, sizeof buf);
		if (r < 0)
			return cells_err_sys(err, errno, "netlink receive (%s)", what);
		int rc = mnl_cb_run(buf, (size_t)r, h->nlmsg_seq, n->portid, NULL, NULL);
		if (rc < 0)
			return cells_err_sys(err, errno, "%s", what);
		if (rc == MNL_CB_STOP)
			return 0;
	}
}

static int nl_link_up(struct nl *n, unsigned ifindex, bool up, cells_err_t *err)
{
	char buf[NL_REQ] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct nlmsghdr *h = nl_msg(n, buf, RTM_NEWLINK, 0);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof *ifi);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)ifindex;
	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = up ? IFF_UP : 0;
	return nl_talk(n, h, up ? "link up" : "link down", err);
}

static int nl_addr_add(struct nl *n, unsigned ifindex, const char *addr, cells_err_t *err)
{
	struct in_addr a;
	if (inet_pton(AF_INET, addr, &a) != 1)
		return cells_err_set(err, EINVAL, "bad address '%s'", addr);
	char buf[NL_REQ] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct nlmsghdr *h = nl_msg(n, buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof *ifa);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = 30;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = ifindex;
	mnl_attr_put(h, IFA_LOCAL, sizeof a, &a);
	mnl_attr_put(h, IFA_ADDRESS, sizeof a, &a);
	return nl_talk(n, h, "add address", err);
}

static int nl_default_route(struct nl *n, const char *gw, cells_err_t *err)
{
	struct in_addr a;
	if (inet_pton(AF_INET, gw, &a) != 1)
		return cells_err_set(err, EINVAL, "bad gateway '%s'", gw);
	char buf[NL_REQ] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct nlmsghdr *h = nl_msg(n, buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
	struct rtmsg *rt = mnl_nlmsg_put_extra_header(h, sizeof *rt);
	rt->rtm_family = AF_INET;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_BOOT;
	rt->rtm_scope = RT_SCOPE_UNIVERSE;
	rt->rtm_type = RTN_UNICAST;
	mnl_attr_put(h, RTA_GATEWAY, sizeof a, &a);
	return nl_talk(n, h, "add default route", err);
}

/* The veth pair: `ifname` here, its peer eth0 created directly in pid's namespace. */
static int nl_veth_add(struct nl *n, const char *ifname, pid_t pid, cells_err_t *err)
{
	char buf[NL_REQ] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct nlmsghdr *h = nl_msg(n, buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof *ifi);
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(h, IFLA_IFNAME, ifname);
	struct nlattr *info = mnl_attr_nest_start(h, IFLA_LINKINFO);
	mnl_attr_put_strz(h, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(h, IFLA_INFO_DATA);
	struct nlattr *peer = mnl_attr_nest_start(h, VETH_INFO_PEER);
	struct ifinfomsg *pi = mnl_nlmsg_put_extra_header(h, sizeof *pi);
	memset(pi, 0, sizeof *pi);
	pi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(h, IFLA_IFNAME, "eth0");
	mnl_attr_put_u32(h, IFLA_NET_NS_PID, (uint32_t)pid);
	mnl_attr_nest_end(h, peer);
	mnl_attr_nest_end(h, data);
	mnl_attr_nest_end(h, info);
	return nl_talk(n, h, "create veth pair", err);
}

/* Configure the VP end from inside the VP's network namespace: this thread enters it,
 * opens its netlink socket there, and comes back before it returns. */
static int vp_end_setup(pid_t pid, const struct knet_addr *a, cells_err_t *err)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/ns/net", (int)pid);
	cleanup_close int vpns = open(p, O_RDONLY | O_CLOEXEC);
	if (vpns < 0)
		return cells_err_sys(err, errno, "open %s", p);
	cleanup_close int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0)
		return cells_err_sys(err, errno, "open own network namespace");
	if (setns(vpns, CLONE_NEWNET) < 0)
		return cells_err_sys(err, errno, "enter the VP's network namespace");
	int rc = 0;
	{
		cleanup_nl struct nl n = {0};
		unsigned idx;
		if (nl_open(&n, err) < 0)
			rc = -1;
		else if ((idx = if_nametoindex("eth0")) == 0)
			rc = cells_err_sys(err, errno, "eth0");
		else if (nl_addr_add(&n, idx, a->vp, err) < 0 ||
			 nl_link_up(&n, idx, true, err) < 0 ||
			 nl_default_route(&n, a->host, err) < 0)
			rc = -1;
	}
	/* not being able to come back would leave cellsd's thread inside the VP */
	if (setns(home, CLONE_NEWNET) < 0)
		abort();
	return rc;
}

bool knet_link_exists(const char *ifname)
{
	return if_nametoindex(ifname) != 0;
}

int knet_link_set(const char *ifname, bool up, cells_err_t *err)
{
	unsigned idx = if_nametoindex(ifname);
	if (idx == 0)
		return cells_err_sys(err, errno, "link %s", ifname);
	cleanup_nl struct nl n = {0};
	if (nl_open(&n, err) < 0 || nl_link_up(&n, idx, up, err) < 0)
		return cells_err_prefix(err, "link %s", ifname);
	return 0;
}

int knet_veth_setup(const char *ifname, pid_t pid, const struct knet_addr *a, cells_err_t *err)
{
	{
		cleanup_nl struct nl n = {0};
		if (nl_open(&n, err) < 0 || nl_veth_add(&n, ifname, pid, err) < 0)
			return cells_err_prefix(err, "veth %s", ifname);
	}
	/* no IPv6 on the host end: the nftables table is IPv4 only, and a link-local
	 * address there would be a way to the host's services around it (set before the
	 * link goes up, so no address is ever assigned) */
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
	{
		cleanup_nl struct nl n = {0};
		unsigned idx = if_nametoindex(ifname);
		if (idx == 0) {
			cells_err_sys(err, errno, "link %s", ifname);
			goto undo;
		}
		if (nl_open(&n, err) < 0 || nl_addr_add(&n, idx, a->host, err) < 0 ||
		    nl_link_up(&n, idx, true, err) < 0)
			goto undo;
	}
	if (vp_end_setup(pid, a, err) < 0) {
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
	unsigned idx = if_nametoindex(ifname);
	if (idx == 0)
		return 0;
	cleanup_nl struct nl n = {0};
	if (nl_open(&n, err) < 0)
		return -1;
	char buf[NL_REQ] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct nlmsghdr *h = nl_msg(&n, buf, RTM_DELLINK, 0);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof *ifi);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)idx;
	if (nl_talk(&n, h, "delete link", err) < 0 && err->code != ENODEV)
		return cells_err_prefix(err, "link %s", ifname);
	return 0;
}

/* --- nftables (libnftables) -------------------------------------------------------- */

/* Run an nft script in one libnftables call; 0, or -1 with the first line of nft's error
 * in err (err NULL: only the status is wanted). */
static int nft_run(const char *script, const char *what, cells_err_t *err)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return cells_err_set(err, ENOMEM, "%s: nftables context", what);
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	int rc = nft_run_cmd_from_buffer(ctx, script);
	if (rc != 0 && err) {
		const char *e = nft_ctx_get_error_buffer(ctx);
		char line[200];
		snprintf(line, sizeof line, "%s", e && e[0] ? e : "failed");
		line[strcspn(line, "\n")] = 0;
		cells_err_set(err, EIO, "%s: %s", what, line);
	}
	nft_ctx_free(ctx);
	return rc == 0 ? 0 : -1;
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
	if (nft_run(rules, "nft", err) < 0)
		return cells_err_prefix(err, "nftables table %s", table);
	return 0;
}

bool knet_nat_exists(const char *table)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "list table ip %s", table);
	return nft_run(cmd, "nft", NULL) == 0;
}

int knet_nat_del(const char *table, cells_err_t *err)
{
	char rules[256];
	snprintf(rules, sizeof rules, "table ip %s\ndelete table ip %s\n", table, table);
	return nft_run(rules, "nft", err);
}
