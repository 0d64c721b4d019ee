/* knsrun.c - run a function inside another process's mount namespace (knsrun.h). */
#include "knsrun.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

struct report {
	int code;
	char msg[200];
};

void knsrun_fail(struct knsrun_ctx *c, int code, const char *what, const char *path)
{
	struct report r = {.code = code};
	snprintf(r.msg, sizeof r.msg, "%s%s%s", what, *path ? " " : "", path);
	if (write(c->wfd, &r, sizeof r) < 0) {
		/* nothing left to report to */
	}
	_exit(1);
}

int knsrun_open(pid_t pid, int *mntfd, int *rootfd, cells_err_t *err)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/ns/mnt", (int)pid);
	*mntfd = open(p, O_RDONLY | O_CLOEXEC);
	if (*mntfd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	snprintf(p, sizeof p, "/proc/%d/root", (int)pid);
	*rootfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*rootfd < 0) {
		int e = errno;
		close(*mntfd);
		*mntfd = -1;
		return cells_err_sys(err, e, "open %s", p);
	}
	return 0;
}

int knsrun(int mntfd, int rootfd, knsrun_fn fn, void *arg, cells_err_t *err)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cells_err_sys(err, errno, "pipe");
	cleanup_close int rfd = pfd[0];
	struct knsrun_ctx c = {.wfd = pfd[1]};
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(c.wfd);
		return cells_err_sys(err, e, "fork");
	}
	if (pid == 0) {
		close(rfd);
		if (setns(mntfd, CLONE_NEWNS) < 0)
			knsrun_fail(&c, errno, "setns mnt", "");
		if (rootfd >= 0 && (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0))
			knsrun_fail(&c, errno, "chroot to the namespace's root", "");
		_exit(fn(&c, arg) == 0 ? 0 : 1);
	}
	close(c.wfd);
	struct report r = {0};
	ssize_t n;
	do
		n = read(rfd, &r, sizeof r);
	while (n < 0 && errno == EINTR);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof r) {
		r.msg[sizeof r.msg - 1] = 0;
		return cells_err_sys(err, r.code, "%s", r.msg);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cells_err_set(err, EIO, "namespace helper failed (status %d)", st);
	return 0;
}
