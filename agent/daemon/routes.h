/* routes.h - cellsd's control request table (routes.c), set on the control socket by
 * main before the modules start. */
#ifndef CELLS_ROUTES_H
#define CELLS_ROUTES_H

#include <stddef.h>

#include "ctl_server.h"

extern const struct ctl_route ctl_routes[];
extern const size_t ctl_nroutes;

#endif
