#include "fscrypt.h"

#include <errno.h>
#include <linux/fscrypt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <openssl/crypto.h>

_Static_assert(FSCRYPT_IDENTIFIER_LEN == FSCRYPT_KEY_IDENTIFIER_SIZE, "identifier size");

int fscrypt_fs_supported(int fd, cells_err_t *err)
{
	struct fscrypt_get_policy_ex_arg arg;
	memset(&arg, 0, sizeof arg);
	arg.policy_size = sizeof arg.policy;
	if (ioctl(fd, FS_IOC_GET_ENCRYPTION_POLICY_EX, &arg) == 0)
		return 1;
	switch (errno) {
	case ENODATA: /* supported, this inode is just not encrypted */
	case EINVAL:  /* an unknown policy version: still supported */
		return 1;
	case EOPNOTSUPP:
	case ENOTTY:
		return 0;
	default:
		return cells_err_sys(err, errno, "FS_IOC_GET_ENCRYPTION_POLICY_EX");
	}
}

int fscrypt_add_key(int fd, const uint8_t *key, size_t len,
		    uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err)
{
	if (len < FSCRYPT_KEY_LEN || len > FSCRYPT_MAX_KEY_SIZE)
		return cells_err_set(err, EINVAL, "fscrypt key of %zu bytes", len);
	size_t n = sizeof(struct fscrypt_add_key_arg) + len;
	struct fscrypt_add_key_arg *arg = calloc(1, n);
	if (!arg)
		return cells_err_sys(err, ENOMEM, "fscrypt add key");
	arg->key_spec.type = FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER;
	arg->raw_size = (uint32_t)len;
	memcpy(arg->raw, key, len);
	int rc = ioctl(fd, FS_IOC_ADD_ENCRYPTION_KEY, arg);
	int e = errno;
	if (rc == 0)
		memcpy(identifier, arg->key_spec.u.identifier, FSCRYPT_IDENTIFIER_LEN);
	OPENSSL_cleanse(arg, n);
	free(arg);
	if (rc < 0)
		return cells_err_sys(err, e, "FS_IOC_ADD_ENCRYPTION_KEY");
	return 0;
}

static void spec_of(struct fscrypt_key_specifier *ks, const uint8_t id[FSCRYPT_IDENTIFIER_LEN])
{
	memset(ks, 0, sizeof *ks);
	ks->type = FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER;
	memcpy(ks->u.identifier, id, FSCRYPT_IDENTIFIER_LEN);
}

int fscrypt_remove_key(int fd, const uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], bool *busy_out,
		       bool *was_absent, cells_err_t *err)
{
	struct fscrypt_remove_key_arg arg;
	memset(&arg, 0, sizeof arg);
	spec_of(&arg.key_spec, identifier);
	if (busy_out)
		*busy_out = false;
	if (was_absent)
		*was_absent = false;
	if (ioctl(fd, FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, &arg) < 0) {
		if (errno == ENOKEY) {
			if (was_absent)
				*was_absent = true;
			return 0;
		}
		return cells_err_sys(err, errno, "FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS");
	}
	if (busy_out)
		*busy_out =
		    (arg.removal_status_flags & FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY) != 0;
	return 0;
}

int fscrypt_key_status(int fd, const uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err)
{
	struct fscrypt_get_key_status_arg arg;
	memset(&arg, 0, sizeof arg);
	spec_of(&arg.key_spec, identifier);
	if (ioctl(fd, FS_IOC_GET_ENCRYPTION_KEY_STATUS, &arg) < 0)
		return cells_err_sys(err, errno, "FS_IOC_GET_ENCRYPTION_KEY_STATUS");
	switch (arg.status) {
	case FSCRYPT_KEY_STATUS_ABSENT:
		return FSCRYPT_KEY_ABSENT_STATE;
	case FSCRYPT_KEY_STATUS_PRESENT:
		return FSCRYPT_KEY_PRESENT_STATE;
	case FSCRYPT_KEY_STATUS_INCOMPLETELY_REMOVED:
		return FSCRYPT_KEY_INCOMPLETE_STATE;
	default:
		return cells_err_set(err, EPROTO, "unknown fscrypt key status %u", arg.status);
	}
}

int fscrypt_set_policy(int dirfd, const uint8_t identifier[FSCRYPT_IDENTIFIER_LEN],
		       cells_err_t *err)
{
	struct fscrypt_policy_v2 p;
	memset(&p, 0, sizeof p);
	p.version = FSCRYPT_POLICY_V2;
	p.contents_encryption_mode = FSCRYPT_MODE_AES_256_XTS;
	p.filenames_encryption_mode = FSCRYPT_MODE_AES_256_CTS;
	p.flags = FSCRYPT_POLICY_FLAGS_PAD_32;
	memcpy(p.master_key_identifier, identifier, FSCRYPT_IDENTIFIER_LEN);
	if (ioctl(dirfd, FS_IOC_SET_ENCRYPTION_POLICY, &p) < 0)
		return cells_err_sys(err, errno, "FS_IOC_SET_ENCRYPTION_POLICY");
	return 0;
}

int fscrypt_get_policy(int dirfd, uint8_t identifier[FSCRYPT_IDENTIFIER_LEN], cells_err_t *err)
{
	struct fscrypt_get_policy_ex_arg arg;
	memset(&arg, 0, sizeof arg);
	arg.policy_size = sizeof arg.policy;
	if (ioctl(dirfd, FS_IOC_GET_ENCRYPTION_POLICY_EX, &arg) < 0) {
		if (errno == ENODATA)
			return 0;
		return cells_err_sys(err, errno, "FS_IOC_GET_ENCRYPTION_POLICY_EX");
	}
	if (arg.policy.version != FSCRYPT_POLICY_V2)
		return cells_err_set(err, EPROTO, "directory has an fscrypt v%u policy, not v2",
				     (unsigned)arg.policy.version + 1);
	memcpy(identifier, arg.policy.v2.master_key_identifier, FSCRYPT_IDENTIFIER_LEN);
	return 1;
}
