/* mdm.h - cells-mdm, the reference MDM server: shared state and subcommands.
 * Each subcommand lives in mdm_AREA.c and has a row in the table in mdm_main.c. */
#ifndef CELLS_MDM_H
#define CELLS_MDM_H

#include <limits.h>
#include <stdbool.h>

#include <openssl/evp.h>

#include "err.h"

struct mdm {
	char state_dir[PATH_MAX];
	bool json;
};

struct mdm_cmd {
	const char *words;
	const char *args;
	const char *summary;
	int (*run)(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
};

int mdm_usage(const struct mdm_cmd *cmd);
/* Paths of the server's key material under the state dir. */
void mdm_path(const struct mdm *m, const char *name, char out[PATH_MAX]);
/* Load a private key file of the state dir ("root.key", "signing.key"). */
EVP_PKEY *mdm_load_key(const struct mdm *m, const char *name, cells_err_t *err);

/* mdm_keys.c */
int mdm_cmd_init(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_export_root(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

/* mdm_policy.c */
#include <stddef.h>
#include <stdint.h>
/* Sign a serialized Policy with signing.key into a PolicyBundle with delegation.bin. */
int mdm_policy_bundle(const struct mdm *m, const uint8_t *payload, size_t n, uint8_t **out,
		      size_t *len, cells_err_t *err);
int mdm_cmd_policy_sign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);
int mdm_cmd_policy_example(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

/* mdm_wipe.c: verify a device's signed WipeReceipt (*out owned, only on success). */
#include "wire.h"
int mdm_wipe_receipt_verify(const uint8_t *blob, size_t n, const uint8_t devpub[32],
			    Cells__V1__WipeReceipt **out, cells_err_t *err);
int mdm_cmd_receipt_verify(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv);

#endif
