/* oom.c - oom_score_adj of a VP's processes (see oom.h). */
#include "oom.h"
#include "cleanup.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int oom_set_adj(pid_t pid, int adj, cells_err_t *err)
{
	if (adj < -1000 || adj > 1000)
		return cells_err_set(err, EINVAL, "oom_score_adj %d out of range", adj);
	char p[64], v[16];
	snprintf(p, sizeof p, "/proc/%d/oom_score_adj", (int)pid);
	int n = snprintf(v, sizeof v, "%d", adj);
	cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	if (write(fd, v, (size_t)n) != n)
		return cells_err_sys(err, errno, "write %s", p);
	return 0;
}

int oom_get_adj(pid_t pid, int *adj, cells_err_t *err)
{
	char p[64], v[16] = {0};
	snprintf(p, sizeof p, "/proc/%d/oom_score_adj", (int)pid);
	cleanup_close int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	if (read(fd, v, sizeof v - 1) <= 0)
		return cells_err_sys(err, errno, "read %s", p);
	*adj = atoi(v);
	return 0;
}

static int ns_ino(pid_t pid, ino_t *ino)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/ns/pid", (int)pid);
	struct stat st;
	if (stat(p, &st) < 0)
		return -1;
	*ino = st.st_ino;
	return 0;
}

int oom_set_vp(pid_t init, int adj, int init_adj, cells_err_t *err)
{
	ino_t vpns, ino;
	if (ns_ino(init, &vpns) < 0)
		return cells_err_sys(err, errno, "pid namespace of %d", (int)init);
	if (oom_set_adj(init, init_adj, err) < 0) {
		/* lowering below 0 needs CAP_SYS_RESOURCE (absent in some sandboxes): then
		 * the init gets 0, still below every background process */
		if (err && err->code == EACCES && init_adj < 0 && oom_set_adj(init, 0, err) == 0)
			;
		else
			return -1;
	}
	cleanup_dir DIR *d = opendir("/proc");
	if (!d)
		return cells_err_sys(err, errno, "opendir /proc");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid == init || ns_ino(pid, &ino) < 0 || ino != vpns)
			continue;
		int cur;
		if (oom_get_adj(pid, &cur, NULL) < 0 || cur == adj)
			continue;
		cells_err_t e2;
		if (oom_set_adj(pid, adj, &e2) < 0) {
			if (e2.code == ENOENT || e2.code == ESRCH)
				continue; /* exited meanwhile */
			*err = e2;
			return -1;
		}
		n++;
	}
	return n;
}
