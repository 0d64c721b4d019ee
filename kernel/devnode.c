/* devnode.c - device nodes in a VP's /dev (see devnode.h). */
#include "devnode.h"
#include "cleanup.h"
#include "kidmap.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

struct child_result {
	int code;
	char msg[200];
};

static void child_fail(int fd, int code, const char *what, const char *path)
{
	struct child_result r = {.code = code};
	snprintf(r.msg, sizeof r.msg, "%s %s", what, path);
	if (write(fd, &r, sizeof r) < 0) {
		/* nothing left to report to */
	}
	_exit(1);
}

/* In the child, after chroot: refuse when the namespace's /dev is the host's /dev file
 * system (a VP that has not pivoted to its own root yet): a node made there would
 * appear on the host. */
static void child_check_dev(int wfd, dev_t host_dev)
{
	struct stat st;
	if (stat("/dev", &st) < 0)
		child_fail(wfd, errno, "stat", "/dev");
	if (st.st_dev == host_dev)
		child_fail(wfd, EPERM, "refusing: the namespace's /dev is the host's", "/dev");
}

static void child_run(int wfd, int mntfd, int rootfd, const char *path, mode_t mode, dev_t dev,
		      bool present, dev_t host_dev, uid_t uid, gid_t gid)
{
	if (setns(mntfd, CLONE_NEWNS) < 0)
		child_fail(wfd, errno, "setns mnt", "");
	if (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0)
		child_fail(wfd, errno, "chroot to the VP's root", "");
	child_check_dev(wfd, host_dev);
	umask(0);
	if (!present) {
		if (unlink(path) < 0 && errno != ENOENT)
			child_fail(wfd, errno, "unlink", path);
		_exit(0);
	}
	/* parents */
	char buf[256];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			child_fail(wfd, errno, "mkdir", buf);
		*s = '/';
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if ((st.st_mode & S_IFMT) == (mode & S_IFMT) && st.st_rdev == dev) {
			if (chmod(path, mode & 07777) < 0 || lchown(path, uid, gid) < 0)
				child_fail(wfd, errno, "chmod", path);
			_exit(0);
		}
		if (unlink(path) < 0)
			child_fail(wfd, errno, "unlink", path);
	}
	if (mknod(path, mode, dev) < 0)
		child_fail(wfd, errno, "mknod", path);
	/* owned by the VP's root (its user namespace's range) */
	if (lchown(path, uid, gid) < 0)
		child_fail(wfd, errno, "chown", path);
	_exit(0);
}

static int enter_ns(pid_t pid, int *mntfd, int *rootfd, cells_err_t *err)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/ns/mnt", (int)pid);
	*mntfd = open(p, O_RDONLY | O_CLOEXEC);
	if (*mntfd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	snprintf(p, sizeof p, "/proc/%d/root", (int)pid);
	*rootfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*rootfd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	return 0;
}

/* Wait for the helper child; its error (if any) arrives on rfd. */
static int child_wait(pid_t c, int rfd, cells_err_t *err)
{
	struct child_result r = {0};
	ssize_t n;
	do
		n = read(rfd, &r, sizeof r);
	while (n < 0 && errno == EINTR);
	int st;
	while (waitpid(c, &st, 0) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof r) {
		r.msg[sizeof r.msg - 1] = 0;
		return cells_err_sys(err, r.code, "%s", r.msg);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cells_err_set(err, EIO, "device node helper failed (status %d)", st);
	return 0;
}

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

int devnode_bind_in_ns(pid_t pid, const char *src, const char *path, cells_err_t *err)
{
	if (path[0] != '/' || strlen(path) >= 200 || strstr(path, "/../"))
		return cells_err_set(err, EINVAL, "bad target %s", path);
	cleanup_close int mntfd = -1;
	cleanup_close int rootfd = -1;
	if (enter_ns(pid, &mntfd, &rootfd, err) < 0)
		return -1;
	struct stat host_dev;
	if (stat("/dev", &host_dev) < 0)
		return cells_err_sys(err, errno, "stat /dev");
	/* the node is the VP root's (a VP with a user namespace: its range's root) */
	uid_t uid;
	gid_t gid;
	if (kidmap_root_of(pid, &uid, &gid, err) < 0)
		return -1;
	if ((uid || gid) && chown(src, uid, gid) < 0)
		return cells_err_sys(err, errno, "chown %s", src);
	cleanup_close int tree =
	    (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | O_CLOEXEC);
	if (tree < 0)
		return cells_err_sys(err, errno, "open_tree %s", src);
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cells_err_sys(err, errno, "pipe");
	cleanup_close int rfd = pfd[0];
	cleanup_close int wfd = pfd[1];
	pid_t c = fork();
	if (c < 0)
		return cells_err_sys(err, errno, "fork");
	if (c == 0) {
		if (setns(mntfd, CLONE_NEWNS) < 0)
			child_fail(wfd, errno, "setns mnt", "");
		if (fchdir(rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0)
			child_fail(wfd, errno, "chroot to the VP's root", "");
		child_check_dev(wfd, host_dev.st_dev);
		umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW); /* a previous bind, if any */
		int fd = open(path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
		if (fd < 0)
			child_fail(wfd, errno, "create", path);
		close(fd);
		if (syscall(SYS_move_mount, tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			child_fail(wfd, errno, "move_mount onto", path);
		_exit(0);
	}
	close(take_fd(&wfd));
	return child_wait(c, rfd, err);
}

int devnode_set(pid_t pid, const char *path, char type, unsigned major, unsigned minor,
		unsigned perm, bool present, cells_err_t *err)
{
	if (path[0] != '/' || strlen(path) >= 200 || strstr(path, "/../") ||
	    (type != 'c' && type != 'b'))
		return cells_err_set(err, EINVAL, "bad device node %s", path);
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/ns/mnt", (int)pid);
	cleanup_close int mntfd = open(p, O_RDONLY | O_CLOEXEC);
	if (mntfd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	snprintf(p, sizeof p, "/proc/%d/root", (int)pid);
	cleanup_close int rootfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cells_err_sys(err, errno, "pipe");
	cleanup_close int rfd = pfd[0];
	cleanup_close int wfd = pfd[1];
	mode_t mode = (type == 'c' ? S_IFCHR : S_IFBLK) | (perm & 0666);
	struct stat host_dev;
	if (stat("/dev", &host_dev) < 0)
		return cells_err_sys(err, errno, "stat /dev");
	uid_t uid;
	gid_t gid;
	if (kidmap_root_of(pid, &uid, &gid, err) < 0)
		return -1;
	pid_t c = fork();
	if (c < 0)
		return cells_err_sys(err, errno, "fork");
	if (c == 0)
		child_run(wfd, mntfd, rootfd, path, mode, makedev(major, minor), present,
			  host_dev.st_dev, uid, gid);
	close(take_fd(&wfd));
	return child_wait(c, rfd, err);
}
