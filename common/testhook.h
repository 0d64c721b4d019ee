/* testhook.h - failure injection and crash points for the tests, shared by cellsd and
 * cells-mdm serve. They exist only in a build configured with -DCELLS_TEST_HOOKS=ON
 * (scripts/build.sh test): a release build has neither the options nor the code, and
 * nothing is ever read from the environment.
 *
 *   cellsd --test-fail OP:ERRNO:WHEN
 *       the OS op OP (dev_set: the device cgroup; node_set: a node in a VP's /dev) fails
 *       with ERRNO (a name such as EPERM, or a number) at its call WHEN: a number N (the
 *       Nth call since cellsd started, 1-based) or the call's description (dev_set:
 *       "allow:c10:229" / "deny:c10:229"; node_set: "add:/dev/fuse" / "del:/dev/fuse"),
 *       every time it matches
 *   cellsd --test-crash-at POINT, cells-mdm serve --test-crash-at POINT
 *       the process SIGKILLs itself when it reaches the point POINT (logged first as
 *       "test crash point POINT: killing PROGRAM")
 *   cellsd --test-pause-at POINT:FILE
 *       the thread that reaches the point POINT the first time waits there until FILE
 *       exists (at most 60 s; logged "test pause point POINT: waiting for FILE")
 *   The points (testhook_point): policy-before-persist, policy-after-persist,
 *   wipe-step-N, image-import-copying (cellsd, in the import's copy thread past its
 *   first MiB), mdm-audit-before-ack (cells-mdm)
 *
 * Each option may be given once. */
#ifndef CELLS_TESTHOOK_H
#define CELLS_TESTHOOK_H

#include "err.h"

#ifdef CELLS_TEST_HOOKS
/* 0 when name is one of the options above (value parsed and stored), else -1. */
int testhook_option(const char *name, const char *value, cells_err_t *err);
/* -1 with err filled when this call of op (described by what) is to fail, else 0. */
int testhook_fail(const char *op, const char *what, cells_err_t *err);
/* A crash or pause point (the options above). */
void testhook_point(const char *where);
#else
static inline int testhook_fail(const char *op, const char *what, cells_err_t *err)
{
	(void)op;
	(void)what;
	(void)err;
	return 0;
}
static inline void testhook_point(const char *where)
{
	(void)where;
}
#endif

#endif
