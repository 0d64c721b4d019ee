/* device_key.h - the device's Ed25519 identity key (STATE_DIR/device.key, mode 0600).
 * Created on first use; it never leaves the device. The device id is the first 16
 * bytes of SHA-256(raw public key) in hex: what a policy's `device` field names. */
#ifndef CELLS_DEVICE_KEY_H
#define CELLS_DEVICE_KEY_H

#include <openssl/evp.h>

#include "err.h"

#define DEVICE_ID_LEN 32 /* hex chars */

/* Load or create the key; *key is owned by the caller; id gets DEVICE_ID_LEN+1 bytes. */
int device_key_load(const char *state_dir, EVP_PKEY **key, char id[DEVICE_ID_LEN + 1],
		    cells_err_t *err);
/* The id of a raw 32-byte Ed25519 public key. */
void device_id_of(const unsigned char pub[32], char id[DEVICE_ID_LEN + 1]);

#endif
