/* kidmap.c - user-namespace id ranges and idmapped mounts (see kidmap.h). */
#include "kidmap.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct kidmap_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int write_file(const char *path, const char *s, cells_err_t *err)
{
	cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	size_t n = strlen(s);
	if (write(fd, s, n) != (ssize_t)n)
		return cells_err_sys(err, errno, "write %s", path);
	return 0;
}

int kidmap_write_maps(pid_t pid, uint32_t base, cells_err_t *err)
{
	if (base == 0 || (uint64_t)base + KIDMAP_RANGE > UINT32_MAX)
		return cells_err_set(err, EINVAL, "id range at %u does not fit", base);
	char p[64], map[64];
	snprintf(map, sizeof map, "0 %u %u\n", base, KIDMAP_RANGE);
	snprintf(p, sizeof p, "/proc/%d/uid_map", (int)pid);
	if (write_file(p, map, err) < 0)
		return -1;
	snprintf(p, sizeof p, "/proc/%d/gid_map", (int)pid);
	return write_file(p, map, err);
}

int kidmap_idmapped_tree(const char *path, int userns_fd, uint64_t attr, bool recursive, int *out,
			 cells_err_t *err)
{
	cleanup_close int t =
	    (int)syscall(SYS_open_tree, AT_FDCWD, path,
			 OPEN_TREE_CLONE | O_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
	if (t < 0)
		return cells_err_sys(err, errno, "open_tree %s", path);
	struct kidmap_attr a = {.attr_set = attr | MOUNT_ATTR_IDMAP,
				.userns_fd = (uint64_t)userns_fd};
	if (syscall(SYS_mount_setattr, t, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a,
		    sizeof a) < 0)
		return cells_err_sys(err, errno, "idmapped mount of %s", path);
	*out = take_fd(&t);
	return 0;
}

static uint32_t shift_base;
static long shift_count;
static int shift_errno;

static int shift_one(const char *p, const struct stat *st, int type, struct FTW *f)
{
	(void)type;
	(void)f;
	uid_t u = st->st_uid;
	gid_t g = st->st_gid;
	if (u < KIDMAP_RANGE)
		u += shift_base;
	if (g < KIDMAP_RANGE)
		g += shift_base;
	if (u == st->st_uid && g == st->st_gid)
		return 0;
	/* overlayfs's mark of an opaque directory: a VP's overlay, mounted inside its user
	 * namespace, keeps it in user.overlay.* (userxattr), no longer trusted.overlay.* */
	char v[8];
	ssize_t n = S_ISDIR(st->st_mode) ? lgetxattr(p, "trusted.overlay.opaque", v, sizeof v) : -1;
	if (n > 0 && lsetxattr(p, "user.overlay.opaque", v, (size_t)n, 0) < 0) {
		shift_errno = errno;
		return 1;
	}
	if (lchown(p, u, g) < 0) {
		shift_errno = errno;
		return 1;
	}
	/* chown clears set-id bits of executables: put them back */
	if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)))
		(void)chmod(p, st->st_mode & 07777);
	shift_count++;
	return 0;
}

long kidmap_shift_tree(const char *dir, uint32_t base, cells_err_t *err)
{
	if (base < KIDMAP_RANGE)
		return cells_err_set(err, EINVAL, "id range at %u overlaps the host's ids", base);
	shift_base = base;
	shift_count = 0;
	shift_errno = 0;
	int r = nftw(dir, shift_one, 32, FTW_PHYS | FTW_MOUNT);
	if (r != 0)
		return cells_err_sys(err, shift_errno ? shift_errno : errno,
				     "move %s into the id range at %u", dir, base);
	return shift_count;
}

/* The host id that id 0 maps to in a /proc/PID/{uid,gid}_map file. */
static int map_root(const char *path, unsigned long *out, cells_err_t *err)
{
	cleanup_file FILE *f = fopen(path, "re");
	if (!f)
		return cells_err_sys(err, errno, "open %s", path);
	unsigned long in, host, count;
	while (fscanf(f, "%lu %lu %lu", &in, &host, &count) == 3)
		if (in == 0 && count > 0) {
			*out = host;
			return 0;
		}
	return cells_err_set(err, ENOENT, "%s: root is not mapped", path);
}

int kidmap_root_of(pid_t pid, uid_t *uid, gid_t *gid, cells_err_t *err)
{
	char p[64];
	unsigned long u, g;
	snprintf(p, sizeof p, "/proc/%d/uid_map", (int)pid);
	if (map_root(p, &u, err) < 0)
		return -1;
	snprintf(p, sizeof p, "/proc/%d/gid_map", (int)pid);
	if (map_root(p, &g, err) < 0)
		return -1;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}

/* A child parked in a new user namespace with "0 BASE 65536" written by this process;
 * *nsfd is its user namespace. The child exits when *hold is closed. */
static pid_t probe_child(int *nsfd, int *hold)
{
	int up[2], down[2];
	if (pipe2(up, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(down, O_CLOEXEC) < 0) {
		close(up[0]);
		close(up[1]);
		return -1;
	}
	pid_t c = fork();
	if (c == 0) {
		char b = 0;
		close(up[0]);
		close(down[1]);
		if (unshare(CLONE_NEWUSER) < 0)
			_exit(1);
		(void)!write(up[1], &b, 1);
		(void)!read(down[0], &b, 1);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	char b;
	bool ready = c > 0 && read(up[0], &b, 1) == 1;
	close(up[0]);
	cells_err_t e;
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/ns/user", (int)c);
	if (ready && kidmap_write_maps(c, 4 * KIDMAP_RANGE, &e) == 0 &&
	    (*nsfd = open(p, O_RDONLY | O_CLOEXEC)) >= 0) {
		*hold = down[1];
		return c;
	}
	close(down[1]);
	if (c > 0)
		waitpid(c, NULL, 0);
	return -1;
}

static void probe_end(pid_t c, int nsfd, int hold)
{
	close(nsfd);
	close(hold);
	waitpid(c, NULL, 0);
}

bool kidmap_probe_userns(void)
{
	int nsfd, hold;
	pid_t c = probe_child(&nsfd, &hold);
	if (c < 0)
		return false;
	probe_end(c, nsfd, hold);
	return true;
}

bool kidmap_probe_idmap(void)
{
	int nsfd, hold;
	pid_t c = probe_child(&nsfd, &hold);
	if (c < 0)
		return false;
	int t = -1;
	cells_err_t e;
	bool ok = kidmap_idmapped_tree("/", nsfd, MOUNT_ATTR_RDONLY, false, &t, &e) == 0;
	if (t >= 0)
		close(t);
	probe_end(c, nsfd, hold);
	return ok;
}
