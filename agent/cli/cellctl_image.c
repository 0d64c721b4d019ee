/* cellctl_image.c - image import / list / status (signed VP images, images.h). */
#include "cellctl.h"
#include "cjson.h"
#include "cleanup.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CELLCTL_MAX_IMAGE_BUNDLE (64 * 1024)

int cellctl_cmd_image_import(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			     char **argv)
{
	if (argc != 2)
		return cellctl_usage(cmd);
	cleanup_close int fd = open(argv[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cellctl: %s: %s: %s\n", cmd->words, argv[0], strerror(errno));
		return 1;
	}
	cleanup_free uint8_t *data = NULL;
	size_t n;
	if (cellctl_read_file(argv[1], CELLCTL_MAX_IMAGE_BUNDLE, &data, &n))
		return 1;
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Blob b = CELLS__CTL__V1__BLOB__INIT;
	b.data.data = data;
	b.data.len = n;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_IMAGE_IMPORT;
	req.image_import = &b;
	cleanup_json json_object *res = NULL;
	if (cellctl_call(cc, cmd->words, &req, &fd, 1, &res, NULL))
		return 1;
	if (cc->json)
		cellctl_print(cc, res, NULL, NULL);
	else
		printf("image %s@%s %s: %s\n",
		       json_object_get_string(json_object_object_get(res, "name")),
		       json_object_get_string(json_object_object_get(res, "version")),
		       json_object_get_string(json_object_object_get(res, "sha256")),
		       json_object_get_string(json_object_object_get(res, "status")));
	return 0;
}

static const char *const columns[] = {"name", "version", "status", "size", "sha256", NULL};

int cellctl_cmd_image_list(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_IMAGE_LIST;
	req.image_list = &e;
	cleanup_json json_object *res = NULL;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, NULL))
		return 1;
	cellctl_print(cc, res, "images", columns);
	return 0;
}

int cellctl_cmd_image_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			     char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__ImageName in = CELLS__CTL__V1__IMAGE_NAME__INIT;
	in.name = argv[0];
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_IMAGE_STATUS;
	req.image_status = &in;
	cleanup_json json_object *res = NULL;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, NULL))
		return 1;
	if (cc->json) {
		cellctl_print(cc, res, NULL, NULL);
		return 0;
	}
	json_object *a = json_object_object_get(res, "images");
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *o = json_object_array_get_idx(a, i);
		printf("%s@%s sha256=%s size=%s: %s\n",
		       json_object_get_string(json_object_object_get(o, "name")),
		       json_object_get_string(json_object_object_get(o, "version")),
		       json_object_get_string(json_object_object_get(o, "sha256")),
		       json_object_get_string(json_object_object_get(o, "size")),
		       json_object_get_string(json_object_object_get(o, "status")));
	}
	return 0;
}
