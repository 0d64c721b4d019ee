/* kcgroup.h - one cgroup per VP on every hierarchy the host has: cgroup v1 controllers
 * (memory, pids, cpu, devices) and/or the v2 unified hierarchy, nested under cellsd's
 * own cgroup. The device controller is v1 devices.allow/deny and, when a v2 hierarchy
 * is mounted, a BPF_PROG_TYPE_CGROUP_DEVICE program too (the kernel checks both), so
 * a hybrid host (v1 controllers + empty v2) is covered as well as a pure v2 host. */
#ifndef CELLS_KCGROUP_H
#define CELLS_KCGROUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

#define KCG_MAX_V1 6
#define KCG_MAX_DEVS 64

struct kcg_dev {
	char type;	       /* 'c' or 'b' */
	unsigned major, minor; /* ~0u: any */
	bool allow;
};

struct kcg {
	char name[64];
	size_t nv1;
	char v1[KCG_MAX_V1][PATH_MAX];	 /* cgroup directories, one per v1 hierarchy */
	bool v1_devices;		 /* one of them is the devices controller */
	char v2[PATH_MAX];		 /* "" when the host has no v2 hierarchy */
	bool v2_memory, v2_pids, v2_cpu; /* controllers usable in v2 */
	int v2_fd;			 /* O_PATH|O_DIRECTORY of v2 dir (CLONE_INTO_CGROUP), -1 */
	struct kcg_dev devs[KCG_MAX_DEVS]; /* rules of the BPF program, in order */
	size_t ndevs;
};

struct kcg_limits {
	unsigned long long memory; /* bytes, 0: none */
	unsigned pids;		   /* 0: none */
	unsigned cpu_weight;	   /* 1..10000 (v2 scale), 0: default 100 */
};

#define KCG_AGENT_LEAF "cells-agent"

/* On a pure cgroup v2 host, move cellsd into the leaf KCG_AGENT_LEAF of its cgroup and
 * enable the memory, pids and cpu controllers for the VP cgroups beside it (the "no
 * internal processes" rule). 1 when moved, 0 when not needed (hybrid/v1, root). */
int kcg_v2_delegate(cells_err_t *err);
/* Compute the cgroup paths of `name` under cellsd's own cgroups (no changes). */
int kcg_init(struct kcg *cg, const char *name, cells_err_t *err);
/* Create the cgroups, apply limits and the default device rules (deny all but null,
 * zero, full, random, urandom, tty, ptmx and pts). Opens v2_fd. */
int kcg_create(struct kcg *cg, const struct kcg_limits *lim, cells_err_t *err);
/* For a VP found again after a restart: open v2_fd, assume the default device rules. */
void kcg_adopt(struct kcg *cg);
/* Move pid into the v1 cgroups (and the v2 one unless it was cloned into it). */
int kcg_attach(struct kcg *cg, pid_t pid, bool v2_too, cells_err_t *err);
/* Open "cgroup.procs" of every hierarchy for writing (fds[] gets -1 where absent);
 * returns the count. For a child to join with write(fd, "0") between clone and exec. */
size_t kcg_open_procs(struct kcg *cg, int *fds, size_t max);
/* Allow or deny the devices of rules[n] at once (v1: a file write per rule; v2: the whole
 * new rule list in one BPF program, attached in one call; cg's list changes only once
 * the kernel took it). */
int kcg_dev_apply(struct kcg *cg, const struct kcg_dev *rules, size_t n, cells_err_t *err);
/* Allow or deny one device (kcg_dev_apply of one rule). */
int kcg_dev_set(struct kcg *cg, char type, unsigned major, unsigned minor, bool allow,
		cells_err_t *err);
/* Whether any of the VP's cgroup directories exist. */
bool kcg_exists(const struct kcg *cg);
/* Kill what is left inside, remove the directories (retrying while busy). */
int kcg_destroy(struct kcg *cg, cells_err_t *err);
void kcg_close(struct kcg *cg);
/* The v1 memory usage of the cgroup in bytes (or v2 memory.current), 0 if unknown. */
unsigned long long kcg_memory_usage(const struct kcg *cg);

/* Freeze (true) or thaw every task of the cgroup: v2 cgroup.freeze when the VP's v2
 * cgroup has one (tasks are in both hierarchies here), else the v1 freezer.state; waits
 * until the kernel reports the new state (cgroup.events "frozen 1" / FROZEN), up to 5 s.
 * A v1-frozen cgroup is thawed by kcg_destroy before its tasks are killed. */
int kcg_freeze(struct kcg *cg, bool frozen, cells_err_t *err);
/* 1 when the kernel reports the cgroup frozen, 0 when not, -1 without a freezer. */
int kcg_frozen(const struct kcg *cg);
/* The freezer control file in use (for status and tests), "" without one. */
const char *kcg_freezer_file(const struct kcg *cg, char *buf, size_t n);

/* Build the BPF device program for rules (exposed for unit tests): returns the number
 * of instructions written to insns (struct bpf_insn[max]) or -1 when too many. */
int kcg_bpf_build(const struct kcg_dev *rules, size_t n, void *insns, size_t max);

#endif
