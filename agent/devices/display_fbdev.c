/* display_fbdev.c - the real screen backend: a Linux framebuffer (/dev/fbN).
 *
 * The VPs' buffers have the panel's visible size (xres x yres, XRGB8888). A fbdev has
 * no way to scan out a VP's own memory, so the FVP's frame is copied: once at the
 * switch, then at each refresh (60 Hz) — one pread() from the FVP's buffer straight into
 * the framebuffer memory, never from any other VP's buffer. When the framebuffer has
 * room for two pages (yres_virtual >= 2*yres) the copy goes to the hidden page and
 * FBIOPAN_DISPLAY flips to it, so no half-copied frame is ever shown; otherwise it is
 * copied in place. Needs a 32 bpp framebuffer with XRGB8888 channel layout. */
#include "cleanup.h"
#include "display_int.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct fbdev {
	int fd;
	uint8_t *mem;
	size_t mem_len;
	struct fb_var_screeninfo var;
	uint32_t line; /* bytes per framebuffer line */
	bool can_pan;
	unsigned front; /* visible page (0/1) */
	struct disp_geom g;
	struct disp_buf cur; /* cur.fd -1: black */
};

static void fbdev_close(void *st)
{
	struct fbdev *f = st;
	if (!f)
		return;
	if (f->mem)
		munmap(f->mem, f->mem_len);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

static int fbdev_open(struct cellsd *d, const char *arg, struct disp_geom *g, void **out,
		      cells_err_t *err)
{
	const char *path = arg && *arg ? arg : "/dev/fb0";
	struct fbdev *f = calloc(1, sizeof *f);
	if (!f)
		return cells_err_sys(err, ENOMEM, "fbdev");
	f->cur.fd = -1;
	f->fd = open(path, O_RDWR | O_CLOEXEC);
	struct fb_fix_screeninfo fix;
	if (f->fd < 0 || ioctl(f->fd, FBIOGET_VSCREENINFO, &f->var) < 0 ||
	    ioctl(f->fd, FBIOGET_FSCREENINFO, &fix) < 0) {
		cells_err_sys(err, errno, "%s", path);
		goto fail;
	}
	if (f->var.bits_per_pixel != 32 || f->var.red.offset != 16 || f->var.green.offset != 8 ||
	    f->var.blue.offset != 0) {
		cells_err_set(err, ENOTSUP, "%s: %u bpp, not XRGB8888", path,
			      f->var.bits_per_pixel);
		goto fail;
	}
	f->line = fix.line_length;
	f->mem_len = fix.smem_len;
	if (f->line < f->var.xres * 4 || (size_t)f->line * f->var.yres > f->mem_len) {
		cells_err_set(err, EINVAL, "%s: inconsistent geometry", path);
		goto fail;
	}
	f->mem = mmap(NULL, f->mem_len, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (f->mem == MAP_FAILED) {
		f->mem = NULL;
		cells_err_sys(err, errno, "%s: mmap", path);
		goto fail;
	}
	f->can_pan = f->var.yres_virtual >= 2 * f->var.yres &&
		     (size_t)f->line * f->var.yres * 2 <= f->mem_len && fix.ypanstep != 0;
	f->g = (struct disp_geom){f->var.xres, f->var.yres, f->var.xres * 4};
	*g = f->g;
	*out = f;
	return 0;
fail:
	fbdev_close(f);
	return -1;
}

static uint8_t *page(struct fbdev *f, unsigned p)
{
	return f->mem + (size_t)p * f->line * f->g.height;
}

/* Copy the FVP's frame (or black) onto the screen, flipping when possible. */
static void show(struct fbdev *f)
{
	unsigned target = f->can_pan ? !f->front : f->front;
	uint8_t *dst = page(f, target);
	for (uint32_t y = 0; y < f->g.height; y++) {
		uint8_t *row = dst + (size_t)y * f->line;
		ssize_t r =
		    f->cur.fd >= 0 ? pread(f->cur.fd, row, f->g.stride, (off_t)y * f->g.stride) : 0;
		if (r < (ssize_t)f->g.stride)
			memset(row + (r > 0 ? r : 0), 0, f->g.stride - (size_t)(r > 0 ? r : 0));
	}
	if (f->can_pan) {
		struct fb_var_screeninfo v = f->var;
		v.yoffset = target * f->g.height;
		if (ioctl(f->fd, FBIOPAN_DISPLAY, &v) == 0)
			f->front = target;
		else
			f->can_pan = false; /* copy in place from now on */
	}
}

static int fbdev_present(void *st, const struct disp_buf *buf, uint64_t gen, cells_err_t *err)
{
	struct fbdev *f = st;
	f->cur = buf ? *buf : (struct disp_buf){.fd = -1};
	show(f);
	return 0;
}

static void fbdev_refresh(void *st)
{
	struct fbdev *f = st;
	if (f->cur.fd >= 0)
		show(f);
}

static int fbdev_capture(void *st, uint8_t *out, size_t n, cells_err_t *err)
{
	struct fbdev *f = st;
	if (n < (size_t)f->g.stride * f->g.height)
		return cells_err_set(err, EINVAL, "fbdev capture: buffer too small");
	const uint8_t *src = page(f, f->front);
	for (uint32_t y = 0; y < f->g.height; y++)
		memcpy(out + (size_t)y * f->g.stride, src + (size_t)y * f->line, f->g.stride);
	return 0;
}

const struct disp_screen_ops disp_screen_fbdev = {
    .name = "fbdev",
    .open = fbdev_open,
    .present = fbdev_present,
    .capture = fbdev_capture,
    .refresh_ms = 16,
    .refresh = fbdev_refresh,
    .close = fbdev_close,
};
