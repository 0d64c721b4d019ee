/* input_evdev.c - the real input backend: a Linux evdev device grabbed exclusively
 * (EVIOCGRAB, so no host consumer sees the events), read on the event loop, assembled
 * into packets up to SYN_REPORT and handed to disp_input() with the foreground
 * generation of the packet's first event. A packet the kernel reports as dropped
 * (SYN_DROPPED) is discarded whole. */
#include "display_int.h"
#include "fg.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define EVDEV_PACKET (PIPE_BUF / sizeof(struct input_event))

struct evdev {
	struct cellsd *d;
	int fd;
	struct input_event pkt[EVDEV_PACKET];
	size_t n;
	uint64_t gen;
	bool dropping;
};

static void on_events(struct loop *l, int fd, uint32_t events, void *data)
{
	struct evdev *e = data;
	struct input_event buf[64];
	ssize_t r = read(fd, buf, sizeof buf);
	if (r <= 0) {
		if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
			log_error("input: evdev device gone (%s); no more device input",
				  r ? strerror(errno) : "end of file");
			loop_del_fd(l, fd);
		}
		return;
	}
	for (size_t i = 0; i < (size_t)r / sizeof buf[0]; i++) {
		const struct input_event *ev = &buf[i];
		if (ev->type == EV_SYN && ev->code == SYN_DROPPED) {
			e->n = 0;
			e->dropping = true;
			continue;
		}
		if (e->n == 0)
			e->gen = fg_generation(e->d);
		if (e->n < EVDEV_PACKET)
			e->pkt[e->n++] = *ev;
		else
			e->dropping = true; /* oversized packet: not delivered in part */
		if (ev->type == EV_SYN && ev->code == SYN_REPORT) {
			cells_err_t err;
			if (!e->dropping && disp_input(e->d, e->pkt, e->n, e->gen, &err) < 0)
				log_warn("input: %s", err.msg);
			e->n = 0;
			e->dropping = false;
		}
	}
}

static void evdev_close(void *st)
{
	struct evdev *e = st;
	if (!e)
		return;
	if (e->fd >= 0) {
		loop_del_fd(e->d->loop, e->fd);
		ioctl(e->fd, EVIOCGRAB, 0);
		close(e->fd);
	}
	free(e);
}

static int evdev_open(struct cellsd *d, const char *arg, void **out, cells_err_t *err)
{
	if (!arg || !*arg)
		return cells_err_set(err, EINVAL,
				     "evdev: name the device (evdev:/dev/input/eventN)");
	struct evdev *e = calloc(1, sizeof *e);
	if (!e)
		return cells_err_sys(err, ENOMEM, "evdev");
	e->d = d;
	e->fd = open(arg, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (e->fd < 0) {
		cells_err_sys(err, errno, "evdev %s", arg);
		free(e);
		return -1;
	}
	int version;
	if (ioctl(e->fd, EVIOCGVERSION, &version) < 0) {
		cells_err_sys(err, errno, "evdev %s: not an input device", arg);
		goto fail;
	}
	if (ioctl(e->fd, EVIOCGRAB, 1) < 0) {
		cells_err_sys(err, errno, "evdev %s: grab", arg);
		goto fail;
	}
	if (loop_add_fd(d->loop, e->fd, EPOLLIN, on_events, e, err) < 0)
		goto fail;
	*out = e;
	return 0;
fail:
	close(e->fd);
	free(e);
	return -1;
}

const struct disp_input_ops disp_input_evdev = {
    .name = "evdev",
    .open = evdev_open,
    .close = evdev_close,
};
