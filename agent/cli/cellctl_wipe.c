/* cellctl_wipe.c - cellctl commands of the wipe module: vp wipe, wipe status, wipe
 * prepare. */
#include "cellctl.h"
#include "cjson.h"
#include "cleanup.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

int cellctl_vp_wipe(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_wipe_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_wipe_prepare(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);

int cellctl_vp_wipe(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	const char *name = NULL, *pwfile = NULL;
	bool recreate = false;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--password-file") && i + 1 < argc)
			pwfile = argv[++i];
		else if (!strcmp(argv[i], "--recreate"))
			recreate = true;
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			return cellctl_usage(cmd);
	}
	if (!name)
		return cellctl_usage(cmd);
	size_t len = 0;
	char *pw = cellctl_read_password(pwfile, "VP password: ", &len);
	if (!pw)
		return 1;
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpWipe w = CELLS__CTL__V1__VP_WIPE__INIT;
	w.name = (char *)name;
	w.password.data = (uint8_t *)pw;
	w.password.len = len;
	w.recreate = recreate;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_VP_WIPE;
	req.vp_wipe = &w;
	cleanup_json json_object *res = NULL;
	int code;
	int rc = cellctl_call(cc, cmd->words, &req, NULL, 0, &res, &code);
	OPENSSL_cleanse(pw, len);
	free(pw);
	if (rc)
		return 1;
	if (cc->json) {
		cellctl_print(cc, res, NULL, NULL);
	} else {
		const char *id = json_object_get_string(json_object_object_get(res, "command_id"));
		json_object *ops = json_object_object_get(res, "ops"), *op = NULL;
		for (size_t i = 0; ops && i < json_object_array_length(ops); i++) {
			json_object *o = json_object_array_get_idx(ops, i);
			if (!strcmp(json_object_get_string(json_object_object_get(o, "command_id")),
				    id ? id : ""))
				op = o;
		}
		json_object *m = op ? json_object_object_get(op, "method") : NULL;
		json_object *rc2 = op ? json_object_object_get(op, "receipt") : NULL;
		const char *method = m ? json_object_get_string(m) : "?";
		if (!strcmp(method, "delete"))
			printf("wiped %s (%s): deleted %lld files, %lld bytes; %s\n", name,
			       id ? id : "?",
			       (long long)json_object_get_int64(
				   json_object_object_get(op, "files_removed")),
			       (long long)json_object_get_int64(
				   json_object_object_get(op, "bytes_removed")),
			       rc2 ? "signed receipt stored" : "no receipt yet");
		else
			printf("wiped %s (%s): %s; %s\n", name, id ? id : "?",
			       !strcmp(method, "crypto-erase") ? "crypto-erase (key destroyed)"
			       : !strcmp(method, "nothing")    ? "nothing to remove (no data)"
							       : method,
			       rc2 ? "signed receipt stored" : "no receipt yet");
	}
	return 0;
}

int cellctl_wipe_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	if (argc > 1)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpName n = CELLS__CTL__V1__VP_NAME__INIT;
	n.name = argc ? argv[0] : "";
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_WIPE_STATUS;
	req.wipe_status = &n;
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, &code))
		return 1;
	static const char *const cols[] = {"id",
					   "vp",
					   "command_id",
					   "state",
					   "step",
					   "key_status",
					   "kernel_key_status",
					   "method",
					   "files_removed",
					   "bytes_removed",
					   "receipt_acked",
					   NULL};
	cellctl_print(cc, res, "ops", cc->json ? NULL : cols);
	return 0;
}

int cellctl_wipe_prepare(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpName n = CELLS__CTL__V1__VP_NAME__INIT;
	n.name = argv[0];
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_WIPE_PREPARE;
	req.wipe_prepare = &n;
	return cellctl_request(cc, cmd->words, &req, "dir", NULL);
}
