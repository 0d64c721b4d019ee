#include "device_key.h"
#include "cleanup.h"
#include "cleanup_ssl.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

void device_id_of(const unsigned char pub[32], char id[DEVICE_ID_LEN + 1])
{
	uint8_t h[POL_KEYID_LEN];
	pol_key_id(pub, h);
	cells_hex(h, DEVICE_ID_LEN / 2, id);
}

int device_key_load(const char *state_dir, EVP_PKEY **key, char id[DEVICE_ID_LEN + 1],
		    cells_err_t *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/device.key", state_dir);
	cleanup_free uint8_t *pem = NULL;
	size_t n;
	cleanup_pkey EVP_PKEY *k = NULL;
	if (cells_read_file(path, 16384, &pem, &n, err) == 0) {
		k = pol_key_from_pem(pem, n, true, err);
		OPENSSL_cleanse(pem, n);
		if (!k)
			return cells_err_prefix(err, "%s", path);
	} else if (err && err->code == ENOENT) {
		k = pol_key_generate(err);
		if (!k)
			return -1;
		cleanup_free char *out = NULL;
		if (pol_key_to_pem(k, true, &out, err) < 0)
			return -1;
		int r = cells_write_file_atomic(path, out, strlen(out), 0600, err);
		OPENSSL_cleanse(out, strlen(out));
		if (r < 0)
			return -1;
	} else {
		return -1;
	}
	uint8_t pub[POL_PUBKEY_LEN];
	if (pol_key_raw_public(k, pub, err) < 0)
		return -1;
	device_id_of(pub, id);
	if (key)
		*key = steal_pointer(&k);
	return 0;
}
