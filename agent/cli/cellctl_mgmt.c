/* cellctl_mgmt.c - `cellctl enroll` and `cellctl mgmt status`. */
#include "cellctl.h"
#include "cjson.h"
#include "cleanup.h"

#include <stdio.h>
#include <string.h>

int cellctl_cmd_enroll(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	const char *url = NULL, *token = NULL, *ca = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--ca") && i + 1 < argc)
			ca = argv[++i];
		else if (!url)
			url = argv[i];
		else if (!token)
			token = argv[i];
		else
			return cellctl_usage(cmd);
	}
	if (!url || !token || !ca)
		return cellctl_usage(cmd);
	cleanup_free uint8_t *pem = NULL;
	size_t n;
	if (cellctl_read_file(ca, 16384, &pem, &n))
		return 1;
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Enroll e = CELLS__CTL__V1__ENROLL__INIT;
	e.url = (char *)url;
	e.token = (char *)token;
	e.ca_pem.data = pem;
	e.ca_pem.len = n;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_ENROLL;
	req.enroll = &e;
	cleanup_json json_object *res = NULL;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, NULL))
		return 1;
	if (cc->json)
		cellctl_print(cc, res, NULL, NULL);
	else
		printf("enrolled device %s with %s\n",
		       json_object_get_string(json_object_object_get(res, "device_id")),
		       json_object_get_string(json_object_object_get(res, "url")));
	return 0;
}

int cellctl_cmd_mgmt_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_MGMT_STATUS;
	req.mgmt_status = &e;
	return cellctl_simple(cc, cmd->words, &req);
}
