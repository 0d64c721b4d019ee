#include "loopdev.h"
#include "cleanup.h"
#include "kspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run a program of the host's system directories the one way this code starts
 * programs (ksp_spawn_helper): a clean environment, stdio on /dev/null, no other fd, no
 * capabilities (mkfs on a file cellsd created needs none). */
static int run_quiet(const char *prog, char *const argv[], cells_err_t *err)
{
	static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
	cleanup_close int fd = -1;
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && fd < 0; i++) {
		char p[64];
		snprintf(p, sizeof p, "%s/%s", dirs[i], prog);
		fd = open(p, O_PATH | O_CLOEXEC);
	}
	if (fd < 0)
		return cells_err_set(err, ENOENT, "%s: not installed", prog);
	char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	struct ksp_helper h = {.exec_fd = fd, .stdio = {-1, -1, -1}, .argv = argv, .envp = envp};
	pid_t pid;
	int pidfd;
	if (ksp_spawn_helper(&h, &pid, &pidfd, err) < 0)
		return cells_err_prefix(err, "run %s", prog);
	close(pidfd);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return cells_err_sys(err, errno, "wait %s", prog);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cells_err_set(err, EIO, "%s failed (status %d)", prog, st);
	return 0;
}

int loopdev_make_ext4_image(const char *path, uint64_t size_bytes, cells_err_t *err)
{
	{
		cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return cells_err_sys(err, errno, "create %s", path);
		if (ftruncate(fd, (off_t)size_bytes) < 0)
			return cells_err_sys(err, errno, "size %s", path);
	}
	/* -E nodiscard: the image is sparse already; lazy init keeps mkfs fast */
	char *const argv[] = {"mkfs.ext4", "-q", "-F",	     "-O",	   "encrypt", "-E",
			      "nodiscard", "-L", "cells-vp", (char *)path, NULL};
	if (run_quiet("mkfs.ext4", argv, err) < 0) {
		unlink(path);
		return cells_err_prefix(err, "mkfs %s", path);
	}
	return 0;
}

/* Returns the open loop device fd (owned): autoclear would detach on its last close
 * before a mount holds the device. */
static int attach(const char *image, bool ro, char dev[64], cells_err_t *err)
{
	cleanup_close int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return cells_err_sys(err, errno, "open /dev/loop-control");
	cleanup_close int bfd = open(image, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (bfd < 0)
		return cells_err_sys(err, errno, "open %s", image);
	/* another process may take the free device between GET_FREE and CONFIGURE */
	for (int tries = 0; tries < 20; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return cells_err_sys(err, errno, "LOOP_CTL_GET_FREE");
		snprintf(dev, 64, "/dev/loop%d", n);
		cleanup_close int lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0) {
			if (errno == ENOENT || errno == ENXIO)
				continue;
			return cells_err_sys(err, errno, "open %s", dev);
		}
		struct loop_config cfg;
		memset(&cfg, 0, sizeof cfg);
		cfg.fd = (unsigned)bfd;
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (ro ? LO_FLAGS_READ_ONLY : 0);
		snprintf((char *)cfg.info.lo_file_name, sizeof cfg.info.lo_file_name, "%s", image);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			/* a read-only image is cached once, by the file system on it: direct I/O
			 * to the image file keeps a second copy out of the page cache (best
			 * effort: the file's file system may not do O_DIRECT) */
			if (ro)
				(void)ioctl(lfd, LOOP_SET_DIRECT_IO, 1UL);
			return take_fd(&lfd);
		}
		if (errno != EBUSY)
			return cells_err_sys(err, errno, "LOOP_CONFIGURE %s", dev);
	}
	return cells_err_set(err, EBUSY, "no free loop device");
}

int loopdev_mount_image(const char *image, const char *mountpoint, cells_err_t *err)
{
	char dev[64];
	cleanup_close int lfd = attach(image, false, dev, err);
	if (lfd < 0)
		return -1;
	if (mount(dev, mountpoint, "ext4", MS_NOSUID | MS_NODEV | MS_NOEXEC, "") < 0) {
		int e = errno;
		ioctl(lfd, LOOP_CLR_FD, 0);
		return cells_err_sys(err, e, "mount %s (%s) on %s", image, dev, mountpoint);
	}
	return 0; /* closing lfd now leaves the mount as the device's only user */
}

int loopdev_mount_image_ro(const char *image, const char *fstype, const char *mountpoint,
			   cells_err_t *err)
{
	if (strcmp(fstype, "erofs") && strcmp(fstype, "squashfs"))
		return cells_err_set(err, EINVAL, "read-only image type '%s' is not supported",
				     fstype);
	char dev[64];
	cleanup_close int lfd = attach(image, true, dev, err);
	if (lfd < 0)
		return -1;
	if (mount(dev, mountpoint, fstype, MS_RDONLY | MS_NOSUID | MS_NODEV, "") < 0) {
		int e = errno;
		ioctl(lfd, LOOP_CLR_FD, 0);
		return cells_err_sys(err, e, "mount %s (%s, %s) on %s", image, dev, fstype,
				     mountpoint);
	}
	return 0;
}

bool loopdev_is_mountpoint(const char *path)
{
	cleanup_file FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char line[4096];
	while (fgets(line, sizeof line, f)) {
		/* id parent major:minor root mountpoint ... */
		char *save = NULL, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (tok && strcmp(tok, path) == 0)
			return true;
	}
	return false;
}

int loopdev_fstrim(int fd, uint64_t *trimmed, cells_err_t *err)
{
	struct fstrim_range r;
	memset(&r, 0, sizeof r);
	r.len = UINT64_MAX;
	if (ioctl(fd, FITRIM, &r) < 0)
		return cells_err_sys(err, errno, "FITRIM");
	if (trimmed)
		*trimmed = r.len;
	return 0;
}
