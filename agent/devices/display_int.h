/* display_int.h - internals shared by the display module's files (display*.c,
 * input*.c): the per-VP devices and the screen and input backend interfaces. */
#ifndef CELLS_DISPLAY_INT_H
#define CELLS_DISPLAY_INT_H

#include "display.h"

#include <sys/types.h>

#define DISP_MAX_VPS 64
#define DISP_FOURCC_XRGB8888 0x34325258u /* 'XR24', as DRM names it */

struct disp_geom {
	uint32_t width, height, stride; /* stride in bytes; format XRGB8888 */
};

/* A VP's framebuffer as the screen sees it: the fd cellsd holds (the same inode
 * whatever the VP does to the name fb0) and its identity. */
struct disp_buf {
	int fd;
	size_t size;
	dev_t dev;
	ino_t ino;
	const char *vp;
};

/* A screen backend. present() makes buf the scanout (NULL: blank); capture() reads
 * what is on the screen as XRGB8888 with stride width*4 into out (n bytes). A backend
 * that needs periodic copies sets refresh_ms and refresh(). */
struct disp_screen_ops {
	const char *name;
	int (*open)(struct cellsd *d, const char *arg, struct disp_geom *g, void **st,
		    cells_err_t *err);
	int (*present)(void *st, const struct disp_buf *buf, uint64_t gen, cells_err_t *err);
	int (*capture)(void *st, uint8_t *out, size_t n, cells_err_t *err);
	unsigned refresh_ms;
	void (*refresh)(void *st);
	void (*close)(void *st);
};

extern const struct disp_screen_ops disp_screen_shm;
extern const struct disp_screen_ops disp_screen_fbdev;

/* An input backend feeding disp_input() from a real device. */
struct disp_input_ops {
	const char *name;
	int (*open)(struct cellsd *d, const char *arg, void **st, cells_err_t *err);
	void (*close)(void *st);
};
extern const struct disp_input_ops disp_input_evdev;

struct disp_vp {
	char name[33];
	int dir_fd;	     /* the devcells directory */
	bool allowed;	     /* the display (policy) */
	bool input_allowed;  /* input (policy) */
	struct disp_buf buf; /* buf.fd -1 when denied */
	int state_fd;	     /* fb0.state */
	int events_fd;	     /* events FIFO, O_RDWR|O_NONBLOCK */
	int input_fd;	     /* input FIFO, O_RDWR|O_NONBLOCK */
	uint64_t in_delivered, in_dropped;
	uint8_t keys_down[KEY_MAX / 8 + 1]; /* keys this VP was told are held */
};

struct disp {
	struct cellsd *d;
	struct disp_geom g;
	const struct disp_screen_ops *screen;
	void *screen_st;
	char screen_spec[64];
	const struct disp_input_ops *input;
	void *input_st;
	char input_spec[128];
	uint64_t refresh_timer;
	struct disp_vp *vps[DISP_MAX_VPS];
	size_t nvps;
	uint64_t switches, stale_dropped;
	struct disp_buf lock_buf; /* the lock screen cellsd draws (vplock.h), fd -1: none */
	uint64_t locked_dropped;  /* input events meant for a locked FVP */
};

struct disp_vp *disp_vp_find(struct disp *ds, const char *vp);

/* display_vp.c: follow the VP runtime's lifecycle (see there). */
void disp_follow_vps(struct cellsd *d);

/* display_png.c: XRGB8888 pixels to a PNG on fd. */
int disp_png_write(int fd, const uint8_t *px, uint32_t w, uint32_t h, uint32_t stride,
		   cells_err_t *err);

/* input.c: discard what a VP has not read from its input FIFO. */
void disp_input_drain(struct disp_vp *v);

/* Read a buffer's pixels (pread: a VP shrinking its file cannot fault cellsd); bytes
 * past the file's end read as black. */
int disp_buf_read(const struct disp_buf *b, uint8_t *out, size_t n, cells_err_t *err);

#endif
