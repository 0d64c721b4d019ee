/* vpm.c - the VP manager (see vpm.h): definitions in the state DB, lifecycle of the
 * containers, recovery after a cellsd restart. */
#include "vpm.h"
#include "audit.h"
#include "cleanup.h"
#include "cleanup_sqlite.h"
#include "fg.h"
#include "images.h"
#include "kcgroup.h"
#include "kidmap.h"
#include "knet.h"
#include "ksec.h"
#include "kspawn.h"
#include "log.h"
#include "policy_engine.h"
#include "sqldb.h"
#include "util.h"
#include "wipe.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define VPM_MAX_LISTENERS 16
#define VPM_STOP_GRACE_MS 3000

static const char *const vp_schema[] = {
    "CREATE TABLE vp("
    " name TEXT PRIMARY KEY,"
    " image TEXT NOT NULL,"
    " net TEXT NOT NULL,"
    " memory INTEGER NOT NULL,"
    " pids INTEGER NOT NULL,"
    " init TEXT NOT NULL," /* JSON array, "[]" for the default */
    " hostname TEXT NOT NULL,"
    " slot INTEGER NOT NULL UNIQUE," /* veth number, SELinux category */
    " transient INTEGER NOT NULL DEFAULT 0,"
    " created_us INTEGER NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'stopped',"
    " init_pid INTEGER NOT NULL DEFAULT 0,"
    " init_start INTEGER NOT NULL DEFAULT 0,"
    " net_block INTEGER NOT NULL DEFAULT -1)",
    /* the VP's id range (kidmap.h): host uid/gid of its root, 0 until allocated; kept
     * while the row (and so the VP's data) exists */
    "ALTER TABLE vp ADD COLUMN uid_base INTEGER NOT NULL DEFAULT 0",
    /* signed images (images.h): image_good is the last "NAME@VERSION" the VP started on
     * (the A of A/B: used again when a newer one fails to start); image_run the one the
     * running instance uses ('' for the local image dir) */
    "ALTER TABLE vp ADD COLUMN image_good TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE vp ADD COLUMN image_run TEXT NOT NULL DEFAULT ''",
};

/* --uid-base: where VP id ranges start on the host */
static uint32_t opt_uid_base = 1048576;

struct vp_waiter {
	struct vp_waiter *next;
	void (*cb)(struct cellsd *d, const char *vp, int status, void *data);
	void *data;
};

struct vp_rt {
	struct vp_rt *next;
	char name[33];
	pid_t pid;
	int pidfd;
	unsigned long long start_time;
	struct kcg cg;
	bool nat;
	char veth[IFNAMSIZ];
	struct knet_addr addr;
	struct vp_waiter *waiters;
	bool transient;
	uint64_t kill_timer;		   /* SIGKILL after the stop grace period, 0: none */
	unsigned slot;			   /* veth number, SELinux category */
	uint32_t uid_base;		   /* the VP's id range */
	char image[POL_IMAGE_REF_MAX + 1]; /* the signed image it holds (images_acquire), or "" */
};

struct vpm {
	char id[9]; /* first 8 hex of sha256(state dir) */
	struct sock_fprog seccomp;
	uint64_t caps;
	int cap_last;
	bool selinux_logged;
	bool hold_logged;
	struct vp_rt *running;
	struct vpm_listener listeners[VPM_MAX_LISTENERS];
	size_t nlisteners;
	struct {
		vpm_ready_fn fn;
		void *data;
	} ready[VPM_MAX_LISTENERS];
	size_t nready;
};

static char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux",
    "container=cells", NULL};

static struct vp_rt *rt_find(struct vpm *m, const char *name)
{
	for (struct vp_rt *r = m ? m->running : NULL; r; r = r->next)
		if (!strcmp(r->name, name))
			return r;
	return NULL;
}

static void vp_paths(struct cellsd *d, const char *name, const char *what, char *buf, size_t n)
{
	if (!strcmp(what, "upper") || !strcmp(what, "work") || !strcmp(what, "."))
		snprintf(buf, n, "%s/vp/%s/%s", d->state_dir, name, what);
	else
		snprintf(buf, n, "%s/vp/%s/%s", d->run_dir, name, what);
}

/* The overlay's upper and work dirs, always inside the directory the wipe module gives
 * (wipe_prepare_vp_storage: the VP's fscrypt directory, unlocked here, when its data is
 * encrypted, else STATE/vpdata/NAME), so that a wipe finds the data wherever it is. */
static int vp_data_dirs(struct cellsd *d, const char *vp, char upper[PATH_MAX], char work[PATH_MAX],
			cells_err_t *err)
{
	char dir[PATH_MAX];
	if (wipe_prepare_vp_storage(d, vp, dir, err) < 0)
		return cells_err_prefix(err, "VP %s: storage", vp);
	if (snprintf(upper, PATH_MAX, "%s/upper", dir) >= PATH_MAX ||
	    snprintf(work, PATH_MAX, "%s/work", dir) >= PATH_MAX)
		return cells_err_set(err, ENAMETOOLONG, "VP %s: storage path", vp);
	return 0;
}

static void cg_name(struct vpm *m, const char *vp, char *buf, size_t n)
{
	snprintf(buf, n, "cells-%s-%s", m->id, vp);
}

static void veth_name(struct vpm *m, long long slot, char *buf, size_t n)
{
	snprintf(buf, n, "cv%.6s%lld", m->id, slot);
}

/* ---- the state DB ---- */

static int db_set_state(struct cellsd *d, const char *vp, const char *state, pid_t pid,
			unsigned long long start, int block, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(
		d->db, "UPDATE vp SET state=?, init_pid=?, init_start=?, net_block=? WHERE name=?",
		&st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, pid);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)start);
	sqlite3_bind_int(st, 4, block);
	sqlite3_bind_text(st, 5, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "update vp state", err);
	return 0;
}

/* column is "image_good" or "image_run" (constants of this file) */
static int db_set_image(struct cellsd *d, const char *vp, const char *column, const char *ref,
			cells_err_t *err)
{
	char sql[64];
	snprintf(sql, sizeof sql, "UPDATE vp SET %s=? WHERE name=?", column);
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, sql, &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "update vp image", err);
	return 0;
}

struct vp_row {
	struct vpm_def def;
	long long slot;
	bool transient;
	char state[16];
	pid_t init_pid;
	unsigned long long init_start;
	int net_block;
	long long created_us;
	uint32_t uid_base; /* 0: not allocated yet */
	char image_good[POL_IMAGE_REF_MAX + 1], image_run[POL_IMAGE_REF_MAX + 1];
};

static void row_free(struct vp_row *r)
{
	vpm_def_free(&r->def);
}

static char **json_to_argv(const char *js)
{
	json_object *a = json_tokener_parse(js);
	if (!a || !json_object_is_type(a, json_type_array) || !json_object_array_length(a)) {
		json_object_put(a);
		return NULL;
	}
	size_t n = json_object_array_length(a);
	char **v = calloc(n + 1, sizeof *v);
	for (size_t i = 0; v && i < n; i++)
		v[i] = strdup(json_object_get_string(json_object_array_get_idx(a, i)));
	json_object_put(a);
	return v;
}

static void row_from_stmt(sqlite3_stmt *st, struct vp_row *r)
{
	memset(r, 0, sizeof *r);
	snprintf(r->def.name, sizeof r->def.name, "%s", sqlite3_column_text(st, 0));
	snprintf(r->def.image, sizeof r->def.image, "%s", sqlite3_column_text(st, 1));
	snprintf(r->def.net, sizeof r->def.net, "%s", sqlite3_column_text(st, 2));
	r->def.memory = (unsigned long long)sqlite3_column_int64(st, 3);
	r->def.pids = (unsigned)sqlite3_column_int64(st, 4);
	r->def.init = json_to_argv((const char *)sqlite3_column_text(st, 5));
	snprintf(r->def.hostname, sizeof r->def.hostname, "%s", sqlite3_column_text(st, 6));
	r->slot = sqlite3_column_int64(st, 7);
	r->transient = sqlite3_column_int(st, 8);
	r->created_us = sqlite3_column_int64(st, 9);
	snprintf(r->state, sizeof r->state, "%s", sqlite3_column_text(st, 10));
	r->init_pid = (pid_t)sqlite3_column_int64(st, 11);
	r->init_start = (unsigned long long)sqlite3_column_int64(st, 12);
	r->net_block = sqlite3_column_int(st, 13);
	r->uid_base = (uint32_t)sqlite3_column_int64(st, 14);
	snprintf(r->image_good, sizeof r->image_good, "%s", sqlite3_column_text(st, 15));
	snprintf(r->image_run, sizeof r->image_run, "%s", sqlite3_column_text(st, 16));
}

#define ROW_COLS                                                                                   \
	"name,image,net,memory,pids,init,hostname,slot,transient,created_us,state,init_pid,"       \
	"init_start,net_block,uid_base,image_good,image_run"

/* 1 found, 0 not found, -1 error */
static int db_get(struct cellsd *d, const char *vp, struct vp_row *r, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT " ROW_COLS " FROM vp WHERE name=?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqldb_err(d->db, "read vp", err);
	row_from_stmt(st, r);
	return 1;
}

int vpm_option_uid_base(const char *arg, cells_err_t *err)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(arg, &end, 10);
	if (errno || end == arg || *end || v < KIDMAP_RANGE ||
	    v + 64ull * KIDMAP_RANGE > UINT32_MAX)
		return cells_err_set(err, EINVAL,
				     "--uid-base %s: must be at least %u, with room for 64 VPs "
				     "below 2^32",
				     arg, KIDMAP_RANGE);
	opt_uid_base = (uint32_t)v;
	return 0;
}

/* The VP's id range: the recorded one, else the lowest range from --uid-base on that
 * overlaps no other VP's, recorded now (in the row: it goes with the VP's destroy). */
static int vp_uid_base(struct cellsd *d, const char *vp, uint32_t *out, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT name,uid_base FROM vp WHERE uid_base>0", &st, err) < 0)
		return -1;
	uint32_t used[1024];
	size_t n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint32_t b = (uint32_t)sqlite3_column_int64(st, 1);
		if (!strcmp((const char *)sqlite3_column_text(st, 0), vp)) {
			*out = b;
			return 0;
		}
		if (n < CELLS_ARRAY_SIZE(used))
			used[n++] = b;
	}
	if (rc != SQLITE_DONE)
		return sqldb_err(d->db, "read id ranges", err);
	sqlite3_finalize(st);
	st = NULL;
	uint64_t c = opt_uid_base;
	for (bool moved = true; moved;) {
		moved = false;
		for (size_t i = 0; i < n; i++)
			if (c < (uint64_t)used[i] + KIDMAP_RANGE && used[i] < c + KIDMAP_RANGE) {
				c = (uint64_t)used[i] + KIDMAP_RANGE;
				moved = true;
			}
	}
	if (c + KIDMAP_RANGE > UINT32_MAX)
		return cells_err_set(err, ENOSPC, "no id range left for VP %s", vp);
	if (sqldb_prepare(d->db, "UPDATE vp SET uid_base=? WHERE name=?", &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)c);
	sqlite3_bind_text(st, 2, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "record the id range", err);
	*out = (uint32_t)c;
	return 0;
}

/* The VP's writable storage owned by its range: the data dir holding upper and work,
 * and their trees (files of an older cellsd, when the VP's root was host root, move
 * into the range once). */
static int own_storage(const char *upper, const char *work, uint32_t base, cells_err_t *err)
{
	const char *dirs[] = {upper, work};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(dirs); i++) {
		struct stat st;
		if (stat(dirs[i], &st) < 0)
			return cells_err_sys(err, errno, "stat %s", dirs[i]);
		if (st.st_uid == base && st.st_gid == base)
			continue;
		long n = kidmap_shift_tree(dirs[i], base, err);
		if (n < 0)
			return -1;
		if (n > 1)
			log_info("%s: %ld files moved into the id range at %u", dirs[i], n, base);
	}
	char parent[PATH_MAX];
	snprintf(parent, sizeof parent, "%s", upper);
	char *sl = strrchr(parent, '/');
	if (sl && sl != parent) {
		*sl = 0;
		if (chown(parent, base, base) < 0)
			return cells_err_sys(err, errno, "chown %s", parent);
	}
	return 0;
}

void vpm_def_free(struct vpm_def *def)
{
	if (def->init)
		for (char **p = def->init; *p; p++)
			free(*p);
	free(def->init);
	def->init = NULL;
}

/* ---- contract ---- */

bool vpm_exists(struct cellsd *d, const char *vp)
{
	struct vp_row r;
	cells_err_t e;
	if (!vp || cells_valid_name(vp, NULL) < 0 || db_get(d, vp, &r, &e) != 1)
		return false;
	row_free(&r);
	return true;
}

bool vpm_running(struct cellsd *d, const char *vp)
{
	return vp && rt_find(d->vpm, vp) != NULL;
}

pid_t vpm_init_pid(struct cellsd *d, const char *vp)
{
	struct vp_rt *r = vp ? rt_find(d->vpm, vp) : NULL;
	return r ? r->pid : 0;
}

const char *vpm_devcells_dir(struct cellsd *d, const char *vp, char buf[PATH_MAX])
{
	if (!vp || cells_valid_name(vp, NULL) < 0)
		return NULL;
	vp_paths(d, vp, "devcells", buf, PATH_MAX);
	return buf;
}

int vpm_dev_apply(struct cellsd *d, const char *vp, const struct kcg_dev *rules, size_t n,
		  cells_err_t *err)
{
	struct vp_rt *r = vp ? rt_find(d->vpm, vp) : NULL;
	if (!r)
		return cells_err_set(err, ESRCH, "VP '%s' is not running", vp ? vp : "");
	if (kcg_dev_apply(&r->cg, rules, n, err) < 0)
		return cells_err_prefix(err, "VP %s: %zu device rule%s", vp, n, n == 1 ? "" : "s");
	return 0;
}

int vpm_dev_set(struct cellsd *d, const char *vp, char type, unsigned major, unsigned minor,
		bool allow, cells_err_t *err)
{
	const struct kcg_dev one = {type, major, minor, allow};
	return vpm_dev_apply(d, vp, &one, 1, err);
}

int vpm_add_listener(struct cellsd *d, const struct vpm_listener *l)
{
	struct vpm *m = d->vpm;
	if (!m || m->nlisteners >= VPM_MAX_LISTENERS)
		return -1;
	m->listeners[m->nlisteners++] = *l;
	return 0;
}

int vpm_add_ready_listener(struct cellsd *d, vpm_ready_fn fn, void *data)
{
	struct vpm *m = d->vpm;
	if (!m || m->nready >= VPM_MAX_LISTENERS)
		return -1;
	m->ready[m->nready].fn = fn;
	m->ready[m->nready++].data = data;
	return 0;
}

const char *vpm_image_running(struct cellsd *d, const char *vp)
{
	struct vp_rt *rt = rt_find(d->vpm, vp);
	return rt ? rt->image : NULL;
}

int vpm_count_running(struct cellsd *d)
{
	int n = 0;
	for (struct vp_rt *r = d->vpm ? d->vpm->running : NULL; r; r = r->next)
		n++;
	return n;
}

/* ---- teardown ---- */

static bool any_nat(struct vpm *m, const struct vp_rt *except)
{
	for (struct vp_rt *r = m->running; r; r = r->next)
		if (r != except && r->nat)
			return true;
	return false;
}

static void nat_table(struct vpm *m, char *buf, size_t n)
{
	snprintf(buf, n, "cells_%s", m->id);
}

/* Remove what a VP holds on the host (cgroups, veth, devcells). Idempotent. */
static int release_host(struct cellsd *d, const char *vp, struct kcg *cg, const char *veth,
			cells_err_t *err)
{
	int rc = 0;
	cells_err_t e2;
	char p[PATH_MAX];
	if (veth && veth[0] && knet_veth_del(veth, &e2) < 0) {
		log_warn("VP %s: %s", vp, e2.msg);
		rc = -1;
		*err = e2;
	}
	if (kcg_destroy(cg, &e2) < 0) {
		log_warn("VP %s: %s", vp, e2.msg);
		rc = -1;
		*err = e2;
	}
	vp_paths(d, vp, "devcells", p, sizeof p);
	if (umount2(p, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		log_warn("VP %s: umount %s: %s", vp, p, strerror(errno));
	rmdir(p);
	vp_paths(d, vp, "root", p, sizeof p);
	rmdir(p);
	vp_paths(d, vp, "", p, sizeof p);
	rmdir(p);
	return rc;
}

static void rt_unlink(struct vpm *m, struct vp_rt *rt)
{
	for (struct vp_rt **pp = &m->running; *pp; pp = &(*pp)->next)
		if (*pp == rt) {
			*pp = rt->next;
			return;
		}
}

/* References on signed images (images.h): a running VP holds the one it runs on (taken
 * at its start or adoption, given back when it stops), and every VP holds its image_good,
 * the one it falls back on, from cellsd's start (vpm_init) until it moves or the VP is
 * destroyed; so the store keeps an older version while a VP may need it again. */
static int image_hold(struct cellsd *d, const char *ref, char lower[PATH_MAX], cells_err_t *err)
{
	char name[POL_IMAGE_NAME_MAX + 1];
	uint64_t version;
	if (pol_image_ref_parse(ref, name, &version, err) < 0 ||
	    images_acquire(d, name, version, lower, err) < 0)
		return -1;
	return 0;
}

static void image_unhold(struct cellsd *d, const char *ref)
{
	char name[POL_IMAGE_NAME_MAX + 1];
	uint64_t version;
	if (ref[0] && pol_image_ref_parse(ref, name, &version, NULL) == 0)
		images_release(d, name, version);
}

static void image_drop(struct cellsd *d, struct vp_rt *rt)
{
	image_unhold(d, rt->image);
	rt->image[0] = 0;
}

/* The init of rt has exited (status) or is gone: tear down and notify. */

static void vp_stopped(struct cellsd *d, struct vp_rt *rt, int status)
{
	struct vpm *m = d->vpm;
	cells_err_t err = {0};
	int64_t t0 = cells_mono_ns();
	if (rt->kill_timer) {
		loop_cancel_timer(d->loop, rt->kill_timer);
		rt->kill_timer = 0;
	}
	if (rt->pidfd >= 0) {
		loop_del_fd(d->loop, rt->pidfd);
		close(rt->pidfd);
		rt->pidfd = -1;
	}
	rt_unlink(m, rt);
	for (size_t i = 0; i < m->nlisteners; i++)
		if (m->listeners[i].on_stop)
			m->listeners[i].on_stop(d, rt->name, m->listeners[i].data);
	release_host(d, rt->name, &rt->cg, rt->nat ? rt->veth : NULL, &err);
	image_drop(d, rt);
	log_debug("VP %s stop: released at %.2f ms", rt->name, (cells_mono_ns() - t0) / 1e6);
	/* a stopped encrypted VP's files are ciphertext until it starts again (Android's
	 * credential-encrypted storage): its fscrypt key leaves the kernel */
	if (d->wipe && wipe_vp_encrypted(d, rt->name) &&
	    wipe_vp_storage_lock(d, rt->name, true, &err) < 0)
		log_warn("VP %s: %s", rt->name, err.msg);
	if (rt->nat && !any_nat(m, rt)) {
		char t[32];
		nat_table(m, t, sizeof t);
		if (knet_nat_del(t, &err) < 0)
			log_warn("VP %s: %s", rt->name, err.msg);
	}
	/* a transient VP's row goes away right after (and is removed on restart) */
	if (!rt->transient && (db_set_state(d, rt->name, "stopped", 0, 0, -1, &err) < 0 ||
			       db_set_image(d, rt->name, "image_run", "", &err) < 0))
		log_warn("VP %s: %s", rt->name, err.msg);
	json_object *det = json_object_new_object();
	json_object_object_add(det, "status", json_object_new_int(status));
	cellsd_audit(d, rt->name, "cellsd", "vp.stopped", "ok", det, NULL);
	json_object_put(det);
	log_info("VP %s stopped (status %d) in %.2f ms", rt->name, status,
		 (cells_mono_ns() - t0) / 1e6);
	struct vp_waiter *w = rt->waiters;
	rt->waiters = NULL;
	char name[33];
	snprintf(name, sizeof name, "%s", rt->name);
	free(rt);
	while (w) {
		struct vp_waiter *n = w->next;
		w->cb(d, name, status, w->data);
		free(w);
		w = n;
	}
}

static int reap_status(int pidfd)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return -1; /* not our child (adopted) or not exited */
	return si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
}

static void on_init_exit(struct loop *l, int fd, uint32_t events, void *data)
{
	struct cellsd *d = data;
	for (struct vp_rt *r = d->vpm->running; r; r = r->next)
		if (r->pidfd == fd) {
			vp_stopped(d, r, reap_status(fd));
			return;
		}
	loop_del_fd(l, fd);
}

/* ---- start ---- */

static int path_ok(const char *p, cells_err_t *err)
{
	if (strpbrk(p, ",:\\\n"))
		return cells_err_set(err, EINVAL,
				     "path '%s' holds one of , : \\ (not usable by overlayfs)", p);
	return 0;
}

/* Holding the init at its first instruction. A VP's devices (the nodes its policy grants
 * in its /dev, the device cgroup rules) must be in place before its init runs: Android's
 * init and systemd look at /dev when they boot. The init's /dev exists only once it has
 * pivoted into its root, right before its exec, so cellsd traces it from before its
 * release (PTRACE_SEIZE, PTRACE_O_TRACEEXEC): the kernel stops it at the exec, before
 * the first instruction of the VP's program; the on_ready listeners run; cellsd
 * detaches. PTRACE_O_EXITKILL: should cellsd die meanwhile, the init dies with it.
 * Safe: the tracee is cellsd's own child, not yet running anything of the VP's; the
 * tracer does nothing but wait for the exec stop and detach. */
static bool hold_init(pid_t pid)
{
	return ptrace(PTRACE_SEIZE, pid, NULL,
		      (void *)(long)(PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL)) == 0;
}

/* Wait until the held init stops at its exec (after ksp_release said it exec'd). */
static int wait_exec_stop(pid_t pid, cells_err_t *err)
{
	for (int i = 0; i < 64; i++) {
		int st;
		if (waitpid(pid, &st, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			return cells_err_sys(err, errno, "wait for the init's exec");
		}
		if (!WIFSTOPPED(st))
			return cells_err_set(err, ECHILD, "the VP's init died at its exec");
		if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_EXEC << 8)))
			return 0;
		/* a stop before the exec: deliver a signal on, let a group-stop go */
		int sig = (st >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(st);
		ptrace(PTRACE_CONT, pid, NULL, (void *)(long)sig);
	}
	return cells_err_set(err, EIO, "the VP's init never stopped at its exec");
}

/* Start the VP of row on the lower layer `lower` (a local image dir or a mounted signed
 * image, image_ref "NAME@VERSION" then, else NULL). */
static int start_on(struct cellsd *d, const char *vp, const struct vp_row *row, const char *lower,
		    const char *image_ref, char *const *init, const int stdio[3], cells_err_t *err)
{
	struct vpm *m = d->vpm;
	struct vp_rt *rt = calloc(1, sizeof *rt);
	if (!rt)
		return cells_err_set(err, ENOMEM, "out of memory");
	snprintf(rt->name, sizeof rt->name, "%s", vp);
	snprintf(rt->image, sizeof rt->image, "%s", image_ref ? image_ref : "");
	rt->pidfd = -1;
	rt->cg.v2_fd = -1;
	rt->nat = !strcmp(row->def.net, "nat");
	rt->transient = row->transient;
	rt->slot = (unsigned)row->slot;
	veth_name(m, row->slot, rt->veth, sizeof rt->veth);
	char upper[PATH_MAX], work[PATH_MAX], root[PATH_MAX], devcells[PATH_MAX];
	char opts[3 * PATH_MAX + 64], cgn[64];
	if (vp_data_dirs(d, vp, upper, work, err) < 0) {
		free(rt);
		return -1;
	}
	vp_paths(d, vp, "root", root, sizeof root);
	vp_paths(d, vp, "devcells", devcells, sizeof devcells);
	snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
	cg_name(m, vp, cgn, sizeof cgn);
	int rc = -1, go = -1, efd = -1;
	int64_t t0 = cells_mono_ns();
#define T(what) log_debug("VP %s start: %s at %.2f ms", vp, what, (cells_mono_ns() - t0) / 1e6)
	bool mounted = false, held = false, linked = false;
	char selinux[256];
	int se = 0;
	if (cells_mkdir_p(upper, 0755, err) < 0 || cells_mkdir_p(work, 0700, err) < 0 ||
	    cells_mkdir_p(root, 0755, err) < 0 || cells_mkdir_p(devcells, 0755, err) < 0)
		goto fail;
	if (vp_uid_base(d, vp, &rt->uid_base, err) < 0 ||
	    own_storage(upper, work, rt->uid_base, err) < 0)
		goto fail;
	T("id range");
	if (mount("tmpfs", devcells, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=16m") < 0) {
		cells_err_sys(err, errno, "mount devcells %s", devcells);
		goto fail;
	}
	mounted = true;
	T("devcells");
	if (kcg_init(&rt->cg, cgn, err) < 0)
		goto fail;
	struct kcg_limits lim = {.memory = row->def.memory,
				 .pids = row->def.pids ? row->def.pids : 1024};
	if (kcg_create(&rt->cg, &lim, err) < 0)
		goto fail;
	T("cgroups");
	se = ksec_selinux_context((unsigned)row->slot, selinux, sizeof selinux, err);
	if (se < 0)
		goto fail;
	if (se == 0 && !m->selinux_logged) {
		log_info("SELinux is disabled: VPs run without their own SELinux context");
		m->selinux_logged = true;
	}
	char *def_init[] = {"/sbin/init", NULL};
	struct ksp_init s = {
	    .root = root,
	    .overlay_opts = opts,
	    .image = lower,
	    .upper = upper,
	    .work = work,
	    .devcells = devcells,
	    .hostname = row->def.hostname,
	    .cgroup_fd = rt->cg.v2_fd,
	    .c = {.seccomp = &m->seccomp,
		  .caps_keep = m->caps,
		  .cap_last = m->cap_last,
		  .selinux_exec = se > 0 ? selinux : NULL,
		  .stdio = {stdio ? stdio[0] : -1, stdio ? stdio[1] : -1, stdio ? stdio[2] : -1},
		  .argv = init		  ? init
			  : row->def.init ? row->def.init
					  : def_init,
		  .envp = default_env,
		  .cwd = "/",
		  .fallback = init || row->def.init ? NULL : "/bin/sh",
		  .id_base = rt->uid_base},
	};
	if (ksp_spawn_init(&s, &rt->pid, &rt->pidfd, &go, &efd, err) < 0)
		goto fail;
	T("clone3");
	if (kcg_attach(&rt->cg, rt->pid, rt->cg.v2_fd < 0, err) < 0)
		goto fail;
	T("attach");
	held = hold_init(rt->pid);
	if (!held && !m->hold_logged) {
		log_warn("cannot hold a VP's init at its exec (ptrace: %s): VPs get their devices "
			 "while their init already runs",
			 strerror(errno));
		m->hold_logged = true;
	}
	if (rt->nat) {
		char t[32], prefix[16];
		nat_table(m, t, sizeof t);
		snprintf(prefix, sizeof prefix, "cv%.6s", m->id);
		uint8_t h[SHA256_DIGEST_LENGTH];
		char seed[128];
		snprintf(seed, sizeof seed, "%s/%s", m->id, vp);
		SHA256((const uint8_t *)seed, strlen(seed), h);
		if (knet_alloc_block(((unsigned)h[0] << 8 | h[1]) % 16384, &rt->addr, err) < 0 ||
		    knet_veth_setup(rt->veth, rt->pid, &rt->addr, err) < 0 ||
		    (!any_nat(m, NULL) && knet_nat_setup(t, prefix, err) < 0))
			goto fail;
	}
	for (size_t i = 0; i < m->nlisteners; i++)
		if (m->listeners[i].on_start)
			m->listeners[i].on_start(d, vp, m->listeners[i].data);
	rc = ksp_release(go, efd, err);
	go = efd = -1;
	if (rc < 0)
		goto fail;
	if (held && wait_exec_stop(rt->pid, err) < 0)
		goto fail;
	T("exec");
	/* the init is held at its first instruction: its root and /dev are in place */
	rt->next = m->running;
	m->running = rt;
	linked = true;
	for (size_t i = 0; i < m->nready; i++)
		m->ready[i].fn(d, vp, m->ready[i].data);
	if (held && ptrace(PTRACE_DETACH, rt->pid, NULL, NULL) < 0) {
		cells_err_sys(err, errno, "let the init run");
		goto fail;
	}
	held = false;
	T("ready");
	rt->start_time = ksp_start_time(rt->pid);
	if (db_set_state(d, vp, "running", rt->pid, rt->start_time,
			 rt->nat ? (int)rt->addr.block : -1, err) < 0)
		goto fail;
	if (loop_add_fd(d->loop, rt->pidfd, EPOLLIN, on_init_exit, d, err) < 0)
		goto fail;
	if (db_set_image(d, vp, "image_run", rt->image, err) < 0)
		goto fail;
	T("recorded");
#undef T
	log_info("VP %s started: init pid %d", vp, (int)rt->pid);
	return 0;
fail:
	cells_err_prefix(err, "start VP %s", vp);
	if (linked)
		rt_unlink(m, rt);
	if (go >= 0)
		close(go);
	if (efd >= 0)
		close(efd);
	if (rt->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, rt->pidfd, SIGKILL, NULL, 0);
		siginfo_t si;
		waitid(P_PIDFD, (id_t)rt->pidfd, &si, WEXITED);
		close(rt->pidfd);
	}
	cells_err_t e2;
	if (mounted || rt->cg.name[0])
		release_host(d, vp, &rt->cg, rt->nat ? rt->veth : NULL, &e2);
	if (rt->nat && !any_nat(m, NULL)) {
		char t[32];
		nat_table(m, t, sizeof t);
		knet_nat_del(t, &e2);
	}
	free(rt);
	return -1;
}

/* Start on the signed image ref (images_acquire), holding it while the VP runs. */
static int start_image(struct cellsd *d, const char *vp, const struct vp_row *row, const char *ref,
		       char *const *init, const int stdio[3], cells_err_t *err)
{
	char lower[PATH_MAX];
	if (image_hold(d, ref, lower, err) < 0)
		return cells_err_prefix(err, "start VP %s: image %s", vp, ref);
	if (start_on(d, vp, row, lower, ref, init, stdio, err) < 0) {
		image_unhold(d, ref);
		return -1;
	}
	return 0;
}

/* The image a VP starts on: the policy's "NAME@VERSION" when its rule names one, else the
 * local image dir of its definition. A/B: a signed image that fails to start (not on the
 * device, or its init cannot be started) gives way to the last one the VP started on
 * (image_good), with an audit record; image_good moves only once a new one has started. */
int vpm_start(struct cellsd *d, const char *vp, char *const *init, const int stdio[3],
	      cells_err_t *err)
{
	struct vpm *m = d->vpm;
	struct vp_row row;
	int g = db_get(d, vp, &row, err);
	if (g < 0)
		return -1;
	if (g == 0)
		return cells_err_set(err, ENOENT, "no VP named '%s'", vp);
	if (rt_find(m, vp)) {
		row_free(&row);
		return cells_err_set(err, EBUSY, "VP '%s' is already running", vp);
	}
	const struct pol_vp_rule *r = policy_vp_rule(d, vp);
	char want[POL_IMAGE_REF_MAX + 1];
	snprintf(want, sizeof want, "%s", r ? r->image : "");
	int rc;
	if (!want[0]) {
		struct stat st;
		if (stat(row.def.image, &st) < 0 || !S_ISDIR(st.st_mode))
			rc = cells_err_sys(err, errno ? errno : ENOTDIR, "VP %s: image %s", vp,
					   row.def.image);
		else
			rc = start_on(d, vp, &row, row.def.image, NULL, init, stdio, err);
		row_free(&row);
		return rc;
	}
	rc = start_image(d, vp, &row, want, init, stdio, err);
	if (rc == 0 && strcmp(row.image_good, want)) {
		/* the new one started: it becomes the one to fall back on, the old one goes */
		cells_err_t e2;
		char lower[PATH_MAX];
		if (image_hold(d, want, lower, &e2) < 0)
			log_warn("VP %s: %s", vp, e2.msg);
		image_unhold(d, row.image_good);
		json_object *det = json_object_new_object();
		json_object_object_add(det, "image", json_object_new_string(want));
		json_object_object_add(det, "previous", json_object_new_string(row.image_good));
		cellsd_audit(d, vp, "cellsd", "vp.image", "ok", det, NULL);
		json_object_put(det);
		if (db_set_image(d, vp, "image_good", want, &e2) < 0)
			log_warn("VP %s: %s", vp, e2.msg);
	} else if (rc < 0 && row.image_good[0] && strcmp(row.image_good, want)) {
		json_object *det = json_object_new_object();
		json_object_object_add(det, "image", json_object_new_string(want));
		json_object_object_add(det, "fallback", json_object_new_string(row.image_good));
		json_object_object_add(det, "reason", json_object_new_string(err->msg));
		cellsd_audit(d, vp, "cellsd", "vp.image", "fallback", det, NULL);
		json_object_put(det);
		log_warn("VP %s: %s: starting on %s again", vp, err->msg, row.image_good);
		rc = start_image(d, vp, &row, row.image_good, init, stdio, err);
	}
	row_free(&row);
	return rc;
}

/* ---- stop ---- */

static bool wait_pidfd(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0;
}

int vpm_stop(struct cellsd *d, const char *vp, cells_err_t *err)
{
	struct vp_rt *rt = rt_find(d->vpm, vp);
	if (!rt)
		return vpm_exists(d, vp)
			   ? cells_err_set(err, EALREADY, "VP '%s' is not running", vp)
			   : cells_err_set(err, ENOENT, "no VP named '%s'", vp);
	syscall(SYS_pidfd_send_signal, rt->pidfd, SIGTERM, NULL, 0);
	if (!wait_pidfd(rt->pidfd, VPM_STOP_GRACE_MS)) {
		log_warn("VP %s: init ignored SIGTERM for %d ms: killing it", vp,
			 VPM_STOP_GRACE_MS);
		syscall(SYS_pidfd_send_signal, rt->pidfd, SIGKILL, NULL, 0);
		wait_pidfd(rt->pidfd, 5000);
	}
	vp_stopped(d, rt, reap_status(rt->pidfd));
	return 0;
}

static void on_kill_timer(struct loop *l, void *data)
{
	struct vp_rt *rt = data;
	rt->kill_timer = 0;
	log_warn("VP %s: init ignored SIGTERM for %d ms: killing it", rt->name, VPM_STOP_GRACE_MS);
	syscall(SYS_pidfd_send_signal, rt->pidfd, SIGKILL, NULL, 0);
}

int vpm_stop_async(struct cellsd *d, const char *vp,
		   void (*cb)(struct cellsd *d, const char *vp, int status, void *data), void *data,
		   cells_err_t *err)
{
	struct vp_rt *rt = rt_find(d->vpm, vp);
	if (!rt)
		return vpm_exists(d, vp)
			   ? cells_err_set(err, EALREADY, "VP '%s' is not running", vp)
			   : cells_err_set(err, ENOENT, "no VP named '%s'", vp);
	if (vpm_on_exit(d, vp, cb, data, err) < 0)
		return -1;
	if (!rt->kill_timer) {
		syscall(SYS_pidfd_send_signal, rt->pidfd, SIGTERM, NULL, 0);
		rt->kill_timer = loop_add_timer(d->loop, VPM_STOP_GRACE_MS, on_kill_timer, rt);
	}
	return 0;
}

int vpm_on_exit(struct cellsd *d, const char *vp,
		void (*cb)(struct cellsd *d, const char *vp, int status, void *data), void *data,
		cells_err_t *err)
{
	struct vp_rt *rt = rt_find(d->vpm, vp);
	if (!rt)
		return cells_err_set(err, ESRCH, "VP '%s' is not running", vp);
	struct vp_waiter *w = calloc(1, sizeof *w);
	if (!w)
		return cells_err_set(err, ENOMEM, "out of memory");
	w->cb = cb;
	w->data = data;
	w->next = rt->waiters;
	rt->waiters = w;
	return 0;
}

/* ---- create / destroy ---- */

/* A VP was made or removed: the on_change listeners. */
static void notify_change(struct cellsd *d, const char *vp)
{
	struct vpm *m = d->vpm;
	for (size_t i = 0; i < m->nlisteners; i++)
		if (m->listeners[i].on_change)
			m->listeners[i].on_change(d, vp, m->listeners[i].data);
}

int vpm_create(struct cellsd *d, const struct vpm_def *def, cells_err_t *err)
{
	if (cells_valid_name(def->name, err) < 0)
		return -1;
	if (def->image[0] != '/')
		return cells_err_set(err, EINVAL, "image '%s' must be an absolute path",
				     def->image);
	struct stat st;
	if (stat(def->image, &st) < 0)
		return cells_err_sys(err, errno, "image %s", def->image);
	if (!S_ISDIR(st.st_mode))
		return cells_err_set(err, ENOTDIR, "image %s is not a directory", def->image);
	char real[PATH_MAX];
	if (!realpath(def->image, real))
		return cells_err_sys(err, errno, "image %s", def->image);
	if (path_ok(real, err) < 0 || path_ok(d->state_dir, err) < 0)
		return -1;
	if (strcmp(def->net, "nat") && strcmp(def->net, "none"))
		return cells_err_set(err, EINVAL, "net must be 'nat' or 'none', not '%s'",
				     def->net);
	for (const char *h = def->hostname; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || *h == '-' || *h == '.'))
			return cells_err_set(err, EINVAL, "hostname '%s' is not valid",
					     def->hostname);
	if (def->memory && def->memory < (4u << 20))
		return cells_err_set(err, EINVAL, "memory limit below 4 MiB");
	json_object *init = json_object_new_array();
	for (char **p = def->init; p && *p; p++) {
		if (!**p) {
			json_object_put(init);
			return cells_err_set(err, EINVAL, "empty word in the init command");
		}
		json_object_array_add(init, json_object_new_string(*p));
	}
	cleanup_free char *init_js =
	    strdup(json_object_to_json_string_ext(init, JSON_C_TO_STRING_PLAIN));
	json_object_put(init);
	if (!init_js)
		return cells_err_set(err, ENOMEM, "out of memory");
	struct vp_row old;
	int g = db_get(d, def->name, &old, err);
	if (g < 0)
		return -1;
	if (g > 0) {
		row_free(&old);
		return cells_err_set(err, EEXIST, "a VP named '%s' already exists", def->name);
	}
	cleanup_stmt sqlite3_stmt *ins = NULL;
	if (sqldb_prepare(d->db,
			  "INSERT INTO vp(name,image,net,memory,pids,init,hostname,slot,transient,"
			  "created_us) VALUES(?,?,?,?,?,?,?,"
			  "(SELECT COALESCE(MIN(s.slot+1),1) FROM (SELECT 0 AS slot UNION ALL "
			  "SELECT slot FROM vp) s WHERE NOT EXISTS (SELECT 1 FROM vp v WHERE "
			  "v.slot=s.slot+1)),?,?)",
			  &ins, err) < 0)
		return -1;
	sqlite3_bind_text(ins, 1, def->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(ins, 2, real, -1, SQLITE_STATIC);
	sqlite3_bind_text(ins, 3, def->net, -1, SQLITE_STATIC);
	sqlite3_bind_int64(ins, 4, (sqlite3_int64)def->memory);
	sqlite3_bind_int64(ins, 5, def->pids);
	sqlite3_bind_text(ins, 6, init_js, -1, SQLITE_STATIC);
	sqlite3_bind_text(ins, 7, def->hostname[0] ? def->hostname : def->name, -1, SQLITE_STATIC);
	sqlite3_bind_int(ins, 8, def->transient ? 1 : 0);
	sqlite3_bind_int64(ins, 9, cells_now_us());
	if (sqlite3_step(ins) != SQLITE_DONE)
		return sqldb_err(d->db, "insert vp", err);
	uint32_t base;
	if (vp_uid_base(d, def->name, &base, err) < 0)
		return -1;
	notify_change(d, def->name);
	return 0;
}

static int set_transient(struct cellsd *d, const char *vp, cells_err_t *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "UPDATE vp SET transient=1 WHERE name=?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_DONE ? 0 : sqldb_err(d->db, "update vp", err);
}

static int remove_files(struct cellsd *d, const char *vp, cells_err_t *err)
{
	char p[PATH_MAX];
	vp_paths(d, vp, ".", p, sizeof p);
	p[strlen(p) - 2] = 0; /* STATE/vp/NAME */
	return cells_rm_rf(p, err);
}

int vpm_destroy(struct cellsd *d, const char *vp, cells_err_t *err)
{
	if (cells_valid_name(vp, err) < 0)
		return -1;
	struct vp_row r;
	int g = db_get(d, vp, &r, err);
	if (g < 0)
		return -1;
	if (g == 0)
		return cells_err_set(err, ENOENT, "no VP named '%s'", vp);
	char good[POL_IMAGE_REF_MAX + 1];
	snprintf(good, sizeof good, "%s", r.image_good);
	row_free(&r);
	/* encrypted data goes by crypto-erase: the wipe stops the VP, destroys its key and
	 * data (crash-safe, with a receipt) and then removes the VP through this function
	 * again, when it no longer has storage */
	if (wipe_vp_has_storage(d, vp))
		return wipe_start(d, vp, "destroy", false, err);
	if (rt_find(d->vpm, vp) && vpm_stop(d, vp, err) < 0)
		return -1;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "DELETE FROM vp WHERE name=?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, vp, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		return sqldb_err(d->db, "delete vp", err);
	image_unhold(d, good);
	notify_change(d, vp);
	if (remove_files(d, vp, err) < 0)
		return cells_err_prefix(err, "destroy VP %s", vp);
	return 0;
}

int vpm_mark_transient(struct cellsd *d, const char *vp, cells_err_t *err)
{
	return set_transient(d, vp, err);
}

/* ---- describe ---- */

static json_object *row_json(struct cellsd *d, const struct vp_row *r)
{
	struct vp_rt *rt = rt_find(d->vpm, r->def.name);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(r->def.name));
	json_object_object_add(o, "state", json_object_new_string(rt ? "running" : "stopped"));
	json_object_object_add(o, "image", json_object_new_string(r->def.image));
	/* the signed image: the one the running VP uses ("" on its local image), the last
	 * one it started on (its fallback), the one the policy asks for */
	const struct pol_vp_rule *pr = policy_vp_rule(d, r->def.name);
	json_object_object_add(o, "image_running", json_object_new_string(rt ? rt->image : ""));
	json_object_object_add(o, "image_good", json_object_new_string(r->image_good));
	json_object_object_add(o, "image_policy", json_object_new_string(pr ? pr->image : ""));
	json_object_object_add(o, "net", json_object_new_string(r->def.net));
	json_object_object_add(o, "hostname", json_object_new_string(r->def.hostname));
	json_object_object_add(o, "memory_limit", json_object_new_int64((int64_t)r->def.memory));
	json_object_object_add(o, "pids_limit",
			       json_object_new_int64(r->def.pids ? r->def.pids : 1024));
	json_object *init = json_object_new_array();
	for (char **p = r->def.init; p && *p; p++)
		json_object_array_add(init, json_object_new_string(*p));
	json_object_object_add(o, "init", init);
	json_object_object_add(o, "pid", json_object_new_int(rt ? rt->pid : 0));
	json_object_object_add(o, "uid_base", json_object_new_int64(r->uid_base));
	const char *fvp = fg_current(d);
	json_object_object_add(o, "foreground",
			       json_object_new_boolean(rt && fvp && !strcmp(fvp, r->def.name)));
	if (rt) {
		json_object_object_add(o, "cgroup", json_object_new_string(rt->cg.name));
		json_object_object_add(o, "memory_bytes",
				       json_object_new_int64((int64_t)kcg_memory_usage(&rt->cg)));
		if (rt->nat) {
			json_object_object_add(o, "veth", json_object_new_string(rt->veth));
			json_object_object_add(o, "address", json_object_new_string(rt->addr.vp));
			json_object_object_add(o, "host_address",
					       json_object_new_string(rt->addr.host));
		}
	}
	return o;
}

json_object *vpm_describe(struct cellsd *d, const char *vp, cells_err_t *err)
{
	if (vp) {
		if (cells_valid_name(vp, err) < 0)
			return NULL;
		struct vp_row r;
		int g = db_get(d, vp, &r, err);
		if (g <= 0) {
			if (g == 0)
				cells_err_set(err, ENOENT, "no VP named '%s'", vp);
			return NULL;
		}
		json_object *o = row_json(d, &r);
		row_free(&r);
		return o;
	}
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT " ROW_COLS " FROM vp ORDER BY name", &st, err) < 0)
		return NULL;
	json_object *arr = json_object_new_array();
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct vp_row r;
		row_from_stmt(st, &r);
		json_object_array_add(arr, row_json(d, &r));
		row_free(&r);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "vps", arr);
	/* the per-agent id in the names of cgroups (cells-ID-VP), veths, nft table */
	json_object_object_add(o, "instance", json_object_new_string(d->vpm->id));
	return o;
}

/* ---- exec ---- */

int vpm_exec(struct cellsd *d, const char *vp, char *const argv[], char *const envp[],
	     const char *cwd, const int stdio[3], int *pidfd, cells_err_t *err)
{
	struct vpm *m = d->vpm;
	struct vp_rt *rt = rt_find(m, vp);
	if (!rt)
		return vpm_exists(d, vp) ? cells_err_set(err, ESRCH, "VP '%s' is not running", vp)
					 : cells_err_set(err, ENOENT, "no VP named '%s'", vp);
	if (!argv || !argv[0] || !argv[0][0])
		return cells_err_set(err, EINVAL, "no command given");
	if (cwd && cwd[0] != '/')
		return cells_err_set(err, EINVAL, "working directory '%s' must be absolute", cwd);
	char selinux[256];
	int se = ksec_selinux_context(rt->slot, selinux, sizeof selinux, err);
	if (se < 0)
		return -1;
	int procs[KCG_MAX_V1 + 1];
	size_t np = kcg_open_procs(&rt->cg, procs, CELLS_ARRAY_SIZE(procs));
	struct ksp_confine c = {.seccomp = &m->seccomp,
				.caps_keep = m->caps,
				.cap_last = m->cap_last,
				.selinux_exec = se > 0 ? selinux : NULL,
				.stdio = {stdio[0], stdio[1], stdio[2]},
				.argv = argv,
				.envp = envp ? envp : default_env,
				.cwd = cwd ? cwd : "/",
				.id_base = rt->uid_base};
	pid_t pid;
	int rc = ksp_exec(rt->pidfd, procs, np, &c, &pid, pidfd, err);
	for (size_t i = 0; i < np; i++)
		if (procs[i] >= 0)
			close(procs[i]);
	if (rc < 0)
		return cells_err_prefix(err, "exec in VP %s", vp);
	return 0;
}

/* ---- init / recovery / shutdown ---- */

static void instance_id(const char *state_dir, char out[9])
{
	uint8_t h[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];
	SHA256((const uint8_t *)state_dir, strlen(state_dir), h);
	cells_hex(h, sizeof h, hex);
	memcpy(out, hex, 8);
	out[8] = 0;
}

/* Adopt a VP whose init survived a cellsd restart; 0 adopted, -1 not. */
static int adopt(struct cellsd *d, const struct vp_row *r)
{
	struct vpm *m = d->vpm;
	if (r->init_pid <= 0 || !r->init_start || ksp_start_time(r->init_pid) != r->init_start)
		return -1;
	int fd = (int)syscall(SYS_pidfd_open, r->init_pid, 0);
	if (fd < 0)
		return -1;
	/* the start time again, now that the pidfd pins the process */
	if (ksp_start_time(r->init_pid) != r->init_start) {
		close(fd);
		return -1;
	}
	struct vp_rt *rt = calloc(1, sizeof *rt);
	cells_err_t e;
	char cgn[64];
	cg_name(m, r->def.name, cgn, sizeof cgn);
	if (!rt || kcg_init(&rt->cg, cgn, &e) < 0 ||
	    loop_add_fd(d->loop, fd, EPOLLIN, on_init_exit, d, &e) < 0) {
		free(rt);
		close(fd);
		return -1;
	}
	snprintf(rt->name, sizeof rt->name, "%s", r->def.name);
	rt->pid = r->init_pid;
	rt->pidfd = fd;
	rt->start_time = r->init_start;
	rt->nat = !strcmp(r->def.net, "nat");
	rt->transient = r->transient;
	rt->slot = (unsigned)r->slot;
	rt->uid_base = r->uid_base;
	veth_name(m, r->slot, rt->veth, sizeof rt->veth);
	if (r->net_block >= 0)
		knet_block_addr((unsigned)r->net_block, &rt->addr);
	kcg_adopt(&rt->cg);
	/* the VP's mount namespace keeps its image mounted; hold it again for the store */
	char lower[PATH_MAX];
	if (r->image_run[0]) {
		if (image_hold(d, r->image_run, lower, &e) == 0)
			snprintf(rt->image, sizeof rt->image, "%s", r->image_run);
		else
			log_warn("VP %s: %s", r->def.name, e.msg);
	}
	rt->next = m->running;
	m->running = rt;
	log_info("VP %s: found running again (init pid %d)", r->def.name, (int)r->init_pid);
	return 0;
}

static int recover(struct cellsd *d, cells_err_t *err)
{
	struct vpm *m = d->vpm;
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT " ROW_COLS " FROM vp", &st, err) < 0)
		return -1;
	const size_t max = 1024;
	cleanup_free struct vp_row *rows = calloc(max, sizeof *rows);
	size_t n = 0;
	if (!rows)
		return cells_err_set(err, ENOMEM, "out of memory");
	while (n < max && sqlite3_step(st) == SQLITE_ROW)
		row_from_stmt(st, &rows[n++]);
	sqlite3_finalize(st);
	st = NULL;
	bool nat_seen = false;
	for (size_t i = 0; i < n; i++) {
		struct vp_row *r = &rows[i];
		char lower[PATH_MAX];
		cells_err_t ie;
		if (r->image_good[0] && image_hold(d, r->image_good, lower, &ie) < 0)
			log_warn("VP %s: its fallback image: %s", r->def.name, ie.msg);
		bool adopted = !strcmp(r->state, "running") && adopt(d, r) == 0;
		if (!adopted) {
			/* clean up whatever the VP may still hold on the host */
			struct kcg cg;
			char cgn[64], veth[IFNAMSIZ];
			cells_err_t e;
			cg_name(m, r->def.name, cgn, sizeof cgn);
			veth_name(m, r->slot, veth, sizeof veth);
			if (kcg_init(&cg, cgn, &e) == 0)
				release_host(d, r->def.name, &cg, veth, &e);
			if (!strcmp(r->state, "running")) {
				log_info("VP %s: its init is gone; cleaned up", r->def.name);
				db_set_state(d, r->def.name, "stopped", 0, 0, -1, &e);
				cellsd_audit(d, r->def.name, "cellsd", "vp.stopped", "ok", NULL,
					     NULL);
			}
			if (r->transient && vpm_destroy(d, r->def.name, &e) < 0)
				log_warn("VP %s: %s", r->def.name, e.msg);
		}
		if (!strcmp(r->def.net, "nat"))
			nat_seen = true;
		row_free(r);
	}
	if (nat_seen && !any_nat(m, NULL)) {
		char t[32];
		cells_err_t e;
		nat_table(m, t, sizeof t);
		if (knet_nat_exists(t))
			knet_nat_del(t, &e);
	} else if (any_nat(m, NULL)) {
		/* VPs adopted in nat mode: their table is remade as this cellsd writes it
		 * (an older one may lack rules, e.g. the input chain that keeps VPs off
		 * the host) */
		char t[32], prefix[16];
		nat_table(m, t, sizeof t);
		snprintf(prefix, sizeof prefix, "cv%.6s", m->id);
		cells_err_t e;
		if (knet_nat_setup(t, prefix, &e) < 0)
			log_error("VPs found running: %s", e.msg);
	}
	return 0;
}

int vpm_init(struct cellsd *d, cells_err_t *err)
{
	if (sqldb_migrate(d->db, "vp", vp_schema, CELLS_ARRAY_SIZE(vp_schema), err) < 0)
		return -1;
	struct vpm *m = calloc(1, sizeof *m);
	if (!m)
		return cells_err_set(err, ENOMEM, "out of memory");
	instance_id(d->state_dir, m->id);
	m->caps = ksec_caps_keep();
	m->cap_last = ksec_cap_last();
	if (ksec_filter_build(&m->seccomp, err) < 0) {
		free(m);
		return cells_err_prefix(err, "VP seccomp filter");
	}
	d->vpm = m;
	int dl = kcg_v2_delegate(err);
	if (dl < 0)
		return cells_err_prefix(err, "cgroup v2 delegation");
	if (dl > 0)
		log_info("cgroup v2: moved the agent into a leaf cgroup (%s)", KCG_AGENT_LEAF);
	char p[PATH_MAX + 8];
	snprintf(p, sizeof p, "%s/vp", d->run_dir);
	if (cells_mkdir_p(p, 0700, err) < 0)
		return -1;
	snprintf(p, sizeof p, "%s/vp", d->state_dir);
	if (cells_mkdir_p(p, 0700, err) < 0)
		return -1;
	log_info("VP manager: instance id %s", m->id);
	return recover(d, err);
}

void vpm_shutdown(struct cellsd *d)
{
	struct vpm *m = d->vpm;
	if (!m)
		return;
	while (m->running) {
		cells_err_t e;
		char name[33];
		snprintf(name, sizeof name, "%s", m->running->name);
		if (vpm_stop(d, name, &e) < 0) {
			log_warn("%s", e.msg);
			break;
		}
	}
	ksec_filter_free(&m->seccomp);
	free(m);
	d->vpm = NULL;
}

/* ---- for the VP lock (vplock.c) ---- */

struct kcg *vpm_kcg(struct cellsd *d, const char *vp)
{
	struct vp_rt *rt = rt_find(d->vpm, vp);
	return rt ? &rt->cg : NULL;
}

const char *vpm_veth(struct cellsd *d, const char *vp, char *buf, size_t n)
{
	struct vp_rt *rt = rt_find(d->vpm, vp);
	if (!rt || !rt->nat)
		return NULL;
	snprintf(buf, n, "%s", rt->veth);
	return buf;
}

json_object *vpm_names(struct cellsd *d)
{
	json_object *names = json_object_new_array();
	cleanup_stmt sqlite3_stmt *st = NULL;
	if (sqldb_prepare(d->db, "SELECT name FROM vp ORDER BY name", &st, NULL) < 0)
		return names;
	while (sqlite3_step(st) == SQLITE_ROW)
		json_object_array_add(
		    names, json_object_new_string((const char *)sqlite3_column_text(st, 0)));
	return names;
}
