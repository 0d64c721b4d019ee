/* cellctl_devns.c - `cellctl device list`: device classes, nodes and each VP's mode. */
#include "cellctl.h"
#include "cellctl_devns.h"

#include <stdio.h>
#include <string.h>

static void print_text(json_object *res)
{
	json_object *v;
	const char *fg =
	    json_object_object_get_ex(res, "foreground", &v) && v ? json_object_get_string(v) : "-";
	printf("profile: %s   policy version: %s   foreground: %s\n",
	       json_object_get_string(json_object_object_get(res, "profile")),
	       json_object_get_string(json_object_object_get(res, "policy_version")), fg);
	printf("%-12s %-34s %-28s %s\n", "CLASS", "NODES", "MODES", "VPS (mode, * = can open now)");
	json_object *classes = json_object_object_get(res, "classes");
	for (size_t i = 0; classes && i < json_object_array_length(classes); i++) {
		json_object *c = json_object_array_get_idx(classes, i);
		char nodes[512] = "", modes[64] = "", vps[512] = "";
		json_object *ns = json_object_object_get(c, "nodes");
		for (size_t j = 0; ns && j < json_object_array_length(ns); j++) {
			json_object *n = json_object_array_get_idx(ns, j), *p, *d;
			size_t l = strlen(nodes);
			snprintf(
			    nodes + l, sizeof nodes - l, "%s%s", l ? "," : "",
			    json_object_object_get_ex(n, "path", &p)  ? json_object_get_string(p)
			    : json_object_object_get_ex(n, "dev", &d) ? json_object_get_string(d)
								      : "?");
		}
		json_object *ms = json_object_object_get(c, "modes");
		for (size_t j = 0; ms && j < json_object_array_length(ms); j++) {
			size_t l = strlen(modes);
			snprintf(modes + l, sizeof modes - l, "%s%s", l ? "," : "",
				 json_object_get_string(json_object_array_get_idx(ms, j)));
		}
		json_object *acc = json_object_object_get(c, "access");
		json_object_object_foreach(json_object_object_get(c, "vps"), vp, mode)
		{
			bool open = false;
			for (size_t j = 0; acc && j < json_object_array_length(acc); j++)
				open |= !strcmp(
				    json_object_get_string(json_object_array_get_idx(acc, j)), vp);
			size_t l = strlen(vps);
			snprintf(vps + l, sizeof vps - l, "%s%s=%s%s", l ? " " : "", vp,
				 json_object_get_string(mode), open ? "*" : "");
		}
		printf("%-12s %-34s %-28s %s%s\n",
		       json_object_get_string(json_object_object_get(c, "class")), nodes, modes,
		       vps[0] ? vps : "-",
		       json_object_get_boolean(json_object_object_get(c, "foreground_bound"))
			   ? "  (follows the foreground)"
			   : "");
	}
}

int cellctl_cmd_device_list(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_DEVICE_LIST;
	req.device_list = &e;
	return cellctl_request(cc, cmd->words, &req, NULL, print_text);
}
