/* kspawn.h - start a VP's init in new namespaces (clone3 + pidfd), and run commands
 * inside a running VP (setns through the init's pidfd).
 *
 * Everything the child needs (paths, option strings, argv/envp, the seccomp program,
 * the capability mask) is prepared by the parent; the child between clone3 and execve
 * runs only async-signal-safe code: raw syscalls, no allocation, no stdio, no locks
 * (it may run in an ASan build of a multi-threaded process). */
#ifndef CELLS_KSPAWN_H
#define CELLS_KSPAWN_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct ksp_confine {
	const struct sock_fprog *seccomp; /* borrowed; NULL: none (tests only) */
	uint64_t caps_keep;		  /* capability bitmask kept */
	int cap_last;			  /* highest capability number */
	const char *selinux_exec;	  /* context for exec, NULL when disabled */
	int stdio[3];			  /* borrowed fds; -1: /dev/null inside the VP */
	char *const *argv;		  /* argv[0] is a path or looked up in PATH */
	char *const *envp;
	const char *cwd;      /* inside the VP, absolute */
	const char *fallback; /* exec this (e.g. "/bin/sh") if argv[0] is missing */
	uint32_t id_base;     /* the VP's id range (kidmap.h): the process is in the VP's user
			       * namespace, as its root (host uid/gid id_base); 0: none */
};

struct ksp_init {
	const char *root;	  /* host directory the overlay is mounted on (exists) */
	const char *overlay_opts; /* without c.id_base: "lowerdir=..,upperdir=..,workdir=.." */
	/* with c.id_base (a user namespace, CLONE_NEWUSER with the others): the overlay is
	 * mounted inside it over the base image idmapped into the VP's range (read-only);
	 * upper and work are owned by the range. /dev is a tmpfs the parent makes (owned by
	 * the range, its nodes usable) and /dev/cells an idmapped bind of devcells. */
	const char *image;
	const char *upper;
	const char *work;
	const char *devcells; /* host dir bind-mounted at /dev/cells, NULL: none */
	const char *hostname;
	int cgroup_fd; /* v2 cgroup dir for CLONE_INTO_CGROUP, -1: none */
	struct ksp_confine c;
};

/* Clone the init. With s->c.id_base its user namespace maps 0..65535 to the range
 * (written here before the child goes on). It waits for ksp_release() before it sets up its mounts
 * and execs (so the caller can put it into v1 cgroups and give it a veth first). *go_fd and *err_fd
 * are owned by the caller and consumed by ksp_release. */
int ksp_spawn_init(const struct ksp_init *s, pid_t *pid, int *pidfd, int *go_fd, int *err_fd,
		   cells_err_t *err);
/* Let the child go on, then wait until it has exec'd (0) or failed (-1, err says at
 * which step). Closes both fds. */
int ksp_release(int go_fd, int err_fd, cells_err_t *err);

/* Run c->argv inside the VP whose init is vp_pidfd: a helper process joins the VP's
 * cgroups (procs_fds: cgroup.procs files, borrowed) and namespaces, forks the command
 * (confined as the init) and exits with its status (128+signal when killed; 127 when
 * the command is not found). *pidfd (owned) is the helper's. */
int ksp_exec(int vp_pidfd, const int *procs_fds, size_t nprocs, const struct ksp_confine *c,
	     pid_t *pid, int *pidfd, cells_err_t *err);

/* A helper program outside any VP (e.g. cellsd-net): started from a descriptor the parent
 * opened (execveat AT_EMPTY_PATH, so the program may live under a directory the helper's
 * uid cannot search), as uid/gid with no supplementary groups, an empty capability
 * bounding set and no ambient/inheritable capabilities, no_new_privs, not dumpable until
 * its exec, in new namespaces (clone_flags), with exactly the envp given (nothing
 * inherited) and only fds 0-2 (stdio, -1: /dev/null) and fds[i] as 3+i. */
struct ksp_helper {
	int exec_fd;	  /* the program (O_PATH is enough), borrowed */
	bool exec_script; /* a "#!" script: its interpreter opens /dev/fd/N, so the program
			   * fd stays open across exec as fd 3+nfds */
	const int *fds;	  /* borrowed; at most KSP_HELPER_MAX_FDS */
	size_t nfds;
	int stdio[3]; /* borrowed; -1: /dev/null */
	uid_t uid;
	gid_t gid;
	uint64_t clone_flags; /* CLONE_NEW* */
	char *const *argv;
	char *const *envp;
};
#define KSP_HELPER_MAX_FDS 8

/* Start h; returns once the child has exec'd (0, *pid and *pidfd owned by the caller) or
 * failed (-1, err names the step). */
int ksp_spawn_helper(const struct ksp_helper *h, pid_t *pid, int *pidfd, cells_err_t *err);

/* The start time of a process (field 22 of /proc/PID/stat), 0 when it does not exist:
 * with the pid it identifies a process across cellsd restarts. */
unsigned long long ksp_start_time(pid_t pid);

#endif
