/* kcgroup.c - per-VP cgroups on v1 and v2 hierarchies; device control (see kcgroup.h). */
#include "kcgroup.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CG_ROOT "/sys/fs/cgroup"

/* freezer: vplock on hosts without a v2 hierarchy (v1 freezer.state) */
static const char *const v1_ctrls[] = {"memory", "pids", "cpu", "devices", "freezer"};

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int write_str(const char *dir, const char *file, const char *val, cells_err_t *err)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof p, "%s/%s", dir, file);
	cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return cells_err_sys(err, errno, "open %s", p);
	size_t n = strlen(val);
	if (write(fd, val, n) != (ssize_t)n)
		return cells_err_sys(err, errno, "write '%s' to %s", val, p);
	return 0;
}

/* The own cgroup path of hierarchy `ctrl` ("" for v2) from /proc/self/cgroup. */
static int own_path(const char *ctrl, char *out, size_t n)
{
	cleanup_file FILE *f = fopen("/proc/self/cgroup", "re");
	char line[PATH_MAX + 128];
	while (f && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = 0;
		const char *list = c1 + 1, *path = c2 + 1;
		bool match = false;
		if (!*ctrl)
			match = !*list && !strncmp(line, "0", 1);
		else {
			char buf[256];
			snprintf(buf, sizeof buf, "%s", list);
			char *save = NULL;
			for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
				if (!strcmp(t, ctrl))
					match = true;
		}
		if (match) {
			snprintf(out, n, "%s", strcmp(path, "/") ? path : "");
			return 0;
		}
	}
	return -1;
}

static bool file_has_word(const char *path, const char *word)
{
	cleanup_file FILE *f = fopen(path, "re");
	char buf[512];
	if (!f || !fgets(buf, sizeof buf, f))
		return false;
	char *save = NULL;
	for (char *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
		if (!strcmp(t, word))
			return true;
	return false;
}

int kcg_init(struct kcg *cg, const char *name, cells_err_t *err)
{
	memset(cg, 0, sizeof *cg);
	cg->v2_fd = -1;
	snprintf(cg->name, sizeof cg->name, "%s", name);
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(v1_ctrls); i++) {
		char own[PATH_MAX], mnt[PATH_MAX];
		snprintf(mnt, sizeof mnt, CG_ROOT "/%s/cgroup.procs", v1_ctrls[i]);
		if (access(mnt, F_OK) < 0 || own_path(v1_ctrls[i], own, sizeof own) < 0)
			continue;
		/* skip a hierarchy already listed (co-mounted controllers) */
		char dir[PATH_MAX];
		snprintf(dir, sizeof dir, CG_ROOT "/%s%s/%s", v1_ctrls[i], own, name);
		char real[PATH_MAX], base[PATH_MAX];
		snprintf(base, sizeof base, CG_ROOT "/%s", v1_ctrls[i]);
		if (!realpath(base, real))
			continue;
		bool dup = false;
		for (size_t j = 0; j < cg->nv1; j++)
			if (!strncmp(cg->v1[j], real, strlen(real)) &&
			    cg->v1[j][strlen(real)] == '/')
				dup = true;
		if (dup || cg->nv1 >= KCG_MAX_V1)
			continue;
		snprintf(cg->v1[cg->nv1++], PATH_MAX, "%s%s/%s", real, own, name);
		if (!strcmp(v1_ctrls[i], "devices"))
			cg->v1_devices = true;
	}
	const char *v2root = NULL;
	if (access(CG_ROOT "/cgroup.controllers", F_OK) == 0)
		v2root = CG_ROOT;
	else if (access(CG_ROOT "/unified/cgroup.controllers", F_OK) == 0)
		v2root = CG_ROOT "/unified";
	char own2[PATH_MAX];
	if (v2root && own_path("", own2, sizeof own2) == 0) {
		/* after kcg_v2_delegate() cellsd sits in a leaf of its own cgroup */
		char *slash = strrchr(own2, '/');
		if (slash && !strcmp(slash + 1, KCG_AGENT_LEAF))
			*slash = 0;
		snprintf(cg->v2, sizeof cg->v2, "%s%s/%s", v2root, own2, name);
		char parent[PATH_MAX + 32];
		snprintf(parent, sizeof parent, "%s%s/cgroup.controllers", v2root, own2);
		cg->v2_memory = file_has_word(parent, "memory");
		cg->v2_pids = file_has_word(parent, "pids");
		cg->v2_cpu = file_has_word(parent, "cpu");
	}
	if (!cg->nv1 && !cg->v2[0])
		return cells_err_set(err, ENOTSUP, "no cgroup hierarchy found under " CG_ROOT);
	return 0;
}

static const struct kcg_dev default_devs[] = {
    {'c', 1, 3, true},	   /* null */
    {'c', 1, 5, true},	   /* zero */
    {'c', 1, 7, true},	   /* full */
    {'c', 1, 8, true},	   /* random */
    {'c', 1, 9, true},	   /* urandom */
    {'c', 5, 0, true},	   /* tty */
    {'c', 5, 2, true},	   /* ptmx */
    {'c', 136, ~0u, true}, /* pts */
};

static void dev_rule(char *buf, size_t n, char type, unsigned major, unsigned minor)
{
	char ma[16], mi[16];
	if (major == ~0u)
		snprintf(ma, sizeof ma, "*");
	else
		snprintf(ma, sizeof ma, "%u", major);
	if (minor == ~0u)
		snprintf(mi, sizeof mi, "*");
	else
		snprintf(mi, sizeof mi, "%u", minor);
	snprintf(buf, n, "%c %s:%s rwm", type, ma, mi);
}

#define INSN(c, d, s, o, i)                                                                        \
	(struct bpf_insn)                                                                          \
	{                                                                                          \
		.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)                \
	}

int kcg_bpf_build(const struct kcg_dev *rules, size_t n, void *out, size_t max)
{
	struct bpf_insn *p = out;
	size_t k = 0;
#define EMIT(x)                                                                                    \
	do {                                                                                       \
		if (k >= max)                                                                      \
			return -1;                                                                 \
		p[k++] = (x);                                                                      \
	} while (0)
	/* r2 = access_type & 0xffff (device type), r4 = major, r5 = minor */
	EMIT(INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0));
	EMIT(INSN(BPF_ALU64 | BPF_AND | BPF_K, 2, 0, 0, 0xffff));
	EMIT(INSN(BPF_LDX | BPF_MEM | BPF_W, 4, 1, 4, 0));
	EMIT(INSN(BPF_LDX | BPF_MEM | BPF_W, 5, 1, 8, 0));
	/* the last matching rule wins: test rules from the end */
	for (size_t i = n; i-- > 0;) {
		const struct kcg_dev *r = &rules[i];
		int len = 3 + (r->major != ~0u) + (r->minor != ~0u); /* after the type test */
		int type = r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
		EMIT(INSN(BPF_JMP | BPF_JNE | BPF_K, 2, 0, (short)(len - 1), type));
		len--;
		if (r->major != ~0u) {
			EMIT(
			    INSN(BPF_JMP | BPF_JNE | BPF_K, 4, 0, (short)(len - 1), (int)r->major));
			len--;
		}
		if (r->minor != ~0u) {
			EMIT(
			    INSN(BPF_JMP | BPF_JNE | BPF_K, 5, 0, (short)(len - 1), (int)r->minor));
			len--;
		}
		EMIT(INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, r->allow ? 1 : 0));
		EMIT(INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	}
	EMIT(INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
	EMIT(INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
#undef EMIT
	return (int)k;
}

/* Load the program of rules and attach it to cg's v2 directory in one step (replacing
 * the one before); cg's own rule list is not touched. */
static int bpf_apply(const struct kcg *cg, const struct kcg_dev *rules, size_t nrules,
		     cells_err_t *err)
{
	struct bpf_insn insns[4 + KCG_MAX_DEVS * 5 + 2];
	int n = kcg_bpf_build(rules, nrules, insns, CELLS_ARRAY_SIZE(insns));
	if (n < 0)
		return cells_err_set(err, E2BIG, "too many device rules");
	char log[1024] = "";
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
	a.insns = (uintptr_t)insns;
	a.insn_cnt = (unsigned)n;
	a.license = (uintptr_t) "GPL";
	a.log_buf = (uintptr_t)log;
	a.log_size = sizeof log;
	a.log_level = 1;
	cleanup_close int prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
	if (prog < 0) {
		a.log_level = 0; /* retry without a log (some kernels refuse small logs) */
		a.log_buf = 0;
		a.log_size = 0;
		prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
	}
	if (prog < 0)
		return cells_err_sys(err, errno, "load BPF device program");
	cleanup_close int dir = open(cg->v2, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dir < 0)
		return cells_err_sys(err, errno, "open %s", cg->v2);
	memset(&a, 0, sizeof a);
	a.target_fd = (unsigned)dir;
	a.attach_bpf_fd = (unsigned)prog;
	a.attach_type = BPF_CGROUP_DEVICE;
	/* single-program mode: attaching again replaces the program */
	if (syscall(SYS_bpf, BPF_PROG_ATTACH, &a, sizeof a) < 0)
		return cells_err_sys(err, errno, "attach BPF device program to %s", cg->v2);
	return 0;
}

int kcg_create(struct kcg *cg, const struct kcg_limits *lim, cells_err_t *err)
{
	char val[64];
	for (size_t i = 0; i < cg->nv1; i++) {
		if (mkdir(cg->v1[i], 0755) < 0 && errno != EEXIST)
			return cells_err_sys(err, errno, "mkdir %s", cg->v1[i]);
		const char *dir = cg->v1[i];
		if (strstr(dir, "/memory/") && lim->memory) {
			snprintf(val, sizeof val, "%llu", lim->memory);
			if (write_str(dir, "memory.limit_in_bytes", val, err) < 0)
				return -1;
		}
		if (strstr(dir, "/pids/") && lim->pids) {
			snprintf(val, sizeof val, "%u", lim->pids);
			if (write_str(dir, "pids.max", val, err) < 0)
				return -1;
		}
		if (strstr(dir, "/cpu/") || strstr(dir, "/cpu,")) {
			unsigned w = lim->cpu_weight ? lim->cpu_weight : 100;
			snprintf(val, sizeof val, "%u", w * 1024 / 100 ? w * 1024 / 100 : 2);
			if (write_str(dir, "cpu.shares", val, err) < 0)
				return -1;
		}
		if (strstr(dir, "/devices/")) {
			char rule[64];
			if (write_str(dir, "devices.deny", "a", err) < 0)
				return -1;
			for (size_t j = 0; j < CELLS_ARRAY_SIZE(default_devs); j++) {
				dev_rule(rule, sizeof rule, default_devs[j].type,
					 default_devs[j].major, default_devs[j].minor);
				if (write_str(dir, "devices.allow", rule, err) < 0)
					return -1;
			}
		}
	}
	memcpy(cg->devs, default_devs, sizeof default_devs);
	cg->ndevs = CELLS_ARRAY_SIZE(default_devs);
	if (cg->v2[0]) {
		if (mkdir(cg->v2, 0755) < 0 && errno != EEXIST)
			return cells_err_sys(err, errno, "mkdir %s", cg->v2);
		/* enable the controllers v1 does not provide (pure v2 hosts) */
		char parent[PATH_MAX];
		snprintf(parent, sizeof parent, "%s", cg->v2);
		*strrchr(parent, '/') = 0;
		cells_err_t e2;
		if (cg->v2_memory &&
		    write_str(parent, "cgroup.subtree_control", "+memory", &e2) < 0)
			cg->v2_memory = false;
		if (cg->v2_pids && write_str(parent, "cgroup.subtree_control", "+pids", &e2) < 0)
			cg->v2_pids = false;
		if (cg->v2_cpu && write_str(parent, "cgroup.subtree_control", "+cpu", &e2) < 0)
			cg->v2_cpu = false;
		if (cg->v2_memory && lim->memory) {
			snprintf(val, sizeof val, "%llu", lim->memory);
			if (write_str(cg->v2, "memory.max", val, err) < 0)
				return -1;
		}
		if (cg->v2_pids && lim->pids) {
			snprintf(val, sizeof val, "%u", lim->pids);
			if (write_str(cg->v2, "pids.max", val, err) < 0)
				return -1;
		}
		if (cg->v2_cpu) {
			snprintf(val, sizeof val, "%u", lim->cpu_weight ? lim->cpu_weight : 100);
			if (write_str(cg->v2, "cpu.weight", val, err) < 0)
				return -1;
		}
		if (bpf_apply(cg, cg->devs, cg->ndevs, err) < 0)
			return -1;
		cg->v2_fd = open(cg->v2, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (cg->v2_fd < 0)
			return cells_err_sys(err, errno, "open %s", cg->v2);
	}
	return 0;
}

int kcg_v2_delegate(cells_err_t *err)
{
	char own[PATH_MAX], dir[PATH_MAX + 64], leaf[PATH_MAX + 64];
	if (access(CG_ROOT "/cgroup.controllers", F_OK) < 0 || own_path("", own, sizeof own) < 0)
		return 0; /* not a pure v2 host */
	char *slash = strrchr(own, '/');
	if (!own[0] || (slash && !strcmp(slash + 1, KCG_AGENT_LEAF)))
		return 0; /* the root cgroup, or done before */
	snprintf(dir, sizeof dir, CG_ROOT "%s", own);
	snprintf(leaf, sizeof leaf, "%s/" KCG_AGENT_LEAF, dir);
	if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
		return cells_err_sys(err, errno, "mkdir %s", leaf);
	if (write_str(leaf, "cgroup.procs", "0", err) < 0)
		return -1;
	cells_err_t e2;
	static const char *const ctrls[] = {"+memory", "+pids", "+cpu"};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(ctrls); i++)
		write_str(dir, "cgroup.subtree_control", ctrls[i], &e2); /* best effort */
	return 1;
}

void kcg_adopt(struct kcg *cg)
{
	memcpy(cg->devs, default_devs, sizeof default_devs);
	cg->ndevs = CELLS_ARRAY_SIZE(default_devs);
	if (cg->v2[0])
		cg->v2_fd = open(cg->v2, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

int kcg_attach(struct kcg *cg, pid_t pid, bool v2_too, cells_err_t *err)
{
	char val[32];
	snprintf(val, sizeof val, "%d", (int)pid);
	for (size_t i = 0; i < cg->nv1; i++)
		if (write_str(cg->v1[i], "cgroup.procs", val, err) < 0)
			return -1;
	if (v2_too && cg->v2[0] && write_str(cg->v2, "cgroup.procs", val, err) < 0)
		return -1;
	return 0;
}

size_t kcg_open_procs(struct kcg *cg, int *fds, size_t max)
{
	size_t n = 0;
	char p[PATH_MAX + 32];
	for (size_t i = 0; i < cg->nv1 && n < max; i++) {
		snprintf(p, sizeof p, "%s/cgroup.procs", cg->v1[i]);
		fds[n++] = open(p, O_WRONLY | O_CLOEXEC);
	}
	if (cg->v2[0] && n < max) {
		snprintf(p, sizeof p, "%s/cgroup.procs", cg->v2);
		fds[n++] = open(p, O_WRONLY | O_CLOEXEC);
	}
	return n;
}

int kcg_dev_apply(struct kcg *cg, const struct kcg_dev *rules, size_t n, cells_err_t *err)
{
	for (size_t r = 0; r < n; r++)
		if (rules[r].type != 'c' && rules[r].type != 'b')
			return cells_err_set(err, EINVAL, "device type must be 'c' or 'b'");
	for (size_t r = 0; r < n; r++) {
		char rule[64];
		dev_rule(rule, sizeof rule, rules[r].type, rules[r].major, rules[r].minor);
		for (size_t i = 0; i < cg->nv1; i++)
			if (strstr(cg->v1[i], "/devices/") &&
			    write_str(cg->v1[i], rules[r].allow ? "devices.allow" : "devices.deny",
				      rule, err) < 0)
				return -1;
	}
	if (!cg->v2[0] || !n)
		return 0;
	/* the new list: for each rule, an identical earlier one dropped and the rule
	 * appended (the last match wins); one program for all of them, which becomes cg's
	 * only once the kernel took it */
	struct kcg_dev next[KCG_MAX_DEVS];
	size_t k = cg->ndevs;
	memcpy(next, cg->devs, k * sizeof next[0]);
	for (size_t r = 0; r < n; r++) {
		size_t w = 0;
		for (size_t i = 0; i < k; i++)
			if (!(next[i].type == rules[r].type && next[i].major == rules[r].major &&
			      next[i].minor == rules[r].minor))
				next[w++] = next[i];
		if (w >= KCG_MAX_DEVS)
			return cells_err_set(err, E2BIG, "too many device rules");
		next[w++] = rules[r];
		k = w;
	}
	if (bpf_apply(cg, next, k, err) < 0)
		return -1;
	memcpy(cg->devs, next, k * sizeof next[0]);
	cg->ndevs = k;
	return 0;
}

int kcg_dev_set(struct kcg *cg, char type, unsigned major, unsigned minor, bool allow,
		cells_err_t *err)
{
	const struct kcg_dev one = {type, major, minor, allow};
	return kcg_dev_apply(cg, &one, 1, err);
}

bool kcg_exists(const struct kcg *cg)
{
	for (size_t i = 0; i < cg->nv1; i++)
		if (is_dir(cg->v1[i]))
			return true;
	return cg->v2[0] && is_dir(cg->v2);
}

static void kill_procs(const char *dir)
{
	char p[PATH_MAX + 32];
	snprintf(p, sizeof p, "%s/cgroup.kill", dir);
	cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd >= 0 && write(fd, "1", 1) == 1)
		return;
	snprintf(p, sizeof p, "%s/cgroup.procs", dir);
	cleanup_file FILE *f = fopen(p, "re");
	int pid;
	while (f && fscanf(f, "%d", &pid) == 1)
		if (pid > 0)
			kill(pid, SIGKILL);
}

static int rmdir_retry(const char *dir, cells_err_t *err)
{
	for (int i = 0; i < 400; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return cells_err_sys(err, errno, "rmdir %s", dir);
		kill_procs(dir);
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return cells_err_sys(err, EBUSY, "rmdir %s", dir);
}

int kcg_destroy(struct kcg *cg, cells_err_t *err)
{
	int rc = 0;
	kcg_close(cg);
	/* a v1-frozen task does not die of SIGKILL until thawed (v2 lets it through) */
	cells_err_t e2;
	if (kcg_frozen(cg) == 1)
		kcg_freeze(cg, false, &e2);
	for (size_t i = 0; i < cg->nv1; i++)
		if (is_dir(cg->v1[i]) && rmdir_retry(cg->v1[i], err) < 0)
			rc = -1;
	if (cg->v2[0] && is_dir(cg->v2) && rmdir_retry(cg->v2, err) < 0)
		rc = -1;
	return rc;
}

void kcg_close(struct kcg *cg)
{
	if (cg->v2_fd >= 0)
		close(cg->v2_fd);
	cg->v2_fd = -1;
}

unsigned long long kcg_memory_usage(const struct kcg *cg)
{
	char p[PATH_MAX + 32] = "";
	unsigned long long v = 0;
	for (size_t i = 0; i < cg->nv1; i++)
		if (strstr(cg->v1[i], "/memory/"))
			snprintf(p, sizeof p, "%s/memory.usage_in_bytes", cg->v1[i]);
	if (!p[0]) {
		if (!cg->v2_memory)
			return 0;
		snprintf(p, sizeof p, "%s/memory.current", cg->v2);
	}
	cleanup_file FILE *f = fopen(p, "re");
	if (!f || fscanf(f, "%llu", &v) != 1)
		return 0;
	return v;
}

/* ---- the freezer ---- */

static const char *v1_freezer(const struct kcg *cg)
{
	for (size_t i = 0; i < cg->nv1; i++)
		if (strstr(cg->v1[i], "/freezer/"))
			return cg->v1[i];
	return NULL;
}

static bool v2_freezable(const struct kcg *cg)
{
	char p[PATH_MAX + 32];
	if (!cg->v2[0])
		return false;
	snprintf(p, sizeof p, "%s/cgroup.freeze", cg->v2);
	return access(p, W_OK) == 0;
}

const char *kcg_freezer_file(const struct kcg *cg, char *buf, size_t n)
{
	const char *v1 = v1_freezer(cg);
	if (v2_freezable(cg))
		snprintf(buf, n, "%s/cgroup.freeze", cg->v2);
	else if (v1)
		snprintf(buf, n, "%s/freezer.state", v1);
	else
		snprintf(buf, n, "%s", "");
	return buf;
}

/* v2: the "frozen" key of cgroup.events; v1: freezer.state is FROZEN. */
int kcg_frozen(const struct kcg *cg)
{
	char p[PATH_MAX + 32], line[128];
	bool v2 = v2_freezable(cg);
	const char *v1 = v1_freezer(cg);
	if (v2)
		snprintf(p, sizeof p, "%s/cgroup.events", cg->v2);
	else if (v1)
		snprintf(p, sizeof p, "%s/freezer.state", v1);
	else
		return -1;
	cleanup_file FILE *f = fopen(p, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		if (!v2)
			return strncmp(line, "FROZEN", 6) == 0;
		int v;
		if (sscanf(line, "frozen %d", &v) == 1)
			return v == 1;
	}
	return -1;
}

int kcg_freeze(struct kcg *cg, bool frozen, cells_err_t *err)
{
	bool v2 = v2_freezable(cg);
	const char *v1 = v1_freezer(cg);
	if (!v2 && !v1)
		return cells_err_set(err, ENOTSUP,
				     "cgroup %s: no freezer (neither v2 cgroup.freeze "
				     "nor a v1 freezer hierarchy)",
				     cg->name);
	/* the kernel freezes asynchronously: wait until it reports the new state (v1 asks
	 * to write FROZEN again while it says FREEZING) */
	for (int i = 0; i < 1000; i++) {
		if (i == 0 || (!v2 && i % 10 == 0)) {
			if (v2 ? write_str(cg->v2, "cgroup.freeze", frozen ? "1" : "0", err) < 0
			       : write_str(v1, "freezer.state", frozen ? "FROZEN" : "THAWED", err) <
				     0)
				return -1;
		}
		int r = kcg_frozen(cg);
		if (r == (frozen ? 1 : 0))
			return 0;
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return cells_err_set(err, ETIMEDOUT, "cgroup %s: the kernel did not report %s within 5 s",
			     cg->name, frozen ? "frozen" : "thawed");
}
