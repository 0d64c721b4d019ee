/* devns.c - device namespaces in cellsd (see devns.h). */
#include "devns.h"
#include "audit.h"
#include "cleanup.h"
#include "devmode.h"
#include "devnode.h"
#include "devprofile.h"
#include "enforce.h"
#include "fg.h"
#include "handlers_devices.h"
#include "ksm.h"
#include "log.h"
#include "memory.h"
#include "oom.h"
#include "power.h"
#include "testhook.h"
#include "util.h"
#include "vpm.h"
#include "wifi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define OOM_SWEEP_MS 2000

static struct {
	char profile[PATH_MAX];
	char power_backend[16];
	char wpa_ctrl[108];
	struct memory_cfg mem;
	bool set;
} cfg;

static void cfg_defaults(void)
{
	if (cfg.set)
		return;
	snprintf(cfg.power_backend, sizeof cfg.power_backend, "auto");
	snprintf(cfg.wpa_ctrl, sizeof cfg.wpa_ctrl, "/run/wpa_supplicant/wlan0");
	memory_cfg_defaults(&cfg.mem);
	cfg.set = true;
}

int devns_option(const char *name, const char *value, cells_err_t *err)
{
	cfg_defaults();
	char *end;
	long v;
	if (!strcmp(name, "device-profile"))
		snprintf(cfg.profile, sizeof cfg.profile, "%s", value);
	else if (!strcmp(name, "power-backend")) {
		if (strcmp(value, "auto") && strcmp(value, "sysfs") && strcmp(value, "record"))
			return cells_err_set(err, EINVAL, "--power-backend: auto, sysfs or record");
		snprintf(cfg.power_backend, sizeof cfg.power_backend, "%s", value);
	} else if (!strcmp(name, "wpa-ctrl")) {
		if (strlen(value) >= sizeof cfg.wpa_ctrl)
			return cells_err_set(err, ENAMETOOLONG, "--wpa-ctrl: path too long");
		snprintf(cfg.wpa_ctrl, sizeof cfg.wpa_ctrl, "%s", value);
	} else if (!strcmp(name, "ksm")) {
		if (strcmp(value, "on") && strcmp(value, "off"))
			return cells_err_set(err, EINVAL, "--ksm: on or off");
		cfg.mem.ksm = !strcmp(value, "on");
	} else if (!strcmp(name, "ksm-threshold")) {
		v = strtol(value, &end, 10);
		if (*end || v < 0 || v > 1000000)
			return cells_err_set(err, EINVAL, "--ksm-threshold: pages per second");
		cfg.mem.ksm_threshold = (unsigned)v;
	} else if (!strcmp(name, "bvp-oom-adj")) {
		v = strtol(value, &end, 10);
		if (*end || v < 0 || v > 1000)
			return cells_err_set(err, EINVAL, "--bvp-oom-adj: 0..1000");
		cfg.mem.bvp_adj = (int)v;
	} else
		return cells_err_set(err, EINVAL, "unknown option --%s", name);
	return 0;
}

struct devns {
	struct cellsd *d;
	struct devprofile *prof; /* owned */
	struct devmode dm;
	struct power power;
	struct wifi wifi;
	struct memory mem;
	uint64_t ksm_timer, oom_timer;
};

static void audit_cb(void *ctx, const char *vp, const char *event, const char *outcome,
		     json_object *details)
{
	struct devns *ns = ctx;
	cellsd_audit(ns->d, vp, "cellsd", event, outcome, details, NULL);
}

__attribute__((unused)) static const char *current_fg(struct devns *ns)
{
	return ns->dm.fg[0] ? ns->dm.fg : NULL;
}

/* The OOM order of every running VP. */
static void oom_sweep(struct devns *ns)
{
	const char *names[DEVMODE_MAX_VPS];
	pid_t inits[DEVMODE_MAX_VPS];
	size_t n = 0;
	for (size_t i = 0; i < ns->dm.nvps; i++) {
		if (!ns->dm.vps[i].running)
			continue;
		names[n] = ns->dm.vps[i].name;
		inits[n++] = vpm_init_pid(ns->d, ns->dm.vps[i].name);
	}
	cells_err_t err;
	if (memory_oom_apply(&ns->mem, current_fg(ns), names, inits, n, &err) < 0)
		log_warn("oom order: %s", err.msg);
}

static void on_oom_timer(struct loop *l, void *data)
{
	struct devns *ns = data;
	oom_sweep(ns);
	ns->oom_timer = loop_add_timer(l, OOM_SWEEP_MS, on_oom_timer, ns);
}

__attribute__((unused)) static void on_ksm_timer(struct loop *l, void *data)
{
	struct devns *ns = data;
	cells_err_t err;
	ns->ksm_timer = 0;
	int r = memory_ksm_sample(&ns->mem, cells_mono_ns() / 1000000, &err);
	if (r < 0)
		log_warn("ksm: %s", err.msg);
	if (r == 1)
		ns->ksm_timer = loop_add_timer(l, ns->mem.cfg.ksm_interval_ms, on_ksm_timer, ns);
}

static void foreground_changed(struct devns *ns, const char *vp)
{
	if (!ns)
		return;
	cells_err_t err;
	if (devmode_set_foreground(&ns->dm, vp, &err) < 0)
		log_error("foreground devices: %s", err.msg);
	if (power_set_foreground(&ns->power, vp, &err) < 0)
		log_error("power: %s", err.msg);
	wifi_set_foreground(&ns->wifi, vp);
	oom_sweep(ns);
}

void devns_foreground_changed(struct cellsd *d, const char *vp)
{
	foreground_changed(d->devns, vp);
}

static int op_dev_apply(void *ctx, const char *vp, const struct kcg_dev *rules, size_t n,
			cells_err_t *err)
{
	struct devns *ns = ctx;
	for (size_t i = 0; i < n; i++) {
		char what[48];
		snprintf(what, sizeof what, "%s:%c%u:%u", rules[i].allow ? "allow" : "deny",
			 rules[i].type, rules[i].major, rules[i].minor);
		if (testhook_fail("dev_set", what, err) < 0)
			return cells_err_prefix(err, "VP %s", vp);
	}
	return vpm_dev_apply(ns->d, vp, rules, n, err);
}

static int op_node_set(void *ctx, const char *vp, const struct devprofile_node *n, bool present,
		       cells_err_t *err)
{
	struct devns *ns = ctx;
	char what[DEVPROFILE_PATH_MAX + 8];
	snprintf(what, sizeof what, "%s:%s", present ? "add" : "del", n->path);
	if (testhook_fail("node_set", what, err) < 0)
		return cells_err_prefix(err, "VP %s", vp);
	pid_t pid = vpm_init_pid(ns->d, vp);
	if (pid <= 0)
		return present ? cells_err_set(err, ESRCH, "VP %s is not running", vp) : 0;
	return devnode_set(pid, n->path, n->type, n->major, n->minor, n->perm, present, err);
}

static void on_power_fd(struct loop *l, int fd, uint32_t events, void *data);
static void on_wifi_fd(struct loop *l, int fd, uint32_t events, void *data);

static void vp_ready(struct devns *ns, const char *vp)
{
	cells_err_t err;
	pid_t pid = vpm_init_pid(ns->d, vp);
	if (devmode_vp_started(&ns->dm, vp, &err) < 0)
		log_error("VP %s: device modes: %s", vp, err.msg);
	struct power_vp *pv = NULL;
	for (size_t i = 0; i < POWER_MAX_VPS; i++)
		if (!strcmp(ns->power.vps[i].name, vp))
			pv = &ns->power.vps[i];
	if (pv && pv->master >= 0) {
		struct stat st;
		if (stat(pv->slave_path, &st) == 0 &&
		    (vpm_dev_set(ns->d, vp, 'c', major(st.st_rdev), minor(st.st_rdev), true, &err) <
			 0 ||
		     devnode_bind_in_ns(pid, pv->slave_path, "/dev/cells/power", &err) < 0))
			log_error("VP %s: /dev/cells/power: %s", vp, err.msg);
	}
	char buf[PATH_MAX];
	const char *dc = vpm_devcells_dir(ns->d, vp, buf);
	if (dc && wifi_vp_open(&ns->wifi, vp, dc, pid, &err) == 0) {
		int px, up;
		if (wifi_vp_fds(&ns->wifi, vp, &px, &up) == 0) {
			loop_add_fd(ns->d->loop, px, EPOLLIN, on_wifi_fd, ns, &err);
			loop_add_fd(ns->d->loop, up, EPOLLIN, on_wifi_fd, ns, &err);
		}
	} else if (dc)
		log_error("VP %s: %s", vp, err.msg);
	oom_sweep(ns);
}

static void on_vp_start(struct cellsd *d, const char *vp, void *data)
{
	struct devns *ns = data;
	cells_err_t err;
	char buf[PATH_MAX];
	const char *dc = vpm_devcells_dir(d, vp, buf);
	/* the power node's placeholder, so the VP's /dev/cells/power exists at once */
	const char *slave;
	unsigned maj, min;
	if (dc && power_vp_open(&ns->power, vp, &slave, &maj, &min, &err) == 0) {
		char p[PATH_MAX + 8];
		snprintf(p, sizeof p, "%s/power", dc);
		int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0)
			close(fd);
		loop_add_fd(d->loop, power_vp_master(&ns->power, vp), EPOLLIN, on_power_fd, ns,
			    &err);
	} else
		log_error("VP %s: power node: %s", vp, err.msg);
	if (memory_ksm_boot(&ns->mem, cells_mono_ns() / 1000000, &err) < 0)
		log_warn("ksm: %s", err.msg);
	else if (ns->mem.ksmd_on && !ns->ksm_timer)
		ns->ksm_timer =
		    loop_add_timer(d->loop, ns->mem.cfg.ksm_interval_ms, on_ksm_timer, ns);
}

/* The VP's init is held at its exec (vpm.h on_ready): its granted nodes and device
 * cgroup rules are made now, so that its first instruction already finds them. */
static void on_vp_ready(struct cellsd *d, const char *vp, void *data)
{
	vp_ready(data, vp);
}

static void on_vp_stop(struct cellsd *d, const char *vp, void *data)
{
	struct devns *ns = data;
	int m = power_vp_master(&ns->power, vp);
	if (m >= 0)
		loop_del_fd(d->loop, m);
	power_vp_close(&ns->power, vp);
	int px, up;
	if (wifi_vp_fds(&ns->wifi, vp, &px, &up) == 0) {
		loop_del_fd(d->loop, px);
		loop_del_fd(d->loop, up);
	}
	wifi_vp_close(&ns->wifi, vp);
	devmode_vp_stopped(&ns->dm, vp);
}

static void on_power_fd(struct loop *l, int fd, uint32_t events, void *data)
{
	struct devns *ns = data;
	for (size_t i = 0; i < POWER_MAX_VPS; i++)
		if (ns->power.vps[i].master == fd) {
			power_vp_input(&ns->power, ns->power.vps[i].name);
			return;
		}
}

static void on_wifi_fd(struct loop *l, int fd, uint32_t events, void *data)
{
	struct devns *ns = data;
	for (size_t i = 0; i < WIFI_MAX_VPS; i++) {
		if (ns->wifi.vps[i].proxy == fd)
			wifi_vp_input(&ns->wifi, ns->wifi.vps[i].name);
		else if (ns->wifi.vps[i].upstream == fd)
			wifi_vp_upstream(&ns->wifi, ns->wifi.vps[i].name);
	}
}

static void on_fg(struct cellsd *d, const char *old_vp, const char *new_vp, void *data)
{
	foreground_changed(data, new_vp);
}

/* The "devices" enforcer: validate (two exclusive holders, unsupported modes), then
 * change every running VP's devices; all or nothing. */
static int enforce_devices(struct cellsd *d, const struct pol_model *new_policy,
			   const struct pol_model *old_policy, cells_err_t *err)
{
	struct devns *ns = d->devns;
	if (devmode_set_policy(&ns->dm, new_policy, err) < 0)
		return cells_err_prefix(err, "devices");
	ns->wifi.bvp_status_allowed = new_policy->bvp_wifi_status_allowed;
	return 0;
}

/* Whether the policy in force lets the VP use the virtual device class cls: allowed
 * without a policy in force or when the profile lacks the class. */
static bool class_allowed(struct devns *ns, const char *vp, const char *cls)
{
	if (!ns->dm.policy_version || !devprofile_class(ns->prof, cls))
		return true;
	return devmode_mode(&ns->dm, vp, cls) != DEVMODE_NONE;
}

static bool wifi_allowed(void *ctx, const char *vp)
{
	return class_allowed(ctx, vp, "wifi");
}

static bool power_allowed(void *ctx, const char *vp)
{
	return class_allowed(ctx, vp, "power");
}

int devns_init(struct cellsd *d, cells_err_t *err)
{
	cfg_defaults();
	struct devns *ns = calloc(1, sizeof *ns);
	if (!ns)
		return cells_err_set(err, ENOMEM, "out of memory");
	ns->d = d;
	if (cfg.profile[0]) {
		if (devprofile_load(cfg.profile, &ns->prof, err) < 0)
			goto fail;
	} else {
		ns->prof = calloc(1, sizeof *ns->prof);
		if (!ns->prof) {
			cells_err_set(err, ENOMEM, "out of memory");
			goto fail;
		}
		snprintf(ns->prof->name, sizeof ns->prof->name, "none");
	}
	struct devmode_ops ops = {.audit = audit_cb, .ctx = ns};
	ops.dev_apply = op_dev_apply;
	ops.node_set = op_node_set;
	devmode_init(&ns->dm, ns->prof, &ops);
	char log[PATH_MAX + 16];
	snprintf(log, sizeof log, "%s/power.log", d->run_dir);
	struct power_backend be;
	if (power_backend_init(&be, cfg.power_backend, "/sys/power", log, err) < 0)
		goto fail;
	power_init(&ns->power, &be);
	ns->power.audit = audit_cb;
	ns->power.vp_allowed = power_allowed;
	ns->power.ctx = ns;
	if (wifi_init(&ns->wifi, cfg.wpa_ctrl, d->run_dir, err) < 0)
		goto fail;
	ns->wifi.audit = audit_cb;
	ns->wifi.vp_allowed = wifi_allowed;
	ns->wifi.ctx = ns;
	memory_init(&ns->mem, &cfg.mem);
	/* the agent protects itself from the OOM killer (best effort without
	 * CAP_SYS_RESOURCE); with KSM on, every VP init inherits the merge flag */
	cells_err_t e2;
	if (oom_set_adj(getpid(), OOM_ADJ_PROTECTED, &e2) < 0)
		log_warn("oom: cannot protect the agent: %s", e2.msg);
	if (cfg.mem.ksm && ksm_merge_self(true, &e2) < 0) {
		log_warn("ksm: %s; KSM off", e2.msg);
		ns->mem.cfg.ksm = false;
	}
	d->devns = ns;
	struct vpm_listener l = {.on_start = on_vp_start, .on_stop = on_vp_stop, .data = ns};
	if (vpm_add_listener(d, &l) < 0 || vpm_add_ready_listener(d, on_vp_ready, ns) < 0) {
		cells_err_set(err, ENOSPC, "devns: cannot add a VP listener");
		goto fail_registered;
	}
	if (fg_add_listener(d, on_fg, ns) < 0) {
		cells_err_set(err, ENOSPC, "devns: cannot add a foreground listener");
		goto fail_registered;
	}
	foreground_changed(ns, fg_current(d));
	struct enforcer en = {.name = "devices", .apply = enforce_devices};
	if (enforce_register(d, &en, err) < 0)
		goto fail_registered;
	ns->oom_timer = loop_add_timer(d->loop, OOM_SWEEP_MS, on_oom_timer, ns);
	log_info("devices: profile %s (%zu classes), power backend %s, wpa_supplicant %s, ksm %s",
		 ns->prof->name, ns->prof->nclasses,
		 be.kind == POWER_BACKEND_SYSFS ? "sysfs" : "record", cfg.wpa_ctrl,
		 ns->mem.cfg.ksm ? "on" : "off");
	return 0;
fail_registered:
	d->devns = NULL;
	/* listeners cannot be removed: keep ns alive (leaked) so they never see freed memory */
	return -1;
fail:
	free(ns->prof);
	free(ns);
	return cells_err_prefix(err, "devices");
}

void devns_free(struct cellsd *d)
{
	struct devns *ns = d->devns;
	if (!ns)
		return;
	if (ns->oom_timer)
		loop_cancel_timer(d->loop, ns->oom_timer);
	if (ns->ksm_timer)
		loop_cancel_timer(d->loop, ns->ksm_timer);
	for (size_t i = 0; i < POWER_MAX_VPS; i++)
		if (ns->power.vps[i].name[0]) {
			if (ns->power.vps[i].master >= 0)
				loop_del_fd(d->loop, ns->power.vps[i].master);
			power_vp_close(&ns->power, ns->power.vps[i].name);
		}
	for (size_t i = 0; i < WIFI_MAX_VPS; i++)
		if (ns->wifi.vps[i].proxy >= 0) {
			loop_del_fd(d->loop, ns->wifi.vps[i].proxy);
			loop_del_fd(d->loop, ns->wifi.vps[i].upstream);
		}
	wifi_free(&ns->wifi);
	free(ns->prof);
	free(ns);
	d->devns = NULL;
}

/* Safe: read-only; lists the device profile, each VP's modes and what the kernel
 * currently enforces, and the power/WiFi/memory state; nothing secret. */
int h_device_list(struct ctl_call *c, cells_err_t *err)
{
	struct devns *ns = c->d->devns;
	if (!ns)
		return cells_err_set(err, ENODEV, "device management is not running");
	json_object_put(c->result);
	c->result = devmode_describe(&ns->dm);
	json_object_object_add(c->result, "power", power_describe(&ns->power));
	json_object_object_add(c->result, "wifi", wifi_describe(&ns->wifi));
	json_object_object_add(c->result, "memory", memory_describe(&ns->mem));
	return 0;
}
