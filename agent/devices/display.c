/* display.c - per-VP framebuffers, the foreground switch of the screen, screenshots
 * (see display.h). */
#include "cleanup.h"
#include "display_int.h"
#include "enforce.h"
#include "fg.h"
#include "log.h"
#include "policy_engine.h"
#include "util.h"
#include "vplock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct disp_screen_ops *const screens[] = {&disp_screen_shm, &disp_screen_fbdev};
static const struct disp_input_ops *const inputs[] = {&disp_input_evdev};

struct disp_vp *disp_vp_find(struct disp *ds, const char *vp)
{
	for (size_t i = 0; ds && vp && i < ds->nvps; i++)
		if (!strcmp(ds->vps[i]->name, vp))
			return ds->vps[i];
	return NULL;
}

int disp_buf_read(const struct disp_buf *b, uint8_t *out, size_t n, cells_err_t *err)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(b->fd, out + got, n - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cells_err_sys(err, errno, "read framebuffer");
		if (r == 0)
			break;
		got += (size_t)r;
	}
	memset(out + got, 0, n - got);
	return 0;
}

/* Write a small file's whole content through a held fd. */
static void put_text(int fd, const char *s)
{
	if (fd < 0)
		return;
	size_t n = strlen(s);
	if (pwrite(fd, s, n, 0) != (ssize_t)n || ftruncate(fd, (off_t)n) < 0)
		log_warn("display: cannot update a VP's state file: %s", strerror(errno));
}

static void notify(struct disp_vp *v, const char *state, uint64_t gen)
{
	char line[64];
	snprintf(line, sizeof line, "%s\n", !v->allowed ? "denied" : state);
	put_text(v->state_fd, line);
	int n = snprintf(line, sizeof line, "%s %llu\n", state, (unsigned long long)gen);
	/* non-blocking: a VP that never reads its events loses them, never blocks us */
	if (v->events_fd >= 0 && write(v->events_fd, line, (size_t)n) < 0 && errno != EAGAIN)
		log_warn("display: %s: events: %s", v->name, strerror(errno));
}

/* Put the FVP's buffer (or black) on the screen. If the screen cannot show it, show
 * black: never leave another VP's frame up. */
static void present_fvp(struct disp *ds)
{
	struct cellsd *d = ds->d;
	struct disp_vp *v = disp_vp_find(ds, fg_current(d));
	const struct disp_buf *b = v && v->allowed && v->buf.fd >= 0 ? &v->buf : NULL;
	if (v && vplock_is_locked(d, v->name))
		b = ds->lock_buf.fd >= 0 ? &ds->lock_buf : NULL; /* never a locked VP's frame */
	cells_err_t err = {0};
	if (ds->screen->present(ds->screen_st, b, fg_generation(d), &err) < 0) {
		log_error("display: present %s: %s; blanking", b ? b->vp : "black", err.msg);
		if (ds->screen->present(ds->screen_st, NULL, fg_generation(d), &err) < 0)
			log_error("display: cannot blank the screen: %s", err.msg);
	}
}

/* vplock's listener: vp was locked or unlocked: discard its unread input, put the lock
 * screen or its frame up when it is in front. */
static void lock_changed(struct cellsd *d, const char *vp)
{
	struct disp *ds = d->disp;
	struct disp_vp *v = ds ? disp_vp_find(ds, vp) : NULL;
	if (!v)
		return;
	disp_input_drain(v);
	const char *fvp = fg_current(d);
	if (fvp && !strcmp(fvp, vp))
		present_fvp(ds);
}

/* Draw the lock screen into a sealed memfd cellsd holds (a VP cannot reach it). */
static int lock_screen_create(struct disp *ds, cells_err_t *err)
{
	ds->lock_buf.fd = -1;
	size_t stride = (size_t)ds->g.width * 4, n = stride * ds->g.height;
	cleanup_close int fd = memfd_create("cells-lockscreen", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)n) < 0)
		return cells_err_sys(err, errno, "display: lock screen");
	cleanup_free uint32_t *row = malloc(stride);
	if (!row)
		return cells_err_sys(err, ENOMEM, "display: lock screen");
	for (uint32_t y = 0; y < ds->g.height; y++) {
		for (uint32_t x = 0; x < ds->g.width; x++)
			row[x] = ((x / DISP_LOCK_TILE + y / DISP_LOCK_TILE) & 1) ? DISP_LOCK_FG
										 : DISP_LOCK_BG;
		if (pwrite(fd, row, stride, (off_t)(stride * y)) != (ssize_t)stride)
			return cells_err_sys(err, errno, "display: lock screen");
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return cells_err_sys(err, errno, "display: lock screen: seal");
	struct stat st;
	if (fstat(fd, &st) < 0)
		return cells_err_sys(err, errno, "display: lock screen");
	ds->lock_buf = (struct disp_buf){
	    .fd = fd, .size = n, .dev = st.st_dev, .ino = st.st_ino, .vp = "(locked)"};
	fd = -1;
	return 0;
}

/* The switch (an fg listener): the generation has already moved on, so events stamped
 * for the leaving VP are stale; discard what it has not read; flip; notify. */
static void on_foreground(struct cellsd *d, const char *old_vp, const char *new_vp, void *data)
{
	struct disp *ds = data;
	uint64_t gen = fg_generation(d);
	struct disp_vp *o = disp_vp_find(ds, old_vp), *n = disp_vp_find(ds, new_vp);
	if (o)
		disp_input_drain(o);
	present_fvp(ds);
	ds->switches++;
	if (o)
		notify(o, "background", gen);
	if (n)
		notify(n, "foreground", gen);
}

/* May a VP with this rule use a device class? No policy naming the VP: yes; a rule
 * that does not name the class: no (the policy's "classes not named get NO_ACCESS"). */
static bool class_allowed(const struct pol_vp_rule *r, const char *cls)
{
	return !r || pol_model_device_mode(r, cls) != CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS;
}

/* The enforcer of the display and input classes: grant or revoke each running VP's
 * framebuffer and input live. */
static int disp_enforce(struct cellsd *d, const struct pol_model *nw, const struct pol_model *old,
			cells_err_t *err)
{
	struct disp *ds = d->disp;
	for (size_t i = 0; ds && i < ds->nvps; i++) {
		struct disp_vp *v = ds->vps[i];
		const struct pol_vp_rule *r = pol_model_vp(nw, v->name);
		if (disp_set_allowed(d, v->name, class_allowed(r, "display"), err) < 0)
			return -1;
		v->input_allowed = class_allowed(r, "input");
	}
	return 0;
}

static void on_refresh(struct loop *l, void *data)
{
	struct disp *ds = data;
	ds->screen->refresh(ds->screen_st);
	ds->refresh_timer = loop_add_timer(l, ds->screen->refresh_ms, on_refresh, ds);
}

static int pick(const char *spec, const char *const *names, size_t n, size_t *idx, const char **arg)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]);
		if (!strncmp(spec, names[i], len) && (spec[len] == 0 || spec[len] == ':')) {
			*idx = i;
			*arg = spec[len] ? spec + len + 1 : NULL;
			return 0;
		}
	}
	return -1;
}

int disp_init(struct cellsd *d, const char *screen, const char *input, cells_err_t *err)
{
	if (!screen)
		screen = "shm";
	if (!input)
		input = "none";
	if (vplock_add_listener(lock_changed, err) < 0)
		return -1;
	struct disp *ds = calloc(1, sizeof *ds);
	if (!ds)
		return cells_err_sys(err, ENOMEM, "display");
	ds->d = d;
	ds->lock_buf.fd = -1;
	snprintf(ds->screen_spec, sizeof ds->screen_spec, "%s", screen);
	snprintf(ds->input_spec, sizeof ds->input_spec, "%s", input);
	const char *names[CELLS_ARRAY_SIZE(screens)], *arg;
	size_t i;
	for (i = 0; i < CELLS_ARRAY_SIZE(screens); i++)
		names[i] = screens[i]->name;
	if (pick(screen, names, CELLS_ARRAY_SIZE(screens), &i, &arg) < 0) {
		free(ds);
		return cells_err_set(err, EINVAL,
				     "display '%s': want shm[:WxH] or fbdev[:/dev/fbN]", screen);
	}
	ds->screen = screens[i];
	if (ds->screen->open(d, arg, &ds->g, &ds->screen_st, err) < 0) {
		free(ds);
		return cells_err_prefix(err, "display %s", screen);
	}
	d->disp = ds;
	if (lock_screen_create(ds, err) < 0) {
		disp_shutdown(d);
		return -1;
	}
	if (strcmp(input, "none")) {
		const char *inames[CELLS_ARRAY_SIZE(inputs)];
		for (i = 0; i < CELLS_ARRAY_SIZE(inputs); i++)
			inames[i] = inputs[i]->name;
		if (pick(input, inames, CELLS_ARRAY_SIZE(inputs), &i, &arg) < 0) {
			disp_shutdown(d);
			return cells_err_set(
			    err, EINVAL, "input '%s': want none or evdev:/dev/input/eventN", input);
		}
		ds->input = inputs[i];
		if (ds->input->open(d, arg, &ds->input_st, err) < 0) {
			ds->input = NULL;
			disp_shutdown(d);
			return cells_err_prefix(err, "input %s", input);
		}
	}
	static const struct enforcer enf = {"display", disp_enforce};
	if (d->pe && enforce_register(d, &enf, err) < 0) {
		disp_shutdown(d);
		return -1;
	}
	if (fg_add_listener(d, on_foreground, ds) < 0) {
		disp_shutdown(d);
		return cells_err_set(err, ENOSPC, "display: cannot follow the foreground");
	}
	disp_follow_vps(d);
	if (ds->screen->refresh)
		ds->refresh_timer = loop_add_timer(d->loop, ds->screen->refresh_ms, on_refresh, ds);
	log_info("display: %s %ux%u XRGB8888, input %s", ds->screen->name, ds->g.width,
		 ds->g.height, input);
	return 0;
}

static void vp_free(struct disp_vp *v)
{
	if (!v)
		return;
	int fds[] = {v->dir_fd, v->buf.fd, v->state_fd, v->events_fd, v->input_fd};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(v);
}

void disp_shutdown(struct cellsd *d)
{
	struct disp *ds = d->disp;
	if (!ds)
		return;
	if (ds->refresh_timer)
		loop_cancel_timer(d->loop, ds->refresh_timer);
	if (ds->input)
		ds->input->close(ds->input_st);
	if (ds->screen_st) {
		cells_err_t err;
		ds->screen->present(ds->screen_st, NULL, 0, &err);
		ds->screen->close(ds->screen_st);
	}
	for (size_t i = 0; i < ds->nvps; i++)
		vp_free(ds->vps[i]);
	if (ds->lock_buf.fd >= 0)
		close(ds->lock_buf.fd);
	free(ds);
	d->disp = NULL;
}

/* Create (O_EXCL, never following a name the VP planted) a file or FIFO in the VP's
 * devcells directory and open it. */
static int make_node(int dir, const char *name, bool fifo, mode_t mode, int flags, cells_err_t *err)
{
	if (unlinkat(dir, name, 0) < 0 && errno != ENOENT)
		return cells_err_sys(err, errno, "remove stale %s", name);
	if (fifo) {
		if (mkfifoat(dir, name, mode) < 0)
			return cells_err_sys(err, errno, "mkfifo %s", name);
		int fd = openat(dir, name, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return cells_err_sys(err, errno, "open %s", name);
		return fd;
	}
	int fd = openat(dir, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return cells_err_sys(err, errno, "create %s", name);
	if (fchmod(fd, mode) < 0) { /* the umask must not narrow what the VP sees */
		close(fd);
		return cells_err_sys(err, errno, "chmod %s", name);
	}
	return fd;
}

/* The fb0 a VP already has (cellsd restarted while the VP ran): reused when it is a
 * plain file of the right size, so the VP's mapping stays on the screen. Looked at
 * through O_PATH first: opening whatever node the VP planted there (a device) could
 * have side effects. -1 when there is none to reuse. */
static int buf_adopt(int dir, size_t size)
{
	cleanup_close int pfd = openat(dir, "fb0", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (pfd < 0 || fstat(pfd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    (size_t)st.st_size != size)
		return -1;
	char p[64];
	snprintf(p, sizeof p, "/proc/self/fd/%d", pfd);
	return open(p, O_RDWR | O_CLOEXEC);
}

/* Create (or, with adopt, take over) the VP's framebuffer and its geometry file. */
static int buf_create(struct disp *ds, struct disp_vp *v, bool adopt, cells_err_t *err)
{
	size_t size = (size_t)ds->g.stride * ds->g.height;
	cleanup_close int fd = adopt ? buf_adopt(v->dir_fd, size) : -1;
	if (fd < 0)
		fd = make_node(v->dir_fd, "fb0", false, 0660, O_RDWR, err);
	if (fd < 0)
		return -1;
	struct stat st;
	if (ftruncate(fd, (off_t)size) < 0 || fstat(fd, &st) < 0)
		return cells_err_sys(err, errno, "size fb0");
	char line[96];
	int n = snprintf(line, sizeof line, "%u %u %u XRGB8888\n", ds->g.width, ds->g.height,
			 ds->g.stride);
	cleanup_close int gfd = make_node(v->dir_fd, "fb0.geometry", false, 0444, O_WRONLY, err);
	if (gfd < 0)
		return -1;
	if (cells_write_all(gfd, line, (size_t)n) < 0)
		return cells_err_sys(err, errno, "write fb0.geometry");
	v->buf = (struct disp_buf){
	    .fd = take_fd(&fd), .size = size, .dev = st.st_dev, .ino = st.st_ino, .vp = v->name};
	return 0;
}

/* Revoke: nothing of the buffer stays reachable. Shrinking the file makes every mapping
 * of it fault (SIGBUS) on the next access, so a VP cannot keep drawing through an old
 * mmap; the names go away so it cannot map it again. */
static void buf_revoke(struct disp_vp *v)
{
	if (v->buf.fd >= 0) {
		if (ftruncate(v->buf.fd, 0) < 0)
			log_warn("display: %s: truncate fb0: %s", v->name, strerror(errno));
		close(v->buf.fd);
		v->buf.fd = -1;
	}
	unlinkat(v->dir_fd, "fb0", 0);
	unlinkat(v->dir_fd, "fb0.geometry", 0);
}

int disp_vp_up(struct cellsd *d, const char *vp, const char *devcells_dir, cells_err_t *err)
{
	struct disp *ds = d->disp;
	if (!ds)
		return 0;
	if (cells_valid_name(vp, err) < 0)
		return -1;
	if (disp_vp_find(ds, vp))
		return 0;
	if (ds->nvps >= DISP_MAX_VPS)
		return cells_err_set(err, ENOSPC, "display: too many VPs");
	struct disp_vp *v = calloc(1, sizeof *v);
	if (!v)
		return cells_err_sys(err, ENOMEM, "display");
	snprintf(v->name, sizeof v->name, "%s", vp);
	v->buf.fd = v->state_fd = v->events_fd = v->input_fd = -1;
	const struct pol_vp_rule *rule = policy_vp_rule(d, vp);
	v->allowed = class_allowed(rule, "display");
	v->input_allowed = class_allowed(rule, "input");
	v->dir_fd = open(devcells_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (v->dir_fd < 0) {
		cells_err_sys(err, errno, "%s", devcells_dir);
		goto fail;
	}
	if (v->allowed && buf_create(ds, v, true, err) < 0)
		goto fail;
	v->state_fd = make_node(v->dir_fd, "fb0.state", false, 0444, O_RDWR, err);
	if (v->state_fd < 0)
		goto fail;
	put_text(v->state_fd, v->allowed ? "background\n" : "denied\n");
	v->events_fd = make_node(v->dir_fd, "events", true, 0440, 0, err);
	if (v->events_fd < 0)
		goto fail;
	v->input_fd = make_node(v->dir_fd, "input", true, 0440, 0, err);
	if (v->input_fd < 0)
		goto fail;
	ds->vps[ds->nvps++] = v;
	if (fg_current(d) && !strcmp(fg_current(d), vp)) { /* already in front */
		present_fvp(ds);
		notify(v, "foreground", fg_generation(d));
	}
	return 0;
fail:
	vp_free(v);
	return cells_err_prefix(err, "display for %s", vp);
}

void disp_vp_down(struct cellsd *d, const char *vp)
{
	struct disp *ds = d->disp;
	for (size_t i = 0; ds && i < ds->nvps; i++) {
		if (strcmp(ds->vps[i]->name, vp))
			continue;
		struct disp_vp *v = ds->vps[i];
		ds->vps[i] = ds->vps[--ds->nvps];
		/* the foreground has moved on before a VP goes down; if not, go black
		 * before the buffer is closed */
		if (fg_current(d) && !strcmp(fg_current(d), vp)) {
			cells_err_t err;
			ds->screen->present(ds->screen_st, NULL, fg_generation(d), &err);
		}
		vp_free(v);
		return;
	}
}

int disp_set_allowed(struct cellsd *d, const char *vp, bool allowed, cells_err_t *err)
{
	struct disp *ds = d->disp;
	struct disp_vp *v = disp_vp_find(ds, vp);
	if (!v)
		return cells_err_set(err, ESRCH, "display: %s is not running", vp);
	if (v->allowed == allowed)
		return 0;
	bool front = fg_current(d) && !strcmp(fg_current(d), vp);
	v->allowed = allowed;
	if (!allowed) {
		if (front) /* off the screen first, then the buffer goes */
			present_fvp(ds);
		buf_revoke(v);
	} else {
		if (buf_create(ds, v, false, err) < 0) {
			v->allowed = false;
			return cells_err_prefix(err, "display for %s", vp);
		}
		if (front)
			present_fvp(ds);
	}
	put_text(v->state_fd, !allowed ? "denied\n" : front ? "foreground\n" : "background\n");
	return 0;
}

int disp_screenshot(struct cellsd *d, int fd, json_object *info, cells_err_t *err)
{
	struct disp *ds = d->disp;
	if (!ds)
		return cells_err_set(err, ENODEV, "screenshot: no display");
	size_t n = (size_t)ds->g.width * 4 * ds->g.height;
	cleanup_free uint8_t *px = malloc(n);
	if (!px)
		return cells_err_sys(err, ENOMEM, "screenshot");
	if (ds->screen->capture(ds->screen_st, px, n, err) < 0)
		return cells_err_prefix(err, "screenshot");
	if (disp_png_write(fd, px, ds->g.width, ds->g.height, ds->g.width * 4, err) < 0)
		return cells_err_prefix(err, "screenshot");
	if (info) {
		const char *fvp = fg_current(d);
		json_object_object_add(info, "width", json_object_new_int((int)ds->g.width));
		json_object_object_add(info, "height", json_object_new_int((int)ds->g.height));
		json_object_object_add(info, "foreground", json_object_new_string(fvp ? fvp : ""));
	}
	return 0;
}

int disp_size(struct cellsd *d, uint32_t *width, uint32_t *height)
{
	if (!d->disp)
		return -1;
	*width = d->disp->g.width;
	*height = d->disp->g.height;
	return 0;
}

json_object *disp_describe(struct cellsd *d)
{
	struct disp *ds = d->disp;
	json_object *o = json_object_new_object();
	const char *fvp = fg_current(d);
	json_object_object_add(o, "foreground", json_object_new_string(fvp ? fvp : ""));
	json_object_object_add(o, "generation", json_object_new_int64((int64_t)fg_generation(d)));
	if (!ds)
		return o;
	json_object_object_add(o, "screen", json_object_new_string(ds->screen_spec));
	json_object_object_add(o, "input", json_object_new_string(ds->input_spec));
	json_object_object_add(o, "width", json_object_new_int((int)ds->g.width));
	json_object_object_add(o, "height", json_object_new_int((int)ds->g.height));
	json_object_object_add(o, "stride", json_object_new_int((int)ds->g.stride));
	json_object_object_add(o, "format", json_object_new_string("XRGB8888"));
	json_object_object_add(o, "switches", json_object_new_int64((int64_t)ds->switches));
	json_object_object_add(o, "input_stale_dropped",
			       json_object_new_int64((int64_t)ds->stale_dropped));
	json_object_object_add(o, "input_locked_dropped",
			       json_object_new_int64((int64_t)ds->locked_dropped));
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < ds->nvps; i++) {
		struct disp_vp *v = ds->vps[i];
		json_object *r = json_object_new_object();
		bool front = fvp && !strcmp(fvp, v->name);
		json_object_object_add(r, "vp", json_object_new_string(v->name));
		json_object_object_add(r, "state",
				       json_object_new_string(!v->allowed ? "denied"
							      : front	  ? "foreground"
									  : "background"));
		json_object_object_add(r, "input", json_object_new_boolean(v->input_allowed));
		json_object_object_add(r, "input_delivered",
				       json_object_new_int64((int64_t)v->in_delivered));
		json_object_object_add(r, "input_dropped",
				       json_object_new_int64((int64_t)v->in_dropped));
		json_object_array_add(arr, r);
	}
	json_object_object_add(o, "vps", arr);
	return o;
}
