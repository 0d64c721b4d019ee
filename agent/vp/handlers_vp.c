/* handlers_vp.c - control requests of the VP runtime: vp create/list/status/start/stop/
 * destroy/exec/run. Every change is audited; when the audit record cannot be written
 * the change is undone or not made (fail closed). Bad input gets a one-line error, an
 * audit record ("refused") and changes nothing.
 *
 * The VP's password (password.h) guards, when a policy names the VP: start, destroy,
 * exec, unlock/resume (here), config and password change (handlers_policy.c) and wipe
 * (handlers_wipe.c); start, exec and destroy from the moment a password is set (a
 * fresh VP is set up before the employee chooses one), the others also refuse while a
 * required password is not set yet. A locked VP (vplock.h) is not started,
 * exec'd into or configured. */
#include "handlers_vp.h"
#include "audit.h"
#include "cjson.h"
#include "cleanup.h"
#include "log.h"
#include "password.h"
#include "policy_engine.h"
#include "util.h"
#include "vplock.h"
#include "vpm.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#define VP_MAX_ARGV 256
#define VP_MAX_ENV 256

static json_object *det_reason(const cells_err_t *e)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "reason", json_object_new_string(e->msg));
	return o;
}

/* Audit a refused/failed request (best effort: nothing was changed). */
static int refused(struct ctl_call *c, const char *vp, const char *event, cells_err_t *err)
{
	cleanup_json json_object *det = det_reason(err);
	cellsd_audit(c->d, vp && cells_valid_name(vp, NULL) == 0 ? vp : "", c->actor, event,
		     "refused", det, NULL);
	return -1;
}

static int audit_ok(struct ctl_call *c, const char *vp, const char *event, json_object *det,
		    cells_err_t *err)
{
	if (cellsd_audit(c->d, vp, c->actor, event, "ok", det, err) < 0)
		return cells_err_set(err, EIO, "%s %s: the audit log cannot be written (refused)",
				     event, vp);
	return 0;
}

/* Whether vp has a password set. */
static bool pw_is_set(struct cellsd *d, const char *vp)
{
	bool set = false, locked = false;
	uint32_t failures = 0, retry = 0;
	return password_state(d, vp, &set, &failures, &locked, &retry) == 0 && set;
}

/* The VP's password for a guarded operation: checked (Argon2id, throttled, failures
 * counted and audited by password.c) when a policy in force names the VP. A VP that no
 * policy names has no password. until_set: the operation is open until the first
 * password is chosen (start, exec, destroy: a fresh VP is set up by root before the
 * employee picks one; it is non-compliant meanwhile); otherwise (unlock, resume) a
 * required password that is not set refuses it like a wrong one. */
static int vp_password(struct ctl_call *c, const char *vp, const ProtobufCBinaryData *pw,
		       const char *what, bool until_set, cells_err_t *err)
{
	if (!policy_vp_bounds(c->d, vp) || (until_set && !pw_is_set(c->d, vp)))
		return 0;
	if (password_authorize(c->d, vp, pw->data, pw->len, c->actor, err) < 0)
		return cells_err_prefix(err, "%s %s: the VP's password", what, vp);
	return 0;
}

/* Refuse an operation a lock forbids (vplock.h). */
static int not_locked(struct ctl_call *c, const char *vp, const char *what, cells_err_t *err)
{
	if (!vplock_is_locked(c->d, vp))
		return 0;
	return cells_err_set(err, EPERM, "%s %s: the VP is %s (cellctl vp %s %s)", what, vp,
			     vplock_is_paused(c->d, vp) ? "paused" : "locked",
			     vplock_is_paused(c->d, vp) ? "resume" : "unlock", vp);
}

static void add_lock_state(struct ctl_call *c, json_object *res)
{
	json_object *vps = NULL;
	if (json_object_object_get_ex(res, "vps", &vps)) {
		for (size_t i = 0; i < json_object_array_length(vps); i++) {
			json_object *v = json_object_array_get_idx(vps, i);
			const char *n = json_object_get_string(json_object_object_get(v, "name"));
			if (n)
				vplock_describe(c->d, n, v);
		}
		return;
	}
	const char *n = json_object_get_string(json_object_object_get(res, "name"));
	if (n)
		vplock_describe(c->d, n, res);
}

static char **strv_dup(char **v, size_t n)
{
	if (!n)
		return NULL;
	char **o = calloc(n + 1, sizeof *o);
	for (size_t i = 0; o && i < n; i++)
		o[i] = strdup(v[i]);
	return o;
}

static int def_from(const Cells__Ctl__V1__VpCreate *m, char **init, size_t ninit,
		    struct vpm_def *def, cells_err_t *err)
{
	memset(def, 0, sizeof *def);
	if (!m || cells_valid_name(m->name, err) < 0)
		return m ? -1 : cells_err_set(err, EINVAL, "missing VP definition");
	if (!m->image || !*m->image)
		return cells_err_set(err, EINVAL,
				     "an image (root filesystem directory) is required");
	if (strlen(m->image) >= sizeof def->image || strlen(m->hostname) >= sizeof def->hostname)
		return cells_err_set(err, ENAMETOOLONG, "image path or hostname too long");
	if (ninit > VP_MAX_ARGV)
		return cells_err_set(err, E2BIG, "init command has over %d words", VP_MAX_ARGV);
	snprintf(def->name, sizeof def->name, "%s", m->name);
	snprintf(def->image, sizeof def->image, "%s", m->image);
	snprintf(def->net, sizeof def->net, "%s", *m->net ? m->net : "none");
	if (strlen(m->net) >= sizeof def->net)
		return cells_err_set(err, EINVAL, "net must be 'nat' or 'none'");
	snprintf(def->hostname, sizeof def->hostname, "%s", m->hostname);
	def->memory = m->memory_bytes;
	def->pids = m->pids;
	def->init = strv_dup(init, ninit);
	return 0;
}

/* Safe: the name is validated ([a-z0-9_-]{1,32}, no '/' or '..'), the image must be an
 * existing directory used read-only as the lower layer, nothing runs yet. */
int h_vp_create(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpCreate *m = c->req->vp_create;
	struct vpm_def def;
	const char *name = m ? m->name : "";
	if (def_from(m, m ? m->init : NULL, m ? m->n_init : 0, &def, err) < 0 ||
	    vpm_create(c->d, &def, err) < 0) {
		vpm_def_free(&def);
		return refused(c, name, "vp.create", err);
	}
	vpm_def_free(&def);
	vplock_forget(c->d, name); /* a new VP never inherits an old one's lock */
	cleanup_json json_object *det = json_object_new_object();
	json_object_object_add(det, "image", json_object_new_string(m->image));
	json_object_object_add(det, "net", json_object_new_string(*m->net ? m->net : "none"));
	int rc = audit_ok(c, name, "vp.create", det, err);
	if (rc < 0) {
		cells_err_t e2;
		vpm_destroy(c->d, name, &e2);
		return -1;
	}
	json_object_put(c->result);
	c->result = vpm_describe(c->d, name, err);
	return c->result ? 0 : -1;
}

/* Safe: read-only. */
int h_vp_list(struct ctl_call *c, cells_err_t *err)
{
	json_object_put(c->result);
	c->result = vpm_describe(c->d, NULL, err);
	if (c->result)
		add_lock_state(c, c->result);
	return c->result ? 0 : -1;
}

/* The answer of a request about one VP: its status with its lock state. */
static int answer_vp(struct ctl_call *c, const char *name, cells_err_t *err)
{
	json_object_put(c->result);
	c->result = vpm_describe(c->d, name, err);
	if (c->result)
		add_lock_state(c, c->result);
	return c->result ? 0 : -1;
}

/* Safe: read-only; the name is validated. */
int h_vp_status(struct ctl_call *c, cells_err_t *err)
{
	const char *name = c->req->vp_status ? c->req->vp_status->name : "";
	return answer_vp(c, name, err);
}

/* Safe: starts a defined VP with its stored definition; the container is confined
 * (namespaces, seccomp, capabilities, cgroups) before its init execs. */
int h_vp_start(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpName *m = c->req->vp_start;
	const char *name = m ? m->name : "";
	if (!m || cells_valid_name(name, err) < 0 || not_locked(c, name, "vp start", err) < 0 ||
	    (vpm_exists(c->d, name) &&
	     vp_password(c, name, &m->password, "vp start", true, err) < 0) ||
	    vpm_start(c->d, name, NULL, NULL, err) < 0)
		return refused(c, name, "vp.start", err);
	if (audit_ok(c, name, "vp.start", NULL, err) < 0) {
		cells_err_t e2;
		vpm_stop(c->d, name, &e2);
		return -1;
	}
	json_object_put(c->result);
	c->result = vpm_describe(c->d, name, err);
	return c->result ? 0 : -1;
}

static void on_stopped(struct cellsd *d, const char *vp, int status, void *data)
{
	struct ctl_call *c = data;
	json_object_object_add(c->result, "name", json_object_new_string(vp));
	json_object_object_add(c->result, "state", json_object_new_string("stopped"));
	ctl_call_finish(c, 0, NULL);
}

/* Safe: stopping only removes access; audited first (fail closed). Asynchronous: the
 * loop keeps serving while the init gets its grace period. */
int h_vp_stop(struct ctl_call *c, cells_err_t *err)
{
	const char *name = c->req->vp_stop ? c->req->vp_stop->name : "";
	if (cells_valid_name(name, err) < 0)
		return refused(c, name, "vp.stop", err);
	if (!vpm_running(c->d, name)) {
		if (vpm_exists(c->d, name))
			cells_err_set(err, EALREADY, "VP '%s' is not running", name);
		else
			cells_err_set(err, ENOENT, "no VP named '%s'", name);
		return refused(c, name, "vp.stop", err);
	}
	if (audit_ok(c, name, "vp.stop", NULL, err) < 0)
		return -1;
	if (vpm_stop_async(c->d, name, on_stopped, c, err) < 0)
		return -1;
	c->pending = true;
	return 0;
}

/* Safe: destroys only the named VP's definition and its own writable layer, only with
 * the VP's password (a destroy is a wipe); audited before anything is removed (fail
 * closed). */
int h_vp_destroy(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpName *m = c->req->vp_destroy;
	const char *name = m ? m->name : "";
	if (!m || cells_valid_name(name, err) < 0)
		return refused(c, name, "vp.destroy", err);
	if (!vpm_exists(c->d, name)) {
		cells_err_set(err, ENOENT, "no VP named '%s'", name);
		return refused(c, name, "vp.destroy", err);
	}
	if (vp_password(c, name, &m->password, "vp destroy", true, err) < 0)
		return refused(c, name, "vp.destroy", err);
	if (audit_ok(c, name, "vp.destroy", NULL, err) < 0)
		return -1;
	if (vpm_destroy(c->d, name, err) < 0)
		return -1;
	vplock_forget(c->d, name);
	json_object_object_add(c->result, "name", json_object_new_string(name));
	json_object_object_add(c->result, "destroyed", json_object_new_boolean(1));
	return 0;
}

struct exec_wait {
	struct ctl_call *c;
	int pidfd;
};

static void on_exec_exit(struct loop *l, int fd, uint32_t events, void *data)
{
	struct exec_wait *w = data;
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) {
		if (errno == EINTR || (si.si_pid == 0 && errno != ECHILD))
			return;
	}
	loop_del_fd(l, fd);
	close(fd);
	int code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
	w->c->exit_code = code;
	json_object_object_add(w->c->result, "exit_code", json_object_new_int(code));
	ctl_call_finish(w->c, 0, NULL);
	free(w);
}

static void call_stdio(struct ctl_call *c, int stdio[3])
{
	for (size_t i = 0; i < 3; i++)
		stdio[i] = i < c->nfds ? c->fds[i] : -1;
}

/* Safe: the command runs inside the VP with exactly the VP's confinement (its
 * namespaces and cgroups, the VP seccomp filter, reduced capabilities, no_new_privs);
 * only the caller's own stdio fds go in. Audited with the command (fail closed). */
int h_vp_exec(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpExec *m = c->req->vp_exec;
	const char *name = m ? m->name : "";
	if (!m || cells_valid_name(name, err) < 0)
		return refused(c, name, "vp.exec", err ? err : NULL);
	if (!m->n_argv || m->n_argv > VP_MAX_ARGV || m->n_env > VP_MAX_ENV) {
		cells_err_set(err, EINVAL, "vp exec needs 1..%d command words", VP_MAX_ARGV);
		return refused(c, name, "vp.exec", err);
	}
	for (size_t i = 0; i < m->n_env; i++)
		if (!strchr(m->env[i], '=')) {
			cells_err_set(err, EINVAL, "environment entry '%s' lacks '='", m->env[i]);
			return refused(c, name, "vp.exec", err);
		}
	if (!vpm_running(c->d, name)) {
		if (vpm_exists(c->d, name))
			cells_err_set(err, ESRCH, "VP '%s' is not running", name);
		else
			cells_err_set(err, ENOENT, "no VP named '%s'", name);
		return refused(c, name, "vp.exec", err);
	}
	if (not_locked(c, name, "vp exec", err) < 0 ||
	    vp_password(c, name, &m->password, "vp exec", true, err) < 0)
		return refused(c, name, "vp.exec", err);
	cleanup_json json_object *det = json_object_new_object();
	json_object *argv = json_object_new_array();
	for (size_t i = 0; i < m->n_argv; i++)
		json_object_array_add(argv, json_object_new_string(m->argv[i]));
	json_object_object_add(det, "argv", argv);
	int rc = audit_ok(c, name, "vp.exec", det, err);
	if (rc < 0)
		return -1;
	cleanup_free char **av = calloc(m->n_argv + 1, sizeof *av);
	cleanup_free char **ev = calloc(m->n_env + 1, sizeof *ev);
	if (!av || !ev)
		return cells_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_argv; i++)
		av[i] = m->argv[i];
	for (size_t i = 0; i < m->n_env; i++)
		ev[i] = m->env[i];
	int stdio[3];
	call_stdio(c, stdio);
	struct exec_wait *w = calloc(1, sizeof *w);
	if (!w)
		return cells_err_set(err, ENOMEM, "out of memory");
	if (vpm_exec(c->d, name, av, m->n_env ? ev : NULL, *m->cwd ? m->cwd : NULL, stdio,
		     &w->pidfd, err) < 0) {
		free(w);
		return -1;
	}
	w->c = c;
	if (loop_add_fd(c->d->loop, w->pidfd, EPOLLIN, on_exec_exit, w, err) < 0) {
		close(w->pidfd);
		free(w);
		return -1;
	}
	c->pending = true;
	return 0;
}

struct run_wait {
	struct ctl_call *c;
	bool destroy;
};

static void on_run_exit(struct cellsd *d, const char *vp, int status, void *data)
{
	struct run_wait *w = data;
	cells_err_t err = {0};
	int rc = 0;
	if (status < 0)
		status = 255;
	w->c->exit_code = status;
	json_object_object_add(w->c->result, "exit_code", json_object_new_int(status));
	/* the VP has stopped and released its cgroups, mounts and veth: answer, then remove
	 * the transient definition and its writable layer (before the next request) */
	ctl_call_finish(w->c, rc, &err);
	if (w->destroy && vpm_destroy(d, vp, &err) < 0)
		log_warn("vp run %s: %s", vp, err.msg);
	free(w);
}

/* Safe: like vp create + vp start with the caller's command as the init and the
 * caller's stdio; the transient VP is removed afterwards (also after a crash). */
int h_vp_run(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpRun *m = c->req->vp_run;
	const char *name = m && m->create ? m->create->name : "";
	if (!m || !m->create || cells_valid_name(name, err) < 0)
		return refused(c, name, "vp.run", err);
	if (!m->n_argv || m->n_argv > VP_MAX_ARGV) {
		cells_err_set(err, EINVAL, "vp run needs 1..%d command words", VP_MAX_ARGV);
		return refused(c, name, "vp.run", err);
	}
	if (vpm_running(c->d, name)) {
		cells_err_set(err, EBUSY, "VP '%s' is already running", name);
		return refused(c, name, "vp.run", err);
	}
	bool created = false;
	if (!vpm_exists(c->d, name)) {
		struct vpm_def def;
		if (def_from(m->create, NULL, 0, &def, err) < 0 ||
		    vpm_create(c->d, &def, err) < 0 ||
		    (!m->keep && vpm_mark_transient(c->d, name, err) < 0)) {
			vpm_def_free(&def);
			if (vpm_exists(c->d, name)) {
				cells_err_t e2;
				vpm_destroy(c->d, name, &e2);
			}
			return refused(c, name, "vp.run", err);
		}
		vpm_def_free(&def);
		created = true;
	}
	cleanup_json json_object *det = json_object_new_object();
	json_object *argv = json_object_new_array();
	for (size_t i = 0; i < m->n_argv; i++)
		json_object_array_add(argv, json_object_new_string(m->argv[i]));
	json_object_object_add(det, "argv", argv);
	json_object_object_add(det, "created", json_object_new_boolean(created));
	int rc = audit_ok(c, name, "vp.run", det, err);
	cells_err_t e2;
	if (rc < 0) {
		if (created)
			vpm_destroy(c->d, name, &e2);
		return -1;
	}
	cleanup_free char **av = calloc(m->n_argv + 1, sizeof *av);
	struct run_wait *w = calloc(1, sizeof *w);
	if (!av || !w) {
		free(w);
		return cells_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < m->n_argv; i++)
		av[i] = m->argv[i];
	int stdio[3];
	call_stdio(c, stdio);
	w->c = c;
	w->destroy = created && !m->keep;
	if (vpm_start(c->d, name, av, stdio, err) < 0 ||
	    vpm_on_exit(c->d, name, on_run_exit, w, err) < 0) {
		free(w);
		if (vpm_running(c->d, name))
			vpm_stop(c->d, name, &e2);
		if (created)
			vpm_destroy(c->d, name, &e2);
		return -1;
	}
	c->pending = true;
	return 0;
}

/* Safe: locking only removes access (freezes the VP, drops its input, hides its frame,
 * and when pausing takes its network down); no password is needed for that. Audited. */
int h_vp_lock(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpLock *m = c->req->vp_lock;
	const char *name = m ? m->name : "";
	const char *ev = m && m->pause ? "vp.pause" : "vp.lock";
	if (!m || cells_valid_name(name, err) < 0)
		return refused(c, name, ev, err);
	if (!vpm_exists(c->d, name)) {
		cells_err_set(err, ENOENT, "no VP named '%s'", name);
		return refused(c, name, ev, err);
	}
	if (vplock_set(c->d, name, m->pause, c->actor, err) < 0)
		return -1;
	return answer_vp(c, name, err);
}

/* Safe: lifting a lock needs the VP's password (throttled, failures counted; a VP no
 * policy names has none); the MDM's unlock is a signed command (mgmt). Audited. */
int h_vp_unlock(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__VpLock *m = c->req->vp_unlock;
	const char *name = m ? m->name : "";
	const char *what = m && m->pause ? "vp resume" : "vp unlock";
	if (!m || cells_valid_name(name, err) < 0)
		return refused(c, name, "vp.unlock", err);
	if (!vplock_is_locked(c->d, name)) {
		cells_err_set(err, EALREADY, "%s %s: the VP is not %s", what, name,
			      m->pause ? "paused" : "locked");
		return refused(c, name, "vp.unlock", err);
	}
	if (vp_password(c, name, &m->password, what, false, err) < 0)
		return refused(c, name, "vp.unlock", err);
	if (vplock_clear(c->d, name, c->actor, err) < 0)
		return -1;
	return answer_vp(c, name, err);
}
