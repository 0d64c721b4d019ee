/* loop.h - cellsd's single event loop (epoll): fd watches, timers and child pidfds.
 * Callbacks run on the loop thread; a callback may remove its own watch. */
#ifndef CELLS_LOOP_H
#define CELLS_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct loop;
struct loop_watch;
typedef void (*loop_fd_cb)(struct loop *l, int fd, uint32_t events, void *data);
typedef void (*loop_timer_cb)(struct loop *l, void *data);

struct loop *loop_new(cells_err_t *err);
void loop_free(struct loop *l);
/* Watch fd for events (EPOLLIN...). The fd stays owned by the caller. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *data,
		cells_err_t *err);
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
void loop_del_fd(struct loop *l, int fd);
/* One-shot timer after ms milliseconds; returns an id usable with loop_cancel_timer. */
uint64_t loop_add_timer(struct loop *l, uint64_t ms, loop_timer_cb cb, void *data);
void loop_cancel_timer(struct loop *l, uint64_t id);
/* Run until loop_quit(); returns 0. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l);
bool loop_quitting(struct loop *l);

#endif
