/* display_shm.h - the headless shared-memory panel: the screen of hosts without a
 * display (this VM, CI), and its format for readers (screenshots, tests, benchmarks).
 *
 * RUN_DIR/display/panel is a 4096-byte file holding one struct disp_panel. It does not
 * hold pixels: it names the scanout buffer, which is the foreground VP's own fb0, by
 * identity — the pid of cellsd and the number of the fd cellsd holds on it
 * (/proc/PID/fd/FD), checked against st_dev/st_ino — so a switch is a flip that copies
 * no pixel, and a VP renaming or replacing its fb0 cannot redirect a reader. fd -1: the
 * screen is black. Writers update it under a seqlock: `seq` is odd while a change is in
 * progress; readers retry until they see the same even value before and after. */
#ifndef CELLS_DISPLAY_SHM_H
#define CELLS_DISPLAY_SHM_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define DISP_PANEL_MAGIC "CELLSPNL"
#define DISP_PANEL_VERSION 1u
#define DISP_PANEL_SIZE 4096u

struct disp_panel {
	char magic[8];	  /* "CELLSPNL" */
	uint32_t version; /* 1 */
	uint32_t width, height, stride;
	uint32_t format; /* DRM fourcc, XR24 */
	int32_t pid;	 /* cellsd */
	int32_t fd;	 /* scanout buffer's fd in pid; -1: black */
	uint32_t pad;
	uint64_t seq;	   /* seqlock */
	uint64_t gen;	   /* foreground generation on the screen */
	uint64_t dev, ino; /* identity of the scanout buffer */
	char vp[33];	   /* the VP whose buffer it is (for operators and tests) */
};

/* A consistent view of the panel: header copy and an open fd (owned, -1 when black) of
 * the scanout buffer, verified against the header's identity. */
struct disp_panel_view {
	struct disp_panel h;
	int buf_fd;
};

/* Read the panel at path (size-checked, magic, version, geometry within limits). */
int disp_panel_read(const char *path, struct disp_panel_view *v, cells_err_t *err);
/* Validate a header's fields (the parser shared with the fuzz target). */
int disp_panel_check(const struct disp_panel *h, cells_err_t *err);

#endif
