/* cellctl_tel.c - `cellctl tel ...`: the telephony proxy. */
#include "cellctl.h"
#include "cjson.h"

#include <stdio.h>

int cellctl_cmd_tel_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_TEL_STATUS;
	req.tel_status = &e;
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, &code))
		return 1;
	if (cc->json) {
		cellctl_print(cc, res, NULL, NULL);
	} else {
		json_object *m = json_object_object_get(res, "modem");
		printf("modem: %s (%s)\n",
		       json_object_get_string(json_object_object_get(m, "path")),
		       json_object_get_boolean(json_object_object_get(m, "connected"))
			   ? "connected"
			   : "not connected");
		printf("foreground: %s\n",
		       json_object_get_string(json_object_object_get(res, "foreground")));
		static const char *const cols[] = {"vp", "number", "digit", "call", "pty", NULL};
		json_object *only = json_object_new_object();
		json_object_object_add(only, "vps",
				       json_object_get(json_object_object_get(res, "vps")));
		cellctl_print(cc, only, "vps", cols);
		json_object_put(only);
	}
	return 0;
}
