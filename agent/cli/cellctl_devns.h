/* cellctl_devns.h - cellctl's device commands (cellctl_devns.c). */
#ifndef CELLS_CELLCTL_DEVNS_H
#define CELLS_CELLCTL_DEVNS_H

#include "cellctl.h"

int cellctl_cmd_device_list(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv);

#endif
