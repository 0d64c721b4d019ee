/* power.c - per-VP power requests (see power.h). */
#include "power.h"
#include "cjson.h"
#include "cleanup.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define REFUSAL_AUDIT_INTERVAL_MS 60000

int power_backend_init(struct power_backend *b, const char *kind, const char *sysfs_dir,
		       const char *record_log, cells_err_t *err)
{
	memset(b, 0, sizeof *b);
	snprintf(b->suspend_state, sizeof b->suspend_state, "mem");
	char p[PATH_MAX + 16];
	snprintf(p, sizeof p, "%s/wake_lock", sysfs_dir);
	if (!strcmp(kind, "auto"))
		kind = access(p, W_OK) == 0 ? "sysfs" : "record";
	if (!strcmp(kind, "sysfs")) {
		b->kind = POWER_BACKEND_SYSFS;
		snprintf(b->path, sizeof b->path, "%s", sysfs_dir);
	} else if (!strcmp(kind, "record")) {
		b->kind = POWER_BACKEND_RECORD;
		snprintf(b->path, sizeof b->path, "%s", record_log);
	} else
		return cells_err_set(err, EINVAL, "power backend must be sysfs, record or auto");
	return 0;
}

static int write_file(const char *path, const char *s, int flags, cells_err_t *err)
{
	cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC | flags, 0600);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", path);
	if (cells_write_all(fd, s, strlen(s)) < 0)
		return cells_err_sys(err, errno, "write %s", path);
	return 0;
}

int power_backend_op(struct power_backend *b, const char *op, const char *arg, cells_err_t *err)
{
	char p[PATH_MAX + 16], line[256];
	if (b->kind == POWER_BACKEND_RECORD) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(line, sizeof line, "%lld.%03ld %s%s%s\n", (long long)ts.tv_sec,
			 ts.tv_nsec / 1000000, op, arg ? " " : "", arg ? arg : "");
		return write_file(b->path, line, O_CREAT | O_APPEND, err);
	}
	if (!strcmp(op, "suspend")) {
		snprintf(p, sizeof p, "%s/state", b->path);
		return write_file(p, b->suspend_state, 0, err);
	}
	snprintf(p, sizeof p, "%s/%s", b->path, op); /* wake_lock / wake_unlock */
	return write_file(p, arg, 0, err);
}

void power_init(struct power *p, const struct power_backend *be)
{
	memset(p, 0, sizeof *p);
	p->be = *be;
	for (size_t i = 0; i < POWER_MAX_VPS; i++)
		p->vps[i].master = p->vps[i].slave = -1;
}

static struct power_vp *find_vp(struct power *p, const char *vp, bool create)
{
	struct power_vp *free_slot = NULL;
	for (size_t i = 0; i < POWER_MAX_VPS; i++) {
		if (!strcmp(p->vps[i].name, vp))
			return &p->vps[i];
		if (!p->vps[i].name[0] && !free_slot)
			free_slot = &p->vps[i];
	}
	if (!create || !free_slot)
		return NULL;
	snprintf(free_slot->name, sizeof free_slot->name, "%s", vp);
	return free_slot;
}

static bool valid_lock_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-'))
			return false;
	return true;
}

static void backend_lock_name(const char *vp, const char *name, char *out, size_t n)
{
	snprintf(out, n, "cells-%s-%s", vp, name);
}

static bool is_fg(const struct power *p, const char *vp)
{
	return p->fg[0] && !strcmp(p->fg, vp);
}

static void refusal(struct power *p, struct power_vp *v, const char *req, const char *reason)
{
	v->refused++;
	v->refused_unreported++;
	int64_t now = cells_mono_ns() / 1000000;
	if (v->refused > 1 && now - v->last_refusal_audit_ms < REFUSAL_AUDIT_INTERVAL_MS)
		return; /* aggregated into the next record */
	cleanup_json json_object *d = json_object_new_object();
	json_object_object_add(d, "request", json_object_new_string(req));
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "count", json_object_new_uint64(v->refused_unreported));
	if (p->audit)
		p->audit(p->ctx, v->name, "power.refused", "refused", d);
	v->refused_unreported = 0;
	v->last_refusal_audit_ms = now;
}

int power_request(struct power *p, const char *vp, const char *line, char *reply, size_t n)
{
	struct power_vp *v = find_vp(p, vp, true);
	if (!v) {
		snprintf(reply, n, "refused: too many VPs");
		return -1;
	}
	char req[POWER_LINE_MAX + 1];
	snprintf(req, sizeof req, "%s", line);
	size_t l = strlen(req);
	while (l && (req[l - 1] == '\r' || req[l - 1] == ' '))
		req[--l] = 0;
	char *arg = strchr(req, ' ');
	if (arg)
		*arg++ = 0;
	const char *reason = NULL;
	cells_err_t err;
	char bname[128];
	bool allowed = !p->vp_allowed || p->vp_allowed(p->ctx, vp);
	if (!strcmp(req, "suspend") && !arg) {
		if (!allowed)
			reason = "no power access for this VP (policy)";
		else if (!is_fg(p, vp))
			reason = "not the foreground VP";
		else if (power_backend_op(&p->be, "suspend", NULL, &err) < 0) {
			log_warn("power: suspend for VP %s: %s", vp, err.msg);
			reason = "backend error";
		}
	} else if ((!strcmp(req, "wake_lock") || !strcmp(req, "wake_unlock")) && arg &&
		   valid_lock_name(arg)) {
		bool lock = req[5] == 'l';
		size_t i;
		for (i = 0; i < v->nlocks; i++)
			if (!strcmp(v->locks[i], arg))
				break;
		bool held = i < v->nlocks;
		backend_lock_name(vp, arg, bname, sizeof bname);
		if (lock && !allowed)
			reason = "no power access for this VP (policy)";
		else if (lock && !is_fg(p, vp))
			reason = "not the foreground VP";
		else if (lock && !held && v->nlocks >= POWER_MAX_LOCKS)
			reason = "too many wake locks";
		else if (!lock && !held)
			reason = "no such wake lock";
		else if (is_fg(p, vp) && (lock != held) &&
			 power_backend_op(&p->be, lock ? "wake_lock" : "wake_unlock", bname, &err) <
			     0) {
			log_warn("power: %s for VP %s: %s", req, vp, err.msg);
			reason = "backend error";
		} else if (lock && !held)
			snprintf(v->locks[v->nlocks++], sizeof v->locks[0], "%s", arg);
		else if (!lock) {
			memmove(v->locks[i], v->locks[i + 1],
				(v->nlocks - i - 1) * sizeof v->locks[0]);
			v->nlocks--;
		}
	} else
		reason = "unknown request (suspend | wake_lock NAME | wake_unlock NAME)";
	if (reason) {
		snprintf(reply, n, "refused: %s", reason);
		refusal(p, v, req, reason);
		return -1;
	}
	snprintf(reply, n, "ok");
	return 0;
}

/* Take (on) or release (off) every lock of v in the backend. */
static int vp_locks(struct power *p, struct power_vp *v, bool on, cells_err_t *err)
{
	for (size_t i = 0; i < v->nlocks; i++) {
		char bname[128];
		backend_lock_name(v->name, v->locks[i], bname, sizeof bname);
		if (power_backend_op(&p->be, on ? "wake_lock" : "wake_unlock", bname, err) < 0)
			return -1;
	}
	return 0;
}

int power_set_foreground(struct power *p, const char *vp, cells_err_t *err)
{
	struct power_vp *old = p->fg[0] ? find_vp(p, p->fg, false) : NULL;
	if (vp && p->fg[0] && !strcmp(vp, p->fg))
		return 0;
	if (old && vp_locks(p, old, false, err) < 0)
		return -1;
	snprintf(p->fg, sizeof p->fg, "%s", vp ? vp : "");
	struct power_vp *nv = vp ? find_vp(p, vp, false) : NULL;
	if (nv && vp_locks(p, nv, true, err) < 0)
		return -1;
	return 0;
}

int power_vp_open(struct power *p, const char *vp, const char **slave_path, unsigned *major,
		  unsigned *minor, cells_err_t *err)
{
	struct power_vp *v = find_vp(p, vp, true);
	if (!v)
		return cells_err_set(err, ENOSPC, "power: too many VPs");
	if (v->master >= 0) {
		power_vp_close(p, vp);
		v = find_vp(p, vp, true);
	}
	cleanup_close int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return cells_err_sys(err, errno, "posix_openpt");
	if (grantpt(m) < 0 || unlockpt(m) < 0)
		return cells_err_sys(err, errno, "unlockpt");
	char sp[64];
	if (ptsname_r(m, sp, sizeof sp) != 0)
		return cells_err_sys(err, errno, "ptsname");
	cleanup_close int s = open(sp, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0)
		return cells_err_sys(err, errno, "open %s", sp);
	struct termios t;
	if (tcgetattr(s, &t) < 0)
		return cells_err_sys(err, errno, "tcgetattr");
	cfmakeraw(&t);
	if (tcsetattr(s, TCSANOW, &t) < 0)
		return cells_err_sys(err, errno, "tcsetattr");
	if (chmod(sp, 0660) < 0)
		return cells_err_sys(err, errno, "chmod %s", sp);
	struct stat st;
	if (fstat(s, &st) < 0)
		return cells_err_sys(err, errno, "stat %s", sp);
	if (cells_set_nonblock(m) < 0)
		return cells_err_sys(err, errno, "nonblock");
	v->master = take_fd(&m);
	v->slave = take_fd(&s);
	snprintf(v->slave_path, sizeof v->slave_path, "%s", sp);
	v->len = 0;
	*slave_path = v->slave_path;
	*major = major(st.st_rdev);
	*minor = minor(st.st_rdev);
	return 0;
}

int power_vp_master(struct power *p, const char *vp)
{
	struct power_vp *v = find_vp(p, vp, false);
	return v ? v->master : -1;
}

void power_vp_input(struct power *p, const char *vp)
{
	struct power_vp *v = find_vp(p, vp, false);
	if (!v || v->master < 0)
		return;
	char buf[512];
	ssize_t n;
	while ((n = read(v->master, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c != '\n') {
				if (v->len < POWER_LINE_MAX)
					v->line[v->len++] = c;
				else
					v->overlong = true;
				continue;
			}
			char reply[160];
			v->line[v->len] = 0;
			if (v->overlong) {
				snprintf(reply, sizeof reply, "refused: line too long");
				refusal(p, v, "?", "line too long");
			} else if (memchr(v->line, 0, v->len))
				snprintf(reply, sizeof reply, "refused: NUL byte");
			else
				power_request(p, vp, v->line, reply, sizeof reply);
			v->len = 0;
			v->overlong = false;
			size_t rl = strlen(reply);
			reply[rl++] = '\n';
			if (cells_write_all(v->master, reply, rl) < 0)
				log_warn("power: reply to VP %s: %s", vp, strerror(errno));
		}
	}
}

void power_vp_close(struct power *p, const char *vp)
{
	struct power_vp *v = find_vp(p, vp, false);
	if (!v)
		return;
	if (is_fg(p, vp)) {
		cells_err_t err;
		if (vp_locks(p, v, false, &err) < 0)
			log_warn("power: release locks of VP %s: %s", vp, err.msg);
	}
	if (v->master >= 0)
		close(v->master);
	if (v->slave >= 0)
		close(v->slave);
	memset(v, 0, sizeof *v);
	v->master = v->slave = -1;
}

json_object *power_describe(const struct power *p)
{
	json_object *o = json_object_new_object(), *vps = json_object_new_object();
	json_object_object_add(
	    o, "backend",
	    json_object_new_string(p->be.kind == POWER_BACKEND_SYSFS ? "sysfs" : "record"));
	json_object_object_add(o, "backend_path", json_object_new_string(p->be.path));
	for (size_t i = 0; i < POWER_MAX_VPS; i++) {
		const struct power_vp *v = &p->vps[i];
		if (!v->name[0])
			continue;
		json_object *vo = json_object_new_object(), *locks = json_object_new_array();
		for (size_t k = 0; k < v->nlocks; k++)
			json_object_array_add(locks, json_object_new_string(v->locks[k]));
		json_object_object_add(vo, "wake_locks", locks);
		json_object_object_add(vo, "refused", json_object_new_uint64(v->refused));
		json_object_object_add(vps, v->name, vo);
	}
	json_object_object_add(o, "vps", vps);
	return o;
}
