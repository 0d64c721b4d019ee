#include "loop.h"
#include "cleanup.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct fdw {
	int fd;
	loop_fd_cb cb;
	void *data;
	struct fdw *next;
};

struct timer {
	uint64_t id;
	int64_t due_ns;
	loop_timer_cb cb;
	void *data;
	struct timer *next;
};

struct loop {
	int epfd;
	bool quit;
	struct fdw *fds;
	struct timer *timers;
	uint64_t next_timer;
};

struct loop *loop_new(cells_err_t *err)
{
	struct loop *l = calloc(1, sizeof *l);
	if (!l) {
		cells_err_sys(err, ENOMEM, "loop");
		return NULL;
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		cells_err_sys(err, errno, "epoll_create1");
		free(l);
		return NULL;
	}
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	while (l->fds) {
		struct fdw *n = l->fds->next;
		free(l->fds);
		l->fds = n;
	}
	while (l->timers) {
		struct timer *n = l->timers->next;
		free(l->timers);
		l->timers = n;
	}
	close(l->epfd);
	free(l);
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *data,
		cells_err_t *err)
{
	struct fdw *w = calloc(1, sizeof *w);
	if (!w)
		return cells_err_sys(err, ENOMEM, "loop watch");
	w->fd = fd;
	w->cb = cb;
	w->data = data;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(w);
		return cells_err_sys(err, errno, "epoll add fd %d", fd);
	}
	w->next = l->fds;
	l->fds = w;
	return 0;
}

static struct fdw *find_fd(struct loop *l, int fd)
{
	for (struct fdw *w = l->fds; w; w = w->next)
		if (w->fd == fd && w->cb)
			return w;
	return NULL;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
	struct fdw *w = find_fd(l, fd);
	if (!w)
		return -1;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void loop_del_fd(struct loop *l, int fd)
{
	struct fdw *w = find_fd(l, fd);
	if (!w)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->cb = NULL; /* reaped after the current dispatch round */
}

uint64_t loop_add_timer(struct loop *l, uint64_t ms, loop_timer_cb cb, void *data)
{
	struct timer *t = calloc(1, sizeof *t);
	if (!t)
		return 0;
	t->id = ++l->next_timer;
	t->due_ns = cells_mono_ns() + (int64_t)ms * 1000000;
	t->cb = cb;
	t->data = data;
	t->next = l->timers;
	l->timers = t;
	return t->id;
}

void loop_cancel_timer(struct loop *l, uint64_t id)
{
	for (struct timer **pp = &l->timers; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			struct timer *t = *pp;
			*pp = t->next;
			free(t);
			return;
		}
	}
}

static int next_timeout_ms(struct loop *l)
{
	if (!l->timers)
		return -1;
	int64_t now = cells_mono_ns(), min = INT64_MAX;
	for (struct timer *t = l->timers; t; t = t->next)
		if (t->due_ns < min)
			min = t->due_ns;
	int64_t ms = (min - now + 999999) / 1000000;
	return ms < 0 ? 0 : (ms > 60000 ? 60000 : (int)ms);
}

static void run_timers(struct loop *l)
{
	int64_t now = cells_mono_ns();
	for (;;) {
		struct timer **pp, *due = NULL;
		for (pp = &l->timers; *pp; pp = &(*pp)->next)
			if ((*pp)->due_ns <= now) {
				due = *pp;
				*pp = due->next;
				break;
			}
		if (!due)
			return;
		due->cb(l, due->data);
		free(due);
	}
}

static void reap_watches(struct loop *l)
{
	for (struct fdw **pp = &l->fds; *pp;) {
		if (!(*pp)->cb) {
			struct fdw *w = *pp;
			*pp = w->next;
			free(w);
		} else {
			pp = &(*pp)->next;
		}
	}
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[32];
	while (!l->quit) {
		int n = epoll_wait(l->epfd, evs, 32, next_timeout_ms(l));
		if (n < 0 && errno != EINTR)
			return -1;
		for (int i = 0; i < n; i++) {
			struct fdw *w = evs[i].data.ptr;
			if (w->cb)
				w->cb(l, w->fd, evs[i].events, w->data);
		}
		reap_watches(l);
		run_timers(l);
	}
	return 0;
}

void loop_quit(struct loop *l)
{
	l->quit = true;
}

bool loop_quitting(struct loop *l)
{
	return l->quit;
}
