/* knet.h - VP networking: a veth pair per `nat` VP (host end cv<id6><n>, VP end eth0)
 * with a private /30 out of 10.213.0.0/16, and one nftables table per agent
 * (cells_<id>) that masquerades VP traffic to the uplink and drops traffic between
 * VPs and from a VP to any address of the host (input chain: only replies to
 * connections the host opened pass). The host end has no IPv6, so nothing reaches
 * the host around the IPv4 table. Links, addresses and routes go over rtnetlink (libmnl);
 * the table is one nftables script run by libnftables (one transaction). No program is
 * started. */
#ifndef CELLS_KNET_H
#define CELLS_KNET_H

#include <stdbool.h>
#include <sys/types.h>

#include "err.h"

struct knet_addr {
	unsigned block; /* /30 number in 10.213.0.0/16 (0..16383) */
	char host[16];	/* 10.213.x.y (host end) */
	char vp[16];	/* 10.213.x.y+1 (VP end) */
};

void knet_block_addr(unsigned block, struct knet_addr *a);
/* Find a /30 no interface of the host uses, starting at `hint`. */
int knet_alloc_block(unsigned hint, struct knet_addr *a, cells_err_t *err);
/* Create the veth pair: host end `ifname` with a->host/30, VP end eth0 (in the network
 * namespace of pid) with a->vp/30 and a default route via a->host. */
int knet_veth_setup(const char *ifname, pid_t pid, const struct knet_addr *a, cells_err_t *err);
/* Delete the host end (the pair goes with it); absent is fine. */
int knet_veth_del(const char *ifname, cells_err_t *err);
bool knet_link_exists(const char *ifname);
/* (Re)create the nftables table `table` for interfaces matching `ifprefix`* and enable
 * IPv4 forwarding. */
int knet_nat_setup(const char *table, const char *ifprefix, cells_err_t *err);
int knet_nat_del(const char *table, cells_err_t *err);
bool knet_nat_exists(const char *table);

/* Set the link up or down (administratively). */
int knet_link_set(const char *ifname, bool up, cells_err_t *err);

#endif
