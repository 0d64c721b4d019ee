/* input.c - delivering input events to the foreground VP only (see display.h).
 *
 * A packet of events (ending with EV_SYN/SYN_REPORT) is written to the FVP's input FIFO
 * with one write() of at most PIPE_BUF bytes, so a reader never sees half a packet and
 * two sources never interleave. A packet stamped with an older foreground generation
 * is dropped; what the leaving VP has not read is discarded at the switch.
 *
 * Each VP's held keys are tracked as it was told them: a release (or repeat) of a key the
 * FVP never saw pressed — a key pressed in another VP before a switch — is not
 * delivered, so a VP never sees a release without its press; a VP that left with a key
 * held gets the release when it is back in front. */
#include "display_int.h"
#include "fg.h"
#include "log.h"
#include "vplock.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#define INPUT_MAX_PACKET (PIPE_BUF / sizeof(struct input_event))

void disp_input_drain(struct disp_vp *v)
{
	char buf[4096];
	ssize_t r;
	size_t n = 0;
	while (v->input_fd >= 0 && (r = read(v->input_fd, buf, sizeof buf)) > 0)
		n += (size_t)r;
	if (n)
		log_debug("input: %s: discarded %zu unread events at the switch", v->name,
			  n / sizeof(struct input_event));
}

int disp_input(struct cellsd *d, const struct input_event *ev, size_t n, uint64_t gen,
	       cells_err_t *err)
{
	struct disp *ds = d->disp;
	if (!ds)
		return cells_err_set(err, ENODEV, "input: no display module");
	if (n == 0 || n > INPUT_MAX_PACKET)
		return cells_err_set(err, EINVAL, "input: packet of %zu events", n);
	if (gen != fg_generation(d)) {
		/* it arrived for a VP that has left the foreground since */
		ds->stale_dropped += n;
		return 0;
	}
	struct disp_vp *v = disp_vp_find(ds, fg_current(d));
	if (!v || v->input_fd < 0 || !v->input_allowed)
		return 0;
	if (vplock_is_locked(d, v->name)) {
		ds->locked_dropped += n; /* a locked VP gets no input (vplock.h) */
		return 0;
	}
	struct input_event out[INPUT_MAX_PACKET];
	uint8_t keys[sizeof v->keys_down];
	memcpy(keys, v->keys_down, sizeof keys);
	size_t m = 0, payload = 0;
	for (size_t i = 0; i < n; i++) {
		if (ev[i].type == EV_KEY && ev[i].code <= KEY_MAX) {
			uint8_t bit = (uint8_t)(1u << (ev[i].code % 8));
			uint8_t *k = &keys[ev[i].code / 8];
			if (ev[i].value != 1 && !(*k & bit))
				continue; /* release/repeat of a key this VP never saw pressed */
			if (ev[i].value == 1)
				*k |= bit;
			else if (ev[i].value == 0)
				*k &= (uint8_t)~bit;
		}
		if (ev[i].type != EV_SYN)
			payload++;
		out[m++] = ev[i];
	}
	if (!payload)
		return 0;
	ssize_t w = write(v->input_fd, out, m * sizeof *out);
	if (w < 0 && errno == EAGAIN) {
		v->in_dropped += m; /* the VP does not read; never block the agent */
		return 0;
	}
	if (w != (ssize_t)(m * sizeof *out))
		return cells_err_sys(err, w < 0 ? errno : EIO, "input: %s", v->name);
	memcpy(v->keys_down, keys, sizeof keys);
	v->in_delivered += m;
	return (int)m;
}
