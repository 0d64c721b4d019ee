/* ksm.c - KSM controls (see ksm.h). */
#include "ksm.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

bool ksm_prctl_supported(void)
{
	return prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) >= 0;
}

int ksm_merge_self(bool on, cells_err_t *err)
{
	if (prctl(PR_SET_MEMORY_MERGE, on ? 1 : 0, 0, 0, 0) < 0)
		return cells_err_sys(err, errno, "prctl(PR_SET_MEMORY_MERGE)");
	return 0;
}

int ksm_merge_self_get(void)
{
	return prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
}

int ksm_set_run(const char *dir, int run, cells_err_t *err)
{
	char p[512], v[4];
	snprintf(p, sizeof p, "%s/run", dir);
	int n = snprintf(v, sizeof v, "%d", run);
	cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC | O_TRUNC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	if (write(fd, v, (size_t)n) != n)
		return cells_err_sys(err, errno, "write %s", p);
	return 0;
}

int ksm_get(const char *dir, const char *name, uint64_t *out, cells_err_t *err)
{
	char p[512], v[32] = {0};
	snprintf(p, sizeof p, "%s/%s", dir, name);
	cleanup_close int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	ssize_t n = read(fd, v, sizeof v - 1);
	if (n <= 0)
		return cells_err_sys(err, n < 0 ? errno : EIO, "read %s", p);
	char *end;
	errno = 0;
	*out = strtoull(v, &end, 10);
	if (errno || end == v)
		return cells_err_set(err, EINVAL, "%s: not a number", p);
	return 0;
}
