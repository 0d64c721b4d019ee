/* devnode.c - device nodes in a VP's /dev (see devnode.h). The work inside the VP's
 * mount namespace runs through knsrun (kernel/knsrun.h). */
#include "devnode.h"
#include "cleanup.h"
#include "kidmap.h"
#include "knsrun.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* In the namespace, after chroot: refuse when the namespace's /dev is the host's /dev
 * file system (a VP that has not pivoted to its own root yet): a node made there would
 * appear on the host. */
static void check_dev(struct knsrun_ctx *c, dev_t host_dev)
{
	struct stat st;
	if (stat("/dev", &st) < 0)
		knsrun_fail(c, errno, "stat", "/dev");
	if (st.st_dev == host_dev)
		knsrun_fail(c, EPERM, "refusing: the namespace's /dev is the host's", "/dev");
}

struct node_op {
	const char *path;
	mode_t mode;
	dev_t dev;
	bool present;
	dev_t host_dev;
	uid_t uid;
	gid_t gid;
};

static int node_in_ns(struct knsrun_ctx *c, void *arg)
{
	const struct node_op *o = arg;
	check_dev(c, o->host_dev);
	umask(0);
	if (!o->present) {
		if (unlink(o->path) < 0 && errno != ENOENT)
			knsrun_fail(c, errno, "unlink", o->path);
		return 0;
	}
	/* parents */
	char buf[256];
	snprintf(buf, sizeof buf, "%s", o->path);
	for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			knsrun_fail(c, errno, "mkdir", buf);
		*s = '/';
	}
	struct stat st;
	if (lstat(o->path, &st) == 0) {
		if ((st.st_mode & S_IFMT) == (o->mode & S_IFMT) && st.st_rdev == o->dev) {
			if (chmod(o->path, o->mode & 07777) < 0 ||
			    lchown(o->path, o->uid, o->gid) < 0)
				knsrun_fail(c, errno, "chmod", o->path);
			return 0;
		}
		if (unlink(o->path) < 0)
			knsrun_fail(c, errno, "unlink", o->path);
	}
	if (mknod(o->path, o->mode, o->dev) < 0)
		knsrun_fail(c, errno, "mknod", o->path);
	/* owned by the VP's root (its user namespace's range) */
	if (lchown(o->path, o->uid, o->gid) < 0)
		knsrun_fail(c, errno, "chown", o->path);
	return 0;
}

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

struct bind_op {
	const char *path;
	int tree;
	dev_t host_dev;
};

static int bind_in_ns(struct knsrun_ctx *c, void *arg)
{
	const struct bind_op *o = arg;
	check_dev(c, o->host_dev);
	umount2(o->path, MNT_DETACH | UMOUNT_NOFOLLOW); /* a previous bind, if any */
	int fd = open(o->path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
	if (fd < 0)
		knsrun_fail(c, errno, "create", o->path);
	close(fd);
	if (syscall(SYS_move_mount, o->tree, "", AT_FDCWD, o->path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		knsrun_fail(c, errno, "move_mount onto", o->path);
	return 0;
}

int devnode_bind_in_ns(pid_t pid, const char *src, const char *path, cells_err_t *err)
{
	if (path[0] != '/' || strlen(path) >= 200 || strstr(path, "/../"))
		return cells_err_set(err, EINVAL, "bad target %s", path);
	cleanup_close int mntfd = -1;
	cleanup_close int rootfd = -1;
	if (knsrun_open(pid, &mntfd, &rootfd, err) < 0)
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
	struct bind_op o = {path, tree, host_dev.st_dev};
	return knsrun(mntfd, rootfd, bind_in_ns, &o, err);
}

int devnode_set(pid_t pid, const char *path, char type, unsigned major, unsigned minor,
		unsigned perm, bool present, cells_err_t *err)
{
	if (path[0] != '/' || strlen(path) >= 200 || strstr(path, "/../") ||
	    (type != 'c' && type != 'b'))
		return cells_err_set(err, EINVAL, "bad device node %s", path);
	cleanup_close int mntfd = -1;
	cleanup_close int rootfd = -1;
	if (knsrun_open(pid, &mntfd, &rootfd, err) < 0)
		return -1;
	struct stat host_dev;
	if (stat("/dev", &host_dev) < 0)
		return cells_err_sys(err, errno, "stat /dev");
	struct node_op o = {.path = path,
			    .mode = (type == 'c' ? S_IFCHR : S_IFBLK) | (perm & 0666),
			    .dev = makedev(major, minor),
			    .present = present,
			    .host_dev = host_dev.st_dev};
	if (kidmap_root_of(pid, &o.uid, &o.gid, err) < 0)
		return -1;
	return knsrun(mntfd, rootfd, node_in_ns, &o, err);
}
