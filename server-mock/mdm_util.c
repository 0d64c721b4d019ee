/* mdm_util.c - helpers every cells-mdm subcommand shares (in the MDM library, so tests
 * that link the library get them too). */
#include "cleanup.h"
#include "mdm.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>

int mdm_usage(const struct mdm_cmd *cmd)
{
	fprintf(stderr, "cells-mdm: %s: usage: cells-mdm %s %s\n", cmd->words, cmd->words,
		cmd->args);
	return 2;
}

void mdm_path(const struct mdm *m, const char *name, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%s", m->state_dir, name);
}

EVP_PKEY *mdm_load_key(const struct mdm *m, const char *name, cells_err_t *err)
{
	char p[PATH_MAX];
	mdm_path(m, name, p);
	cleanup_free uint8_t *pem = NULL;
	size_t n;
	if (cells_read_file(p, 16384, &pem, &n, err) < 0) {
		if (err && err->code == ENOENT)
			cells_err_set(err, ENOENT, "%s is missing (run 'cells-mdm init' first)", p);
		return NULL;
	}
	return pol_key_from_pem(pem, n, true, err);
}
