/* cellctl_display.h - the display area's cellctl commands (rows in cellctl.c). */
#ifndef CELLS_CELLCTL_DISPLAY_H
#define CELLS_CELLCTL_DISPLAY_H

#include "cellctl.h"

int cellctl_cmd_switch(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_cmd_input_key(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_cmd_input_touch(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv);
int cellctl_cmd_screenshot(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			   char **argv);
int cellctl_cmd_display_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			       char **argv);

#endif
