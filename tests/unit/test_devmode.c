/* test_devmode.c - device profiles and access modes, enforced for real on this host:
 * two stand-in VPs (children in their own mount namespace with a tmpfs /dev and their
 * own v1 device cgroup) get devices from the devhost profile through devmode, with the
 * same kernel mechanisms cellsd uses (device cgroup rules, mknod via setns). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_skip.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "devmode.h"
#include "devnode.h"
#include "devprofile.h"
#include "util.h"

#ifndef CELLS_SOURCE_DIR
#error CELLS_SOURCE_DIR
#endif

/* ---------------------------------------------------------------- profile parser */

static struct devprofile *parse_str(const char *s, cells_err_t *err)
{
	struct devprofile *p = NULL;
	if (devprofile_parse((const uint8_t *)s, strlen(s), &p, err) < 0)
		return NULL;
	return p;
}

static void test_shipped_profiles(void **state)
{
	cells_err_t err;
	struct devprofile *p = NULL;
	assert_int_equal(devprofile_load(CELLS_SOURCE_DIR "/profiles/pinephone.json", &p, &err), 0);
	const struct devprofile_class *c = devprofile_class(p, "display");
	assert_non_null(c);
	assert_true(c->foreground_bound);
	assert_false(c->modes & DEVMODE_BIT(DEVMODE_SHARED)); /* framebuffer: not shareable */
	assert_non_null(devprofile_class(p, "gpu-render"));
	assert_non_null(devprofile_class(p, "camera"));
	free(p);
	assert_int_equal(devprofile_load(CELLS_SOURCE_DIR "/profiles/devhost.json", &p, &err), 0);
	c = devprofile_class(p, "vpn");
	assert_non_null(c);
	assert_int_equal(c->nodes[0].major, 10);
	assert_int_equal(c->nodes[0].minor, 200);
	assert_false(c->nodes[0].missing);
	free(p);
}

#define HDR "{\"format\":\"cells-device-profile/1\",\"name\":\"t\",\"classes\":["
static void test_parser_rejects(void **state)
{
	static const struct {
		const char *json, *why;
	} bad[] = {
	    {"{}", "missing"},
	    {HDR "]} x", "JSON"},
	    {HDR "]", "not valid JSON"},
	    {"{\"format\":\"cells-device-profile/2\",\"name\":\"t\",\"classes\":[]}", "format"},
	    {HDR "],\"extra\":1}", "unknown key"},
	    {HDR "{\"class\":\"A\",\"modes\":[\"shared\"],\"nodes\":[]}]}", "must match"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"sharable\"],\"nodes\":[]}]}", "a mode is"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"shared\"],\"nodes\":[{\"path\":\"/dev/../etc/"
		 "shadow\",\"dev\":\"c 1:3\"}]}]}",
	     "plain path"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"shared\"],\"nodes\":[{\"path\":\"/etc/x\"}]}]}",
	     "plain path"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"shared\"],\"nodes\":[{\"dev\":\"c 1\"}]}]}", "dev"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"shared\"],\"nodes\":[{\"dev\":\"c 1:3\",\"perm\":"
		 "\"4755\"}]}]}",
	     "perm"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"shared\"],\"nodes\":[]},{\"class\":\"a\",\"modes\":"
		 "[\"shared\"],\"nodes\":[]}]}",
	     "twice"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"shared\"],\"nodes\":[{\"path\":\"/dev/cells/x\","
		 "\"dev\":\"c 1:3\"}]}]}",
	     "virtual"},
	    {HDR "{\"class\":\"a\",\"modes\":[\"shared\"],\"nodes\":[{\"path\":\"/dev/x\",\"dev\":"
		 "\"c 1:*\"}]}]}",
	     "one minor"},
	};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(bad); i++) {
		cells_err_t err = {0};
		struct devprofile *p = parse_str(bad[i].json, &err);
		if (p || !strstr(err.msg, bad[i].why))
			fail_msg("case %zu: expected /%s/, got %s", i, bad[i].why,
				 p ? "success" : err.msg);
	}
	/* oversize is refused before parsing */
	size_t n = DEVPROFILE_MAX_BYTES + 1;
	cleanup_free uint8_t *big = malloc(n);
	memset(big, ' ', n);
	cells_err_t err;
	struct devprofile *p = NULL;
	assert_int_equal(devprofile_parse(big, n, &p, &err), -1);
	assert_int_equal(err.code, EFBIG);
}

/* ---------------------------------------------------------------- stand-in VPs */

struct fake_vp {
	const char *name;
	pid_t pid;
	int cmd, res; /* pipes to the child */
	char cg[256];
};

static struct fake_vp vps[2] = {{.name = "work"}, {.name = "personal"}};
static char audit_log[8192];

static int fake_vp_open(struct fake_vp *v, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof buf, "%s", path);
	assert_int_equal(write(v->cmd, buf, sizeof buf), sizeof buf);
	int e;
	assert_int_equal(read(v->res, &e, sizeof e), sizeof e);
	return e; /* 0 or errno */
}

static void fake_vp_child(int cmd, int res)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=0755,size=64k") < 0)
		_exit(3);
	int ok = 0;
	if (write(res, &ok, sizeof ok) < 0)
		_exit(3);
	char buf[128];
	while (read(cmd, buf, sizeof buf) == (ssize_t)sizeof buf) {
		buf[sizeof buf - 1] = 0;
		int fd = open(buf, O_RDWR | O_CLOEXEC);
		int e = fd < 0 ? errno : 0;
		if (fd >= 0)
			close(fd);
		if (write(res, &e, sizeof e) < 0)
			_exit(3);
	}
	_exit(0);
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static void fake_vp_start(struct fake_vp *v)
{
	snprintf(v->cg, sizeof v->cg, "/sys/fs/cgroup/devices/cells-ut-%d-%s", (int)getpid(),
		 v->name);
	assert_int_equal(mkdir(v->cg, 0755), 0);
	char p[300];
	snprintf(p, sizeof p, "%s/devices.deny", v->cg);
	assert_int_equal(write_str(p, "a"), 0);
	/* what a minimal VP /dev needs anyway */
	snprintf(p, sizeof p, "%s/devices.allow", v->cg);
	assert_int_equal(write_str(p, "c 1:3 rwm"), 0);
	int a[2], b[2];
	assert_int_equal(pipe2(a, O_CLOEXEC), 0);
	assert_int_equal(pipe2(b, O_CLOEXEC), 0);
	v->pid = fork();
	assert_true(v->pid >= 0);
	if (v->pid == 0) {
		close(a[1]);
		close(b[0]);
		fake_vp_child(a[0], b[1]);
	}
	close(a[0]);
	close(b[1]);
	v->cmd = a[1];
	v->res = b[0];
	char pid[32];
	snprintf(pid, sizeof pid, "%d", (int)v->pid);
	snprintf(p, sizeof p, "%s/cgroup.procs", v->cg);
	assert_int_equal(write_str(p, pid), 0);
	int ok = -1;
	assert_int_equal(read(v->res, &ok, sizeof ok), sizeof ok);
	assert_int_equal(ok, 0);
}

static void fake_vp_stop(struct fake_vp *v)
{
	if (v->pid <= 0)
		return;
	close(v->cmd);
	close(v->res);
	kill(v->pid, SIGKILL);
	waitpid(v->pid, NULL, 0);
	v->pid = 0;
	rmdir(v->cg);
}

static struct fake_vp *fake_vp_find(const char *name)
{
	for (size_t i = 0; i < 2; i++)
		if (!strcmp(vps[i].name, name))
			return &vps[i];
	return NULL;
}

static int fail_after = -1; /* fail the Nth op (failure injection) */

static int dev_calls; /* device-cgroup changes made */

static int op_dev_apply(void *ctx, const char *vp, const struct kcg_dev *rules, size_t n,
			cells_err_t *err)
{
	if (fail_after == 0) {
		fail_after = -1; /* one-shot: the undo must work */
		return cells_err_set(err, EIO, "injected failure");
	}
	if (fail_after > 0)
		fail_after--;
	dev_calls++;
	struct fake_vp *v = fake_vp_find(vp);
	for (size_t i = 0; i < n; i++) {
		char p[300], rule[64];
		snprintf(p, sizeof p, "%s/devices.%s", v->cg, rules[i].allow ? "allow" : "deny");
		if (rules[i].minor == DEVPROFILE_ANY_MINOR)
			snprintf(rule, sizeof rule, "%c %u:* rwm", rules[i].type, rules[i].major);
		else
			snprintf(rule, sizeof rule, "%c %u:%u rwm", rules[i].type, rules[i].major,
				 rules[i].minor);
		if (write_str(p, rule) < 0)
			return cells_err_sys(err, errno, "write %s", p);
	}
	return 0;
}

static int op_node_set(void *ctx, const char *vp, const struct devprofile_node *n, bool present,
		       cells_err_t *err)
{
	struct fake_vp *v = fake_vp_find(vp);
	return devnode_set(v->pid, n->path, n->type, n->major, n->minor, n->perm, present, err);
}

static void op_audit(void *ctx, const char *vp, const char *event, const char *outcome,
		     json_object *details)
{
	size_t l = strlen(audit_log);
	snprintf(audit_log + l, sizeof audit_log - l, "%s %s %s %s\n", vp, event, outcome,
		 details ? json_object_to_json_string_ext(details, JSON_C_TO_STRING_PLAIN) : "");
}

/* A policy: rules[i] = {vp, class, mode} triples, NULL-terminated. */
struct rule {
	const char *vp, *cls;
	Cells__V1__AccessMode mode;
};
struct policy_buf {
	Cells__V1__Policy pol;
	Cells__V1__VpRule vr[2], *vrp[2];
	Cells__V1__DeviceRule dr[2][8], *drp[2][8];
	struct pol_model m; /* what the enforcer gets: the model of pol */
};
static void make_policy(struct policy_buf *b, uint64_t version, const struct rule *rules)
{
	memset(b, 0, sizeof *b);
	cells__v1__policy__init(&b->pol);
	b->pol.version = version;
	b->pol.vps = b->vrp;
	for (size_t i = 0; i < 2; i++) {
		cells__v1__vp_rule__init(&b->vr[i]);
		b->vr[i].vp = (char *)vps[i].name;
		b->vr[i].devices = b->drp[i];
		b->vrp[i] = &b->vr[i];
	}
	b->pol.n_vps = 2;
	for (const struct rule *r = rules; r && r->vp; r++) {
		size_t i = !strcmp(r->vp, "work") ? 0 : 1;
		size_t k = b->vr[i].n_devices++;
		cells__v1__device_rule__init(&b->dr[i][k]);
		b->dr[i][k].device_class = (char *)r->cls;
		b->dr[i][k].mode = r->mode;
		b->drp[i][k] = &b->dr[i][k];
	}
	cells_err_t err;
	assert_int_equal(pol_model_from(&b->pol, &b->m, &err), 0);
}

#define SH CELLS__V1__ACCESS_MODE__ACCESS_SHARED
#define EX CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE
#define NO CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS

static bool have_v1_devices(void)
{
	return geteuid() == 0 && access("/sys/fs/cgroup/devices/devices.allow", W_OK) == 0 &&
	       access("/dev/net/tun", F_OK) == 0 && access("/dev/fuse", F_OK) == 0;
}

static void test_modes_enforced(void **state)
{
	if (!have_v1_devices())
		SKIP_OR_FAIL("needs root and the v1 device cgroup");
	cells_err_t err;
	struct devprofile *p = NULL;
	assert_int_equal(devprofile_load(CELLS_SOURCE_DIR "/profiles/devhost.json", &p, &err), 0);
	/* a foreground-bound class on a harmless node, for the foreground test */
	assert_true(p->nclasses < DEVPROFILE_MAX_CLASSES);
	struct devprofile_class *fc = &p->classes[p->nclasses++];
	memset(fc, 0, sizeof *fc);
	strcpy(fc->name, "beep");
	fc->modes = DEVMODE_BIT(DEVMODE_NONE) | DEVMODE_BIT(DEVMODE_SHARED);
	fc->foreground_bound = true;
	fc->nnodes = 1;
	fc->nodes[0] = (struct devprofile_node){.path = "/dev/full",
						.type = 'c',
						.major = 1,
						.minor = 7,
						.perm = 0666,
						.has_dev = true};
	struct devmode_ops ops = {
	    .dev_apply = op_dev_apply, .node_set = op_node_set, .audit = op_audit};
	struct devmode dm;
	devmode_init(&dm, p, &ops);
	fake_vp_start(&vps[0]);
	fake_vp_start(&vps[1]);
	struct policy_buf pb;

	/* v1: vpn denied to work, shared for personal */
	/* (and fuse for personal: two classes, one change of its device cgroup) */
	make_policy(
	    &pb, 1,
	    (struct rule[]){
		{"work", "vpn", NO}, {"personal", "vpn", SH}, {"personal", "fuse", SH}, {0}});
	assert_int_equal(devmode_set_policy(&dm, &pb.m, &err), 0);
	assert_int_equal(devmode_vp_started(&dm, "work", &err), 0);
	dev_calls = 0;
	assert_int_equal(devmode_vp_started(&dm, "personal", &err), 0);
	assert_int_equal(dev_calls, 1);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/net/tun"), ENOENT);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/net/tun"), 0);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/fuse"), 0);
	/* the kernel refuses it even when a node is there: the device cgroup */
	assert_int_equal(devnode_set(vps[0].pid, "/dev/net/tun", 'c', 10, 200, 0666, true, &err),
			 0);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/net/tun"), EPERM);
	assert_int_equal(devnode_set(vps[0].pid, "/dev/net/tun", 'c', 10, 200, 0, false, &err), 0);
	const char *rec = strstr(audit_log, "personal device.access ok {\"allowed\":[");
	assert_non_null(rec);
	assert_non_null(strstr(rec, "\"vpn\""));

	/* v2: shared for both, live */
	make_policy(&pb, 2, (struct rule[]){{"work", "vpn", SH}, {"personal", "vpn", SH}, {0}});
	assert_int_equal(devmode_set_policy(&dm, &pb.m, &err), 0);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/net/tun"), 0);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/net/tun"), 0);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/fuse"), ENOENT); /* not named any more */
	assert_true(devmode_access(&dm, "work", "vpn"));

	/* v3: exclusive fuse for work; personal's shared grant waits while work runs */
	make_policy(&pb, 3, (struct rule[]){{"work", "fuse", EX}, {"personal", "fuse", SH}, {0}});
	assert_int_equal(devmode_set_policy(&dm, &pb.m, &err), 0);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/fuse"), 0);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/fuse"), ENOENT);
	/* vpn not named any more: denied to both, live */
	assert_int_equal(fake_vp_open(&vps[0], "/dev/net/tun"), ENOENT);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/net/tun"), ENOENT);

	/* conflicting and unsupported policies are refused; nothing changes */
	make_policy(&pb, 4, (struct rule[]){{"work", "fuse", EX}, {"personal", "fuse", EX}, {0}});
	assert_int_equal(devmode_set_policy(&dm, &pb.m, &err), -1);
	assert_non_null(strstr(err.msg, "at most one VP"));
	make_policy(&pb, 4, (struct rule[]){{"work", "storage", SH}, {0}});
	assert_int_equal(devmode_set_policy(&dm, &pb.m, &err), -1);
	assert_non_null(strstr(err.msg, "does not support mode shared"));
	assert_int_equal(dm.policy_version, 3);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/fuse"), 0);

	/* all or nothing: a failing kernel op leaves the previous state in force */
	make_policy(
	    &pb, 5,
	    (struct rule[]){
		{"work", "vpn", SH}, {"personal", "vpn", SH}, {"personal", "fuse", SH}, {0}});
	fail_after = 1;
	assert_int_equal(devmode_set_policy(&dm, &pb.m, &err), -1);
	fail_after = -1;
	assert_int_equal(dm.policy_version, 3);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/fuse"), 0);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/net/tun"), ENOENT);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/net/tun"), ENOENT);

	/* foreground-bound: follows the foreground VP */
	make_policy(&pb, 6,
		    (struct rule[]){{"work", "fuse", EX},
				    {"personal", "fuse", SH},
				    {"work", "beep", SH},
				    {"personal", "beep", SH},
				    {0}});
	assert_int_equal(devmode_set_policy(&dm, &pb.m, &err), 0);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/full"), ENOENT);
	assert_int_equal(devmode_set_foreground(&dm, "work", &err), 0);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/full"), 0);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/full"), ENOENT);
	assert_int_equal(devmode_set_foreground(&dm, "personal", &err), 0);
	assert_int_equal(fake_vp_open(&vps[0], "/dev/full"), ENOENT);
	assert_int_equal(fake_vp_open(&vps[1], "/dev/full"), 0);

	/* the exclusive holder stops: the device is free for the others */
	fake_vp_stop(&vps[0]);
	devmode_vp_stopped(&dm, "work");
	assert_int_equal(fake_vp_open(&vps[1], "/dev/fuse"), 0);

	json_object *d = devmode_describe(&dm);
	const char *js = json_object_to_json_string(d);
	assert_non_null(strstr(js, "\"class\": \"fuse\""));
	json_object_put(d);
	fake_vp_stop(&vps[1]);
	free(p);
}

/* A process whose /dev is the host's (a VP before its pivot_root): no node is made. */
static void test_devnode_refuses_host_dev(void **state)
{
	if (geteuid() != 0)
		SKIP_OR_FAIL("needs root");
	cells_err_t err;
	assert_int_equal(
	    devnode_set(getpid(), "/dev/cells-ut-must-not-exist", 'c', 1, 3, 0666, true, &err), -1);
	assert_int_equal(err.code, EPERM);
	assert_int_not_equal(access("/dev/cells-ut-must-not-exist", F_OK), 0);
}

static int teardown(void **state)
{
	fake_vp_stop(&vps[0]);
	fake_vp_stop(&vps[1]);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shipped_profiles),
	    cmocka_unit_test(test_parser_rejects),
	    cmocka_unit_test(test_devnode_refuses_host_dev),
	    cmocka_unit_test_teardown(test_modes_enforced, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
