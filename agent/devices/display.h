/* display.h - display and input virtualization (the paper's mux_fb, done with a flip).
 *
 * Every running VP gets, in its /dev/cells (the host-side devcells directory):
 *   fb0           a regular file of STRIDE*HEIGHT bytes, XRGB8888: the VP's own
 *                 framebuffer, which it mmaps or writes; it always renders into it;
 *   fb0.geometry  one line "WIDTH HEIGHT STRIDE FORMAT\n";
 *   fb0.state     "foreground\n", "background\n" or "denied\n";
 *   events        a FIFO of lines "foreground GEN\n" / "background GEN\n" on each change;
 *   input         a FIFO of Linux `struct input_event`s, written only while the VP is
 *                 in the foreground.
 * Only the foreground VP's buffer is ever the screen's scanout: a switch (an fg.h
 * listener) makes the incoming VP's buffer the scanout in one step — on the headless
 * shm panel a flip that copies no pixel, on fbdev one copy and a pan — discards input
 * the leaving VP has not read yet, and tells both VPs. Input events are stamped with the
 * foreground generation when they arrive and dropped when a switch happened before
 * they could be delivered.
 *
 * Screens (DISPLAY SPEC): "shm[:WxH]" (default 1080x2400; RUN_DIR/display/panel, see
 * display_shm.c), "fbdev[:/dev/fbN]" (the real framebuffer). Input (INPUT SPEC):
 * "none" (only `cellctl input`) or "evdev:/dev/input/eventN" (grabbed exclusively).
 *
 * The display is foreground-bound and never shared; GPU render nodes (/dev/dri/renderD*)
 * carry no display state and are a separate, shareable device class (docs/DEVICES.md).
 * All functions run on cellsd's loop thread. Strings are borrowed. */
#ifndef CELLS_DISPLAY_H
#define CELLS_DISPLAY_H

#include <linux/input.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "cellsd.h"
#include "err.h"

struct disp;

/* Set up d->disp (needs d->fg): open the screen and the input backend, follow the
 * foreground. screen/input may be NULL for the defaults ("shm", "none"). */
int disp_init(struct cellsd *d, const char *screen, const char *input, cells_err_t *err);
void disp_shutdown(struct cellsd *d);

/* A VP starts / stops: create (remove) its display and input devices in devcells_dir. */
int disp_vp_up(struct cellsd *d, const char *vp, const char *devcells_dir, cells_err_t *err);
void disp_vp_down(struct cellsd *d, const char *vp);
/* Grant or deny a VP the display. The policy does this through the "display" enforcer
 * (device classes display and input: no-access denies, shared/exclusive grant; a VP
 * that no policy names gets both). Denying removes fb0 and truncates the buffer,
 * so a mapping the VP already holds faults instead of drawing; the screen shows black
 * while such a VP is in front. */
int disp_set_allowed(struct cellsd *d, const char *vp, bool allowed, cells_err_t *err);

/* The lock screen, shown instead of a locked FVP's frame (vplock.h): a checkerboard of
 * DISP_LOCK_TILE-pixel squares, DISP_LOCK_BG at (0,0), DISP_LOCK_FG next to it (XRGB). */
#define DISP_LOCK_TILE 32u
#define DISP_LOCK_BG 0x00102a43u
#define DISP_LOCK_FG 0x00f0a000u
/* A VP's lock changes reach the display through vplock_add_listener (registered in
 * disp_init): its unread input is discarded and the lock screen or its frame is put up
 * when it is in front. */

/* Write what is on the screen as a PNG to fd (borrowed); info gets width/height/vp. */
int disp_screenshot(struct cellsd *d, int fd, json_object *info, cells_err_t *err);
/* Deliver a packet of events (the caller ends it with EV_SYN) that arrived at foreground
 * generation gen to the FVP. Returns the number of events delivered: 0 when there is no
 * FVP, the packet is stale, or the VP's queue is full (counted as dropped). */
int disp_input(struct cellsd *d, const struct input_event *ev, size_t n, uint64_t gen,
	       cells_err_t *err);
/* The screen's size (-1 without a display module). */
int disp_size(struct cellsd *d, uint32_t *width, uint32_t *height);
/* State for `cellctl display status` (a new object). */
json_object *disp_describe(struct cellsd *d);

#endif
