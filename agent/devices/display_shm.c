/* display_shm.c - the headless shared-memory panel screen backend and its reader (see
 * display_shm.h). */
#include "cleanup.h"
#include "display_int.h"
#include "display_shm.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DISP_MAX_DIM 8192u

struct shm_panel {
	char path[PATH_MAX];
	int fd;
	struct disp_panel *p;
	struct disp_geom g;
};

int disp_panel_check(const struct disp_panel *h, cells_err_t *err)
{
	if (memcmp(h->magic, DISP_PANEL_MAGIC, sizeof h->magic))
		return cells_err_set(err, EINVAL, "panel: bad magic");
	if (h->version != DISP_PANEL_VERSION)
		return cells_err_set(err, EPROTONOSUPPORT, "panel: version %u", h->version);
	if (!h->width || !h->height || h->width > DISP_MAX_DIM || h->height > DISP_MAX_DIM)
		return cells_err_set(err, EINVAL, "panel: bad size %ux%u", h->width, h->height);
	if (h->stride / 4 < h->width || h->stride > DISP_MAX_DIM * 4)
		return cells_err_set(err, EINVAL, "panel: bad stride %u", h->stride);
	if (h->format != DISP_FOURCC_XRGB8888)
		return cells_err_set(err, EINVAL, "panel: unknown format 0x%08x", h->format);
	if (h->fd < -1 || (h->fd >= 0 && h->pid <= 0))
		return cells_err_set(err, EINVAL, "panel: bad buffer reference");
	if (h->seq & 1)
		return cells_err_set(err, EAGAIN, "panel: change in progress");
	if (!memchr(h->vp, 0, sizeof h->vp))
		return cells_err_set(err, EINVAL, "panel: unterminated vp name");
	return 0;
}

/* One consistent copy of the header (seqlock read). */
static int panel_snapshot(const struct disp_panel *p, struct disp_panel *out)
{
	for (int i = 0; i < 100000; i++) {
		uint64_t s1 = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		memcpy(out, p, sizeof *out);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&p->seq, __ATOMIC_RELAXED) == s1) {
			out->seq = s1;
			return 0;
		}
	}
	return -1;
}

int disp_panel_read(const char *path, struct disp_panel_view *v, cells_err_t *err)
{
	v->buf_fd = -1;
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return cells_err_sys(err, errno, "panel %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return cells_err_sys(err, errno, "panel %s", path);
	if (!S_ISREG(st.st_mode) || st.st_size != DISP_PANEL_SIZE)
		return cells_err_set(err, EINVAL, "panel %s: not a panel file", path);
	const struct disp_panel *p = mmap(NULL, DISP_PANEL_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return cells_err_sys(err, errno, "panel %s: mmap", path);
	int rc = -1, attempt;
	for (attempt = 0; attempt < 100; attempt++) {
		if (panel_snapshot(p, &v->h) < 0) {
			cells_err_set(err, EBUSY, "panel %s: never stable", path);
			break;
		}
		if (disp_panel_check(&v->h, err) < 0)
			break;
		if (v->h.fd < 0) {
			rc = 0;
			break;
		}
		char bp[64];
		snprintf(bp, sizeof bp, "/proc/%d/fd/%d", v->h.pid, v->h.fd);
		int b = open(bp, O_RDONLY | O_CLOEXEC);
		struct stat bs;
		if (b >= 0 && fstat(b, &bs) == 0 && S_ISREG(bs.st_mode) &&
		    (uint64_t)bs.st_dev == v->h.dev && (uint64_t)bs.st_ino == v->h.ino) {
			/* still the same flip? otherwise the fd may have been reused */
			if (__atomic_load_n(&p->seq, __ATOMIC_ACQUIRE) == v->h.seq) {
				v->buf_fd = b;
				rc = 0;
				break;
			}
		}
		if (b >= 0)
			close(b);
		if (__atomic_load_n(&p->seq, __ATOMIC_ACQUIRE) == v->h.seq) {
			cells_err_set(err, ESTALE, "panel %s: scanout buffer is gone", path);
			break;
		}
	}
	if (attempt == 100)
		cells_err_set(err, EBUSY, "panel %s: kept changing", path);
	munmap((void *)p, DISP_PANEL_SIZE);
	return rc;
}

static int parse_size(const char *arg, struct disp_geom *g, cells_err_t *err)
{
	unsigned w = 1080, h = 2400;
	char extra;
	if (arg && *arg &&
	    (sscanf(arg, "%ux%u%c", &w, &h, &extra) != 2 || !w || !h || w > DISP_MAX_DIM ||
	     h > DISP_MAX_DIM))
		return cells_err_set(err, EINVAL, "display size '%s': want WxH, at most %ux%u", arg,
				     DISP_MAX_DIM, DISP_MAX_DIM);
	g->width = w;
	g->height = h;
	g->stride = w * 4;
	return 0;
}

static void shm_close(void *st)
{
	struct shm_panel *s = st;
	if (!s)
		return;
	if (s->p)
		munmap(s->p, DISP_PANEL_SIZE);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static void shm_write(struct shm_panel *s, const struct disp_buf *buf, uint64_t gen)
{
	struct disp_panel *p = s->p;
	uint64_t seq = p->seq;
	__atomic_store_n(&p->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	p->fd = buf ? buf->fd : -1;
	p->dev = buf ? (uint64_t)buf->dev : 0;
	p->ino = buf ? (uint64_t)buf->ino : 0;
	p->gen = gen;
	memset(p->vp, 0, sizeof p->vp);
	if (buf)
		snprintf(p->vp, sizeof p->vp, "%s", buf->vp);
	__atomic_store_n(&p->seq, seq + 2, __ATOMIC_RELEASE);
}

static int shm_open_panel(struct cellsd *d, const char *arg, struct disp_geom *g, void **out,
			  cells_err_t *err)
{
	if (parse_size(arg, g, err) < 0)
		return -1;
	struct shm_panel *s = calloc(1, sizeof *s);
	if (!s)
		return cells_err_sys(err, ENOMEM, "panel");
	s->fd = -1;
	s->g = *g;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/display", d->run_dir);
	snprintf(s->path, sizeof s->path, "%s/panel", dir);
	if (cells_mkdir_p(dir, 0700, err) < 0)
		goto fail;
	unlink(s->path);
	s->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (s->fd < 0 || ftruncate(s->fd, DISP_PANEL_SIZE) < 0) {
		cells_err_sys(err, errno, "panel %s", s->path);
		goto fail;
	}
	s->p = mmap(NULL, DISP_PANEL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->p == MAP_FAILED) {
		s->p = NULL;
		cells_err_sys(err, errno, "panel %s: mmap", s->path);
		goto fail;
	}
	memcpy(s->p->magic, DISP_PANEL_MAGIC, sizeof s->p->magic);
	s->p->version = DISP_PANEL_VERSION;
	s->p->width = g->width;
	s->p->height = g->height;
	s->p->stride = g->stride;
	s->p->format = DISP_FOURCC_XRGB8888;
	s->p->pid = getpid();
	shm_write(s, NULL, 0);
	*out = s;
	return 0;
fail:
	shm_close(s);
	return -1;
}

/* The flip: the panel now names the incoming buffer. No pixel is copied, and there is
 * no moment at which the panel names anything but the old or the new FVP's buffer. */
static int shm_present(void *st, const struct disp_buf *buf, uint64_t gen, cells_err_t *err)
{
	shm_write(st, buf, gen);
	return 0;
}

/* What is on the screen: read the panel as any reader would, then the buffer it names. */
static int shm_capture(void *st, uint8_t *out, size_t n, cells_err_t *err)
{
	struct shm_panel *s = st;
	struct disp_panel_view v;
	if (disp_panel_read(s->path, &v, err) < 0)
		return -1;
	if (v.buf_fd < 0) {
		memset(out, 0, n);
		return 0;
	}
	struct disp_buf b = {.fd = v.buf_fd, .size = n};
	int r = disp_buf_read(&b, out, n, err);
	close(v.buf_fd);
	return r;
}

const struct disp_screen_ops disp_screen_shm = {
    .name = "shm",
    .open = shm_open_panel,
    .present = shm_present,
    .capture = shm_capture,
    .close = shm_close,
};
