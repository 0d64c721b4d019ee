#include "util.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>

#include <openssl/crypto.h>

void cells_secret_free(cells_secret_t *s)
{
	if (s->p) {
		OPENSSL_cleanse(s->p, s->len);
		free(s->p);
		s->p = NULL;
	}
	s->len = 0;
}

int cells_read_file(const char *path, size_t max, uint8_t **out, size_t *len, cells_err_t *err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return cells_err_sys(err, errno, "stat %s", path);
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
		return cells_err_set(err, EFBIG, "%s: %lld bytes is over the limit of %zu bytes",
				     path, (long long)st.st_size, max);
	size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096;
	cleanup_free uint8_t *buf = malloc(cap);
	size_t n = 0;
	if (!buf)
		return cells_err_sys(err, ENOMEM, "read %s", path);
	for (;;) {
		if (n + 1 >= cap) {
			if (cap > max + 1)
				return cells_err_set(err, EFBIG, "%s: over the limit of %zu bytes",
						     path, max);
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb)
				return cells_err_sys(err, ENOMEM, "read %s", path);
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cells_err_sys(err, errno, "read %s", path);
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max)
			return cells_err_set(err, EFBIG, "%s: over the limit of %zu bytes", path,
					     max);
	}
	buf[n] = 0;
	*len = n;
	*out = steal_pointer(&buf);
	return 0;
}

int cells_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int cells_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			    cells_err_t *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
		return cells_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return cells_err_sys(err, errno, "create %s", tmp);
	if (cells_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return cells_err_sys(err, e, "write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return cells_err_sys(err, e, "rename %s", path);
	}
	/* make the rename durable */
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = 0;
	else if (slash)
		*slash = 0;
	else
		strcpy(dir, ".");
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

int cells_mkdir_p(const char *path, mode_t mode, cells_err_t *err)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		return cells_err_set(err, ENAMETOOLONG, "path too long: %s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return cells_err_sys(err, errno, "mkdir %s", buf);
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return cells_err_sys(err, errno, "mkdir %s", buf);
	return 0;
}

static int rm_rf_at(int dfd, dev_t dev, cells_err_t *err)
{
	cleanup_dir DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return cells_err_sys(err, errno, "opendir");
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (st.st_dev != dev)
				return cells_err_set(err, EBUSY, "%s is a mount point", de->d_name);
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return cells_err_sys(err, errno, "open %s", de->d_name);
			if (rm_rf_at(sub, dev, err) < 0)
				return cells_err_prefix(err, "%s", de->d_name);
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0)
				return cells_err_sys(err, errno, "rmdir %s", de->d_name);
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			return cells_err_sys(err, errno, "unlink %s", de->d_name);
		}
	}
	return 0;
}

int cells_rm_rf(const char *path, cells_err_t *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : cells_err_sys(err, errno, "stat %s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0)
			return cells_err_sys(err, errno, "unlink %s", path);
		return 0;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	if (rm_rf_at(fd, st.st_dev, err) < 0)
		return cells_err_prefix(err, "remove %s", path);
	if (rmdir(path) < 0)
		return cells_err_sys(err, errno, "rmdir %s", path);
	return 0;
}

int cells_valid_name(const char *name, cells_err_t *err)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0)
		return cells_err_set(err, EINVAL, "name is empty");
	if (n > 32)
		return cells_err_set(err, EINVAL, "name '%.40s%s' is over 32 characters", name,
				     n > 40 ? "..." : "");
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return cells_err_set(err, EINVAL,
				     "name '%s' must start with a lowercase letter or digit", name);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return cells_err_set(err, EINVAL,
					     "name '%s' may hold only a-z, 0-9, '-' and '_'", name);
	}
	return 0;
}

void cells_hex(const uint8_t *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cells_unhex(const char *in, uint8_t *out, size_t n)
{
	if (strlen(in) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int64_t cells_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cells_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int cells_set_cloexec(int fd)
{
	int f = fcntl(fd, F_GETFD);
	return f < 0 ? -1 : fcntl(fd, F_SETFD, f | FD_CLOEXEC);
}

int cells_set_nonblock(int fd)
{
	int f = fcntl(fd, F_GETFL);
	return f < 0 ? -1 : fcntl(fd, F_SETFL, f | O_NONBLOCK);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

void cells_close_fds_from(int lowfd, const int *keep, size_t nkeep)
{
	int sorted[64];
	size_t n = nkeep < 64 ? nkeep : 64;
	memcpy(sorted, keep, n * sizeof(int));
	qsort(sorted, n, sizeof(int), cmp_int);
	int from = lowfd;
	for (size_t i = 0; i < n; i++) {
		if (sorted[i] < from)
			continue;
		if (sorted[i] > from)
			syscall(SYS_close_range, from, sorted[i] - 1, 0);
		from = sorted[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}
