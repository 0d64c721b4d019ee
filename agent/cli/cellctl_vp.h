/* cellctl_vp.h - `cellctl vp ...` commands (rows of the table in cellctl.c). */
#ifndef CELLS_CELLCTL_VP_H
#define CELLS_CELLCTL_VP_H

#include "cellctl.h"

int cellctl_vp_create(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_list(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_start(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_stop(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_destroy(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_exec(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
/* lock/pause: NAME; unlock/resume: NAME [--password-file F] (else prompted) */
int cellctl_vp_lock(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_pause(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_unlock(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_resume(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_vp_run(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);

#endif
