/* handlers_images.c - control requests of the image store: image import / list /
 * status. Authority for an import comes from the manifest's signature (a key the pinned
 * root delegated for the images role), never from the peer. */
#include "handlers_images.h"
#include "cjson.h"
#include "cleanup.h"
#include "images.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

static void imported(struct cellsd *d, json_object *desc, const cells_err_t *err, void *data)
{
	struct ctl_call *c = data;
	(void)d;
	if (desc) {
		json_object_put(c->result);
		c->result = desc;
	}
	ctl_call_finish(c, desc ? 0 : -1, err);
}

/* Safe: images_import verifies the bundle's signature chain to the pinned root before it
 * parses the manifest, reads at most the signed size + 1 bytes from the client's fd
 * (a regular file, opened by the client with its own rights), and keeps the file only
 * when its size and SHA-256 match the signed manifest. Every outcome is audited. The copy
 * runs in a thread of its own: the call is answered when it is done. */
int h_image_import(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__Blob *b = c->req->image_import;
	cleanup_close int fd = ctl_call_take_fd(c, 0);
	if (fd < 0)
		return cells_err_set(err, EBADF, "image import needs the image file as an fd");
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return cells_err_set(err, EBADF, "image import: the image is not a regular file");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY)
		return cells_err_set(err, EBADF, "image import: the image fd is not readable");
	json_object *desc = NULL;
	int r =
	    images_import(c->d, fd, b->data.data, b->data.len, c->actor, imported, c, &desc, err);
	if (r < 0)
		return -1;
	if (r == 1) { /* the copy runs in its thread; the loop answers when it is done */
		c->pending = true;
		return 0;
	}
	json_object_put(c->result);
	c->result = desc;
	return 0;
}

/* Safe: read-only; names, versions and hashes of images are not secret. */
int h_image_list(struct ctl_call *c, cells_err_t *err)
{
	(void)err;
	json_object_put(c->result);
	c->result = images_list(c->d);
	return 0;
}

/* Safe: read-only. */
int h_image_status(struct ctl_call *c, cells_err_t *err)
{
	const char *name = c->req->image_status->name;
	json_object *o = images_status(c->d, name ? name : "", err);
	if (!o)
		return -1;
	json_object_put(c->result);
	c->result = o;
	return 0;
}
