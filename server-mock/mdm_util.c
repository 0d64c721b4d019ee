/* mdm_util.c - helpers every cells-mdm subcommand shares (in the MDM library, so tests
 * that link the library get them too). */
#include "cleanup.h"
#include "mdm.h"
#include "cmdtab.h"
#include "mdm_db.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

int mdm_usage(const struct mdm_cmd *cmd)
{
	const struct cmdtab t = {"cells-mdm", cmd, 1, sizeof *cmd, 0};
	return cmdtab_usage(&t, cmd);
}

int mdm_targets(struct mdm_store *s, const char *target, char ***ids, size_t *n, cells_err_t *err)
{
	*ids = NULL;
	*n = 0;
	if (!strcmp(target, "--all"))
		return mdm_store_device_ids(s, ids, n, err);
	int k = mdm_store_device_known(s, target, err);
	if (k <= 0)
		return k < 0 ? -1
			     : cells_err_set(err, ENOENT, "%s: no such enrolled device", target);
	*ids = calloc(1, sizeof **ids);
	if (!*ids || !((*ids)[0] = strdup(target))) {
		free(*ids);
		*ids = NULL;
		return cells_err_sys(err, ENOMEM, "targets");
	}
	*n = 1;
	return 0;
}

int mdm_write_key(const struct mdm *m, const char *name, EVP_PKEY *k, cells_err_t *err)
{
	char p[PATH_MAX];
	cleanup_free char *pem = NULL;
	mdm_path(m, name, p);
	if (pol_key_to_pem(k, true, &pem, err) < 0)
		return -1;
	return cells_write_file_atomic(p, pem, strlen(pem), 0600, err);
}

void mdm_path(const struct mdm *m, const char *name, char out[PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s/%s", m->state_dir, name);
}

struct mdm_store *mdm_open_store(const struct mdm *m, const char *what)
{
	cells_err_t err = {0};
	struct mdm_store *s = NULL;
	char p[PATH_MAX];
	mdm_path(m, "mdm.db", p);
	if (!m->db[0] && access(p, F_OK) != 0) {
		fprintf(stderr, "cells-mdm: %s: %s is missing (run 'cells-mdm init' first)\n", what,
			p);
		return NULL;
	}
	if (mdm_store_open(mdm_db_where(m), &s, &err) < 0) {
		fprintf(stderr, "cells-mdm: %s: %s\n", what, err.msg);
		return NULL;
	}
	return s;
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

int mdm_set_db(struct mdm *m, const char *db)
{
	if (!mdb_is_pg(db) || strlen(db) >= sizeof m->db) {
		fprintf(stderr,
			"cells-mdm: --db takes a PostgreSQL URL (postgresql://...), "
			"at most %zu bytes; without it the state dir's sqlite files\n",
			sizeof m->db - 1);
		return -1;
	}
	snprintf(m->db, sizeof m->db, "%s", db);
	return 0;
}
