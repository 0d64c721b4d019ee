/* cellctl_vp.c - the `cellctl vp ...` commands (the VP runtime). */
#include "cellctl_vp.h"
#include "cjson.h"
#include "cleanup.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQ(c) CELLS__CTL__V1__CTL_REQUEST__REQ_##c

static int parse_u64(const char *s, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || !*s || *s == '-')
		return -1;
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	else if (*end == 'g' || *end == 'G')
		v <<= 30, end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

/* Parse [--image R] [--net M] [--memory B] [--pids N] [--hostname H] [--keep]
 * [--init CMD... or -- CMD...] after the name. rest/nrest: the words after --init or
 * --. Returns 0 or prints the usage error (2). */
static int parse_create(const struct cellctl_cmd *cmd, int argc, char **argv,
			Cells__Ctl__V1__VpCreate *vc, bool *keep, char ***rest, size_t *nrest,
			bool allow_keep)
{
	*rest = NULL;
	*nrest = 0;
	if (argc < 1 || argv[0][0] == '-')
		return cellctl_usage(cmd);
	vc->name = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
		if (!strcmp(a, "--image") && has)
			vc->image = argv[++i];
		else if (!strcmp(a, "--net") && has)
			vc->net = argv[++i];
		else if (!strcmp(a, "--hostname") && has)
			vc->hostname = argv[++i];
		else if (!strcmp(a, "--memory") && has) {
			unsigned long long v;
			if (parse_u64(argv[++i], &v) < 0) {
				fprintf(stderr, "cellctl: %s: --memory wants a byte count\n",
					cmd->words);
				return 2;
			}
			vc->memory_bytes = v;
		} else if (!strcmp(a, "--pids") && has) {
			unsigned long long v;
			if (parse_u64(argv[++i], &v) < 0 || v > 4194304) {
				fprintf(stderr, "cellctl: %s: --pids wants a number\n", cmd->words);
				return 2;
			}
			vc->pids = (uint32_t)v;
		} else if (!strcmp(a, "--keep") && allow_keep)
			*keep = true;
		else if ((!strcmp(a, "--init") || !strcmp(a, "--")) && i + 1 < argc) {
			*rest = argv + i + 1;
			*nrest = (size_t)(argc - i - 1);
			return 0;
		} else {
			fprintf(stderr, "cellctl: %s: unexpected argument '%s'\n", cmd->words, a);
			return cellctl_usage(cmd);
		}
	}
	return 0;
}

int cellctl_vp_create(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpCreate vc = CELLS__CTL__V1__VP_CREATE__INIT;
	char **rest;
	size_t nrest;
	bool keep = false;
	int r = parse_create(cmd, argc, argv, &vc, &keep, &rest, &nrest, false);
	if (r)
		return r;
	if (!vc.image || !*vc.image) {
		fprintf(stderr, "cellctl: %s: --image ROOTFS is required\n", cmd->words);
		return 2;
	}
	char real[4096];
	if (vc.image[0] != '/' && realpath(vc.image, real))
		vc.image = real;
	vc.init = rest;
	vc.n_init = nrest;
	req.req_case = REQ(VP_CREATE);
	req.vp_create = &vc;
	return cellctl_simple(cc, cmd->words, &req);
}

int cellctl_vp_list(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = REQ(VP_LIST);
	req.vp_list = &e;
	cleanup_json json_object *res = NULL;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, NULL))
		return 1;
	/* the text table marks the foreground VP with '*' in an FG column (the JSON has
	 * the boolean "foreground" of each VP) */
	json_object *vps = json_object_object_get(res, "vps");
	size_t n = json_object_is_type(vps, json_type_array) && !cc->json
		       ? json_object_array_length(vps)
		       : 0;
	for (size_t i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(vps, i);
		bool fg = json_object_get_boolean(json_object_object_get(v, "foreground"));
		json_object_object_add(v, "fg", json_object_new_string(fg ? "*" : ""));
	}
	static const char *const cols[] = {"name", "fg",  "state", "lock",
					   "net",  "pid", "image", NULL};
	cellctl_print(cc, res, "vps", cols);
	return 0;
}

/* A password read from --password-file F (or, with prompt, from the terminal): owned,
 * wiped and freed by pw_free. */
struct pw {
	char *p;
	size_t len;
};

static void pw_free(struct pw *pw)
{
	if (pw->p) {
		OPENSSL_cleanse(pw->p, pw->len);
		free(pw->p);
	}
	pw->p = NULL;
}

/* NAME [--password-file F]: 0, or the usage error (2). */
static int name_pw_args(const struct cellctl_cmd *cmd, int argc, char **argv, const char **name,
			const char **pwfile)
{
	*name = NULL;
	*pwfile = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--password-file") && i + 1 < argc)
			*pwfile = argv[++i];
		else if (argv[i][0] != '-' && !*name)
			*name = argv[i];
		else
			return cellctl_usage(cmd);
	}
	return *name ? 0 : cellctl_usage(cmd);
}

static int read_pw(const char *pwfile, bool prompt, struct pw *pw)
{
	pw->p = NULL;
	pw->len = 0;
	if (!pwfile && !prompt)
		return 0;
	pw->p = cellctl_read_password(pwfile, "VP password: ", &pw->len);
	return pw->p ? 0 : 1;
}

static int name_cmd(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv,
		    int which)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpName n = CELLS__CTL__V1__VP_NAME__INIT;
	const char *name, *pwfile;
	int r = name_pw_args(cmd, argc, argv, &name, &pwfile);
	if (r)
		return r;
	if (pwfile && which != REQ(VP_START) && which != REQ(VP_DESTROY))
		return cellctl_usage(cmd);
	struct pw pw;
	if (read_pw(pwfile, false, &pw))
		return 1;
	n.name = (char *)name;
	n.password.data = (uint8_t *)pw.p;
	n.password.len = pw.len;
	req.req_case = (Cells__Ctl__V1__CtlRequest__ReqCase)which;
	switch (which) {
	case REQ(VP_STATUS):
		req.vp_status = &n;
		break;
	case REQ(VP_START):
		req.vp_start = &n;
		break;
	case REQ(VP_STOP):
		req.vp_stop = &n;
		break;
	default:
		req.vp_destroy = &n;
		break;
	}
	r = cellctl_simple(cc, cmd->words, &req);
	pw_free(&pw);
	return r;
}

int cellctl_vp_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return name_cmd(cc, cmd, argc, argv, REQ(VP_STATUS));
}

int cellctl_vp_start(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return name_cmd(cc, cmd, argc, argv, REQ(VP_START));
}

int cellctl_vp_stop(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return name_cmd(cc, cmd, argc, argv, REQ(VP_STOP));
}

int cellctl_vp_destroy(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return name_cmd(cc, cmd, argc, argv, REQ(VP_DESTROY));
}

/* exec/run: the command's exit status is cellctl's; with --json the result is printed. */
static int finish_cmd(struct cellctl *cc, const char *words, Cells__Ctl__V1__CtlRequest *req)
{
	const int fds[3] = {0, 1, 2};
	cleanup_json json_object *res = NULL;
	int code = 0;
	if (cellctl_call(cc, words, req, fds, 3, &res, &code))
		return 125;
	if (cc->json)
		cellctl_print(cc, res, NULL, NULL);
	return code;
}

int cellctl_vp_exec(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpExec ve = CELLS__CTL__V1__VP_EXEC__INIT;
	/* NAME [--password-file F] -- CMD... (stdin belongs to CMD: never prompted) */
	const char *pwfile = NULL;
	int dd = 1;
	if (argc >= 4 && !strcmp(argv[1], "--password-file")) {
		pwfile = argv[2];
		dd = 3;
	}
	if (argc < dd + 2 || strcmp(argv[dd], "--"))
		return cellctl_usage(cmd);
	struct pw pw;
	if (read_pw(pwfile, false, &pw))
		return 125;
	ve.name = argv[0];
	ve.argv = argv + dd + 1;
	ve.n_argv = (size_t)(argc - dd - 1);
	ve.password.data = (uint8_t *)pw.p;
	ve.password.len = pw.len;
	req.req_case = REQ(VP_EXEC);
	req.vp_exec = &ve;
	int r = finish_cmd(cc, cmd->words, &req);
	pw_free(&pw);
	return r;
}

int cellctl_vp_run(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpRun vr = CELLS__CTL__V1__VP_RUN__INIT;
	Cells__Ctl__V1__VpCreate vc = CELLS__CTL__V1__VP_CREATE__INIT;
	char **rest;
	size_t nrest;
	bool keep = false;
	int r = parse_create(cmd, argc, argv, &vc, &keep, &rest, &nrest, true);
	if (r)
		return r;
	if (!nrest)
		return cellctl_usage(cmd);
	char real[4096];
	if (vc.image && vc.image[0] != '/' && realpath(vc.image, real))
		vc.image = real;
	vr.create = &vc;
	vr.argv = rest;
	vr.n_argv = nrest;
	vr.keep = keep;
	req.req_case = REQ(VP_RUN);
	req.vp_run = &vr;
	return finish_cmd(cc, cmd->words, &req);
}

/* vp lock / vp pause: no password (locking only removes access). */
static int lock_cmd(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv,
		    bool pause)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpLock l = CELLS__CTL__V1__VP_LOCK__INIT;
	if (argc != 1 || argv[0][0] == '-')
		return cellctl_usage(cmd);
	l.name = argv[0];
	l.pause = pause;
	req.req_case = REQ(VP_LOCK);
	req.vp_lock = &l;
	return cellctl_simple(cc, cmd->words, &req);
}

/* vp unlock / vp resume: the VP's password from --password-file F or the terminal. */
static int unlock_cmd(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv,
		      bool pause)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpLock l = CELLS__CTL__V1__VP_LOCK__INIT;
	const char *name, *pwfile;
	int r = name_pw_args(cmd, argc, argv, &name, &pwfile);
	if (r)
		return r;
	struct pw pw;
	if (read_pw(pwfile, true, &pw))
		return 1;
	l.name = (char *)name;
	l.pause = pause;
	l.password.data = (uint8_t *)pw.p;
	l.password.len = pw.len;
	req.req_case = REQ(VP_UNLOCK);
	req.vp_unlock = &l;
	r = cellctl_simple(cc, cmd->words, &req);
	pw_free(&pw);
	return r;
}

int cellctl_vp_lock(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return lock_cmd(cc, cmd, argc, argv, false);
}

int cellctl_vp_pause(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return lock_cmd(cc, cmd, argc, argv, true);
}

int cellctl_vp_unlock(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return unlock_cmd(cc, cmd, argc, argv, false);
}

int cellctl_vp_resume(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	return unlock_cmd(cc, cmd, argc, argv, true);
}
