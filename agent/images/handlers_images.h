/* handlers_images.h - image store requests (handlers_images.c): control request
 * handlers, rows of routes.c (ctl_server.h). */
#ifndef CELLS_HANDLERS_IMAGES_H
#define CELLS_HANDLERS_IMAGES_H

#include "ctl_server.h"

int h_image_import(struct ctl_call *c, cells_err_t *err);
int h_image_list(struct ctl_call *c, cells_err_t *err);
int h_image_status(struct ctl_call *c, cells_err_t *err);

#endif
