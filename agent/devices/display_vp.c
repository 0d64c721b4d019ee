/* display_vp.c - the display and the foreground follow the VP runtime: a VP that starts
 * gets its display and input devices and joins the running set of fg.h; a VP that
 * stops leaves it (the foreground moves on first, then its devices go).
 */
#include "display_int.h"
#include "cjson.h"
#include "fg.h"
#include "log.h"

#include <limits.h>
#include <string.h>

#include "vpm.h"

static void on_start(struct cellsd *d, const char *vp, void *data)
{
	char buf[PATH_MAX];
	cells_err_t err = {0};
	const char *dir = vpm_devcells_dir(d, vp, buf);
	if (!dir || disp_vp_up(d, vp, dir, &err) < 0)
		log_error("display: VP %s starts without a display: %s", vp,
			  dir ? err.msg : "no devcells directory");
	if (fg_vp_up(d, vp, &err) < 0)
		log_error("foreground: VP %s: %s", vp, err.msg);
}

static void on_stop(struct cellsd *d, const char *vp, void *data)
{
	fg_vp_down(d, vp);
	disp_vp_down(d, vp);
}

/* Register with the VP runtime and take in the VPs already running (adopted by a
 * restarted cellsd). */
static void follow(struct cellsd *d)
{
	static const struct vpm_listener l = {.on_start = on_start, .on_stop = on_stop};
	if (vpm_add_listener(d, &l) < 0) {
		log_error("display: cannot follow the VP runtime; VPs get no display");
		return;
	}
	cells_err_t err = {0};
	cleanup_json json_object *all = vpm_describe(d, NULL, &err);
	json_object *arr = all ? json_object_object_get(all, "vps") : NULL;
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *v = json_object_array_get_idx(arr, i);
		const char *name = json_object_get_string(json_object_object_get(v, "name"));
		const char *state = json_object_get_string(json_object_object_get(v, "state"));
		if (name && state && !strcmp(state, "running") && vpm_running(d, name))
			on_start(d, name, NULL);
	}
}

static void follow_later(struct loop *l, void *data)
{
	follow(data);
}

void disp_follow_vps(struct cellsd *d)
{
	if (d->vpm)
		follow(d);
	else /* the VP runtime is set up after us: once the loop runs */
		loop_add_timer(d->loop, 0, follow_later, d);
}
