/* cellctl_policy.c - trust pin, policy apply/verify/show, vp password, vp config. */
#include "cellctl.h"
#include "cjson.h"
#include "cleanup.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CELLCTL_MAX_POLICY_FILE (256 * 1024)

static int blob_call(struct cellctl *cc, const struct cellctl_cmd *cmd, const char *path,
		     Cells__Ctl__V1__CtlRequest__ReqCase which, json_object **res, int *code)
{
	cleanup_free uint8_t *data = NULL;
	size_t n;
	if (cellctl_read_file(path, CELLCTL_MAX_POLICY_FILE, &data, &n))
		return 1;
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Blob b = CELLS__CTL__V1__BLOB__INIT;
	b.data.data = data;
	b.data.len = n;
	req.req_case = which;
	if (which == CELLS__CTL__V1__CTL_REQUEST__REQ_TRUST_PIN)
		req.trust_pin = &b;
	else if (which == CELLS__CTL__V1__CTL_REQUEST__REQ_POLICY_APPLY)
		req.policy_apply = &b;
	else
		req.policy_verify = &b;
	return cellctl_call(cc, cmd->words, &req, NULL, 0, res, code);
}

int cellctl_cmd_trust_pin(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	cleanup_json json_object *res = NULL;
	if (blob_call(cc, cmd, argv[0], CELLS__CTL__V1__CTL_REQUEST__REQ_TRUST_PIN, &res, NULL))
		return 1;
	cellctl_print(cc, res, NULL, NULL);
	return 0;
}

int cellctl_cmd_policy_apply(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			     char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	cleanup_json json_object *res = NULL;
	if (blob_call(cc, cmd, argv[0], CELLS__CTL__V1__CTL_REQUEST__REQ_POLICY_APPLY, &res, NULL))
		return 1;
	if (cc->json)
		cellctl_print(cc, res, NULL, NULL);
	else
		printf("policy version %s in force\n",
		       json_object_get_string(json_object_object_get(res, "version")));
	return 0;
}

int cellctl_cmd_policy_verify(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			      char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	cleanup_json json_object *res = NULL;
	int code = 0;
	if (blob_call(cc, cmd, argv[0], CELLS__CTL__V1__CTL_REQUEST__REQ_POLICY_VERIFY, &res,
		      &code))
		return 1;
	if (cc->json) {
		cellctl_print(cc, res, NULL, NULL);
	} else {
		json_object *r = json_object_object_get(res, "reason");
		if (code == 0)
			printf("accept: policy version %s would be installed\n",
			       json_object_get_string(json_object_object_get(res, "version")));
		else
			printf("reject: %s\n", r ? json_object_get_string(r) : "?");
	}
	return code ? 1 : 0;
}

int cellctl_cmd_policy_show(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv)
{
	if (argc)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_POLICY_SHOW;
	req.policy_show = &e;
	cleanup_json json_object *res = NULL;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, NULL))
		return 1;
	if (cc->json) {
		cellctl_print(cc, res, NULL, NULL);
		return 0;
	}
	static const char *const top[] = {"version", "accepted_version", "compliance",
					  "apply_error", "device"};
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(top); i++) {
		json_object *v = json_object_object_get(res, top[i]);
		if (v)
			printf("%s: %s\n", top[i], json_object_get_string(v));
	}
	json_object *pol = json_object_object_get(res, "effective");
	json_object *vps = pol ? json_object_object_get(pol, "vps") : NULL;
	for (size_t i = 0; vps && i < json_object_array_length(vps); i++) {
		json_object *v = json_object_array_get_idx(vps, i);
		printf("vp %s: net=%s", json_object_get_string(json_object_object_get(v, "name")),
		       json_object_get_string(json_object_object_get(v, "net")));
		json_object_object_foreach(json_object_object_get(v, "devices"), k, m)
		    printf(" %s=%s", k, json_object_get_string(m));
		putchar('\n');
	}
	return 0;
}

/* Take "--OPT FILE" out of argv (compacting it); returns FILE or NULL. */
static const char *take_opt(int *argc, char **argv, const char *opt)
{
	const char *v = NULL;
	int n = 0;
	for (int i = 0; i < *argc; i++) {
		if (!strcmp(argv[i], opt) && i + 1 < *argc) {
			v = argv[++i];
			continue;
		}
		argv[n++] = argv[i];
	}
	*argc = n;
	return v;
}

static char *read_pw(const char *path, const char *prompt, size_t *len)
{
	if (path || isatty(STDIN_FILENO))
		return cellctl_read_password(path, prompt, len);
	*len = 0;
	return calloc(1, 1);
}

static void free_pw(char *p, size_t n)
{
	if (p) {
		explicit_bzero(p, n);
		free(p);
	}
}

int cellctl_cmd_vp_password(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv)
{
	const char *newf = take_opt(&argc, argv, "--new-password-file");
	const char *oldf = take_opt(&argc, argv, "--password-file");
	if (argc != 1)
		return cellctl_usage(cmd);
	size_t nn = 0, on = 0;
	char *np = cellctl_read_password(newf, "New password: ", &nn);
	if (!np)
		return 1;
	char *op = oldf ? cellctl_read_password(oldf, "", &on) : calloc(1, 1);
	if (!op) {
		free_pw(np, nn);
		return 1;
	}
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__PasswordChange pc = CELLS__CTL__V1__PASSWORD_CHANGE__INIT;
	pc.name = argv[0];
	pc.new_password.data = (uint8_t *)np;
	pc.new_password.len = nn;
	pc.old_password.data = (uint8_t *)op;
	pc.old_password.len = on;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_VP_PASSWORD;
	req.vp_password = &pc;
	int r = cellctl_simple(cc, cmd->words, &req);
	free_pw(np, nn);
	free_pw(op, on);
	return r;
}

int cellctl_cmd_vp_config(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	const char *pwf = take_opt(&argc, argv, "--password-file");
	if (argc < 2)
		return cellctl_usage(cmd);
	size_t pn = 0;
	char *pw = read_pw(pwf, "Password: ", &pn);
	if (!pw)
		return 1;
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpConfig vc = CELLS__CTL__V1__VP_CONFIG__INIT;
	vc.name = argv[0];
	vc.settings = argv + 1;
	vc.n_settings = (size_t)(argc - 1);
	vc.password.data = (uint8_t *)pw;
	vc.password.len = pn;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_VP_CONFIG;
	req.vp_config = &vc;
	int r = cellctl_simple(cc, cmd->words, &req);
	free_pw(pw, pn);
	return r;
}
