/* cellctl_display.c - cellctl switch, input, screenshot, display status. */
#include "cellctl.h"
#include "cjson.h"
#include "cellctl_display.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EV_KEY_TYPE 0x01 /* linux/input-event-codes.h EV_KEY */
#define KEY_CODE_MAX 0x2ff

int cellctl_cmd_switch(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__VpName n = CELLS__CTL__V1__VP_NAME__INIT;
	n.name = argv[0];
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_SWITCH_TO;
	req.switch_to = &n;
	return cellctl_simple(cc, cmd->words, &req);
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 0);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int cellctl_cmd_input_key(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	long code;
	bool up = false;
	const char *code_s = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--up"))
			up = true;
		else if (!code_s)
			code_s = argv[i];
		else
			return cellctl_usage(cmd);
	}
	if (!code_s || parse_int(code_s, 1, KEY_CODE_MAX, &code) < 0) {
		fprintf(stderr,
			"cellctl: %s: CODE must be a key code 1..%d (linux/input-event-codes.h)\n",
			cmd->words, KEY_CODE_MAX);
		return 2;
	}
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__InputEvent ev = CELLS__CTL__V1__INPUT_EVENT__INIT;
	ev.type = EV_KEY_TYPE;
	ev.code = (uint32_t)code;
	ev.value = up ? 0 : 1;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_INPUT;
	req.input = &ev;
	return cellctl_simple(cc, cmd->words, &req);
}

int cellctl_cmd_input_touch(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv)
{
	long x, y;
	if (argc != 2 || parse_int(argv[0], 0, 65535, &x) < 0 ||
	    parse_int(argv[1], 0, 65535, &y) < 0)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__InputEvent ev = CELLS__CTL__V1__INPUT_EVENT__INIT;
	ev.touch = true;
	ev.x = (int32_t)x;
	ev.y = (int32_t)y;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_INPUT;
	req.input = &ev;
	return cellctl_simple(cc, cmd->words, &req);
}

int cellctl_cmd_screenshot(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	/* write to a temporary name and rename, so FILE is never a partial PNG */
	size_t n = strlen(argv[0]) + 16;
	cleanup_free char *tmp = malloc(n);
	if (!tmp)
		return 1;
	snprintf(tmp, n, "%s.tmpXXXXXX", argv[0]);
	cleanup_close int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cellctl: %s: %s: %s\n", cmd->words, argv[0], strerror(errno));
		return 1;
	}
	/* the file keeps mkostemp's mode 0600: a screen may show private content */
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_SCREENSHOT;
	req.screenshot = &e;
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, cmd->words, &req, &fd, 1, &res, &code)) {
		unlink(tmp);
		return 1;
	}
	if (fsync(fd) < 0 || rename(tmp, argv[0]) < 0) {
		fprintf(stderr, "cellctl: %s: %s: %s\n", cmd->words, argv[0], strerror(errno));
		unlink(tmp);
		return 1;
	}
	json_object_object_add(res, "file", json_object_new_string(argv[0]));
	cellctl_print(cc, res, NULL, NULL);
	return 0;
}

int cellctl_cmd_display_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			       char **argv)
{
	if (argc)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_DISPLAY_STATUS;
	req.display_status = &e;
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, &code))
		return 1;
	static const char *const cols[] = {"vp", "state", "input_delivered", "input_dropped", NULL};
	cellctl_print(cc, res, "vps", cols);
	return 0;
}
