/* handlers_display.c - control requests of the foreground, display and input module:
 * switch_to, input, screenshot, display_status. */
#include "cleanup.h"
#include "audit.h"
#include "cjson.h"
#include "display.h"
#include "fg.h"
#include "handlers_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>

/* Safe: only a running VP can be brought in front, the policy's foreground rule is
 * checked by fg_switch, and the switch is audited before it happens (fail closed). */
int h_switch_to(struct ctl_call *c, cells_err_t *err)
{
	const char *vp = c->req->switch_to->name;
	const char *old = fg_current(c->d);
	json_object_object_add(c->result, "previous", json_object_new_string(old ? old : ""));
	if (fg_switch(c->d, vp, c->actor, err) < 0)
		return -1;
	const char *now = fg_current(c->d);
	json_object_object_add(c->result, "foreground", json_object_new_string(now ? now : ""));
	json_object_object_add(c->result, "generation",
			       json_object_new_int64((int64_t)fg_generation(c->d)));
	return 0;
}

/* Safe: the event is range-checked, goes only to the foreground VP (the one the
 * employee sees), and is audited before it is delivered (fail closed). */
int h_input(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__InputEvent *in = c->req->input;
	uint64_t gen = fg_generation(c->d); /* the stamp: the FVP the request was made for */
	uint32_t uw, uh;
	if (disp_size(c->d, &uw, &uh) < 0)
		return cells_err_set(err, ENODEV, "input: no display module");
	int w = (int)uw, h = (int)uh;
	struct input_event ev[6] = {0};
	size_t n = 0;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	if (in->touch) {
		if (in->x < 0 || in->y < 0 || in->x >= w || in->y >= h)
			return cells_err_set(err, EINVAL,
					     "input: touch %d,%d is off the %dx%d screen", in->x,
					     in->y, w, h);
		ev[n++] = (struct input_event){.type = EV_ABS, .code = ABS_X, .value = in->x};
		ev[n++] = (struct input_event){.type = EV_ABS, .code = ABS_Y, .value = in->y};
		ev[n++] = (struct input_event){.type = EV_KEY, .code = BTN_TOUCH, .value = 1};
		ev[n++] = (struct input_event){.type = EV_SYN, .code = SYN_REPORT};
		ev[n++] = (struct input_event){.type = EV_KEY, .code = BTN_TOUCH, .value = 0};
	} else {
		if (in->type != EV_KEY || in->code == 0 || in->code > KEY_MAX || in->value < 0 ||
		    in->value > 2)
			return cells_err_set(err, EINVAL,
					     "input: want a key event (code 1..%d, value 0..2)",
					     KEY_MAX);
		ev[n++] = (struct input_event){
		    .type = EV_KEY, .code = (uint16_t)in->code, .value = in->value};
	}
	ev[n++] = (struct input_event){.type = EV_SYN, .code = SYN_REPORT};
	for (size_t i = 0; i < n; i++) {
		ev[i].input_event_sec = tv.tv_sec;
		ev[i].input_event_usec = tv.tv_usec;
	}
	const char *fvp = fg_current(c->d);
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "kind", json_object_new_string(in->touch ? "touch" : "key"));
	if (!in->touch)
		json_object_object_add(det, "code", json_object_new_int((int)in->code));
	int ar = cellsd_audit(c->d, fvp ? fvp : "", c->actor, "input.inject", "ok", det, err);
	if (ar < 0)
		return cells_err_prefix(err, "input: audit");
	int r = disp_input(c->d, ev, n, gen, err);
	if (r < 0)
		return -1;
	json_object_object_add(c->result, "vp", json_object_new_string(fvp ? fvp : ""));
	json_object_object_add(c->result, "delivered", json_object_new_int(r));
	return 0;
}

/* Safe: writes only to the fd the (authorised) caller handed over, which must be a
 * regular file or a pipe; the capture is audited before it is taken (fail closed), as
 * it shows a VP's screen. */
int h_screenshot(struct ctl_call *c, cells_err_t *err)
{
	cleanup_close int fd = ctl_call_take_fd(c, 0);
	struct stat st;
	if (fd < 0)
		return cells_err_set(err, EINVAL, "screenshot: no output file");
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode)))
		return cells_err_set(err, EINVAL, "screenshot: output is not a file or pipe");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
		return cells_err_set(err, EBADF, "screenshot: output is not writable");
	const char *fvp = fg_current(c->d);
	if (cellsd_audit(c->d, fvp ? fvp : "", c->actor, "display.screenshot", "ok", NULL, err) < 0)
		return cells_err_prefix(err, "screenshot: audit");
	return disp_screenshot(c->d, fd, c->result, err);
}

/* Safe: read-only; names of running VPs and counters, no content. */
int h_display_status(struct ctl_call *c, cells_err_t *err)
{
	json_object_put(c->result);
	c->result = disp_describe(c->d);
	return 0;
}
