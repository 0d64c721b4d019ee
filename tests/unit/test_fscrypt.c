/* test_fscrypt.c - kernel/fscrypt + kernel/loopdev against the real kernel: an ext4
 * image with the encrypt feature on a loop device, a v2 policy, key add / status /
 * remove (also while a file is open), no-key names after removal, FITRIM. Needs root
 * and loop devices (skipped otherwise; under CI=true that is a failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_skip.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fscrypt.h"
#include "loopdev.h"
#include "util.h"

static char tmp[64], img[128], mnt[128];

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0 || access("/dev/loop-control", F_OK) < 0)
		return 0;
	snprintf(tmp, sizeof tmp, "/tmp/cells-fscrypt.XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	snprintf(img, sizeof img, "%s/img", tmp);
	snprintf(mnt, sizeof mnt, "%s/mnt", tmp);
	mkdir(mnt, 0700);
	cells_err_t e;
	if (loopdev_make_ext4_image(img, 64ull << 20, &e) < 0 ||
	    loopdev_mount_image(img, mnt, &e) < 0) {
		fprintf(stderr, "setup: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!tmp[0])
		return 0;
	umount2(mnt, MNT_DETACH); /* lazily, also when a failed test left fds open */
	cells_rm_rf(tmp, NULL);
	return 0;
}

#define NEED_IMAGE()                                                                               \
	do {                                                                                       \
		if (!tmp[0]) {                                                                     \
			SKIP_OR_FAIL("needs root and loop devices");                               \
		}                                                                                  \
	} while (0)

static void fill_key(uint8_t *k, uint8_t seed)
{
	for (int i = 0; i < FSCRYPT_KEY_LEN; i++)
		k[i] = (uint8_t)(seed + i * 7);
}

static void test_support_and_mount(void **state)
{
	NEED_IMAGE();
	cells_err_t e;
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fscrypt_fs_supported(fd, &e), 1);
	close(fd);
	fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(fscrypt_fs_supported(fd, &e), 0); /* procfs cannot encrypt */
	close(fd);
	assert_true(loopdev_is_mountpoint(mnt));
	assert_false(loopdev_is_mountpoint(tmp));
	/* the image exists: making it again is refused */
	assert_int_equal(loopdev_make_ext4_image(img, 1 << 20, &e), -1);
	assert_int_equal(e.code, EEXIST);
}

static void test_policy_and_key_lifecycle(void **state)
{
	NEED_IMAGE();
	cells_err_t e;
	uint8_t key[FSCRYPT_KEY_LEN], id[FSCRYPT_IDENTIFIER_LEN], id2[FSCRYPT_IDENTIFIER_LEN],
	    got[FSCRYPT_IDENTIFIER_LEN];
	int mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(fscrypt_add_key(mfd, key, 16, id, &e), -1); /* too short */
	assert_int_equal(e.code, EINVAL);
	fill_key(key, 1);
	assert_int_equal(fscrypt_add_key(mfd, key, sizeof key, id, &e), 0);
	assert_int_equal(fscrypt_add_key(mfd, key, sizeof key, id2, &e), 0); /* again: same id */
	assert_memory_equal(id, id2, sizeof id);
	assert_int_equal(fscrypt_key_status(mfd, id, &e), FSCRYPT_KEY_PRESENT_STATE);

	char dir[192], file[256];
	snprintf(dir, sizeof dir, "%s/enc", mnt);
	assert_int_equal(mkdir(dir, 0700), 0);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(fscrypt_get_policy(dfd, got, &e), 0); /* not encrypted yet */
	assert_int_equal(fscrypt_set_policy(dfd, id, &e), 0);
	assert_int_equal(fscrypt_get_policy(dfd, got, &e), 1);
	assert_memory_equal(got, id, sizeof id);
	snprintf(file, sizeof file, "%s/plain-name.txt", dir);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fputs("secret content\n", f);
	fclose(f);

	/* a non-empty unencrypted directory cannot get a policy */
	char d2[192], f2[256];
	snprintf(d2, sizeof d2, "%s/plain", mnt);
	mkdir(d2, 0700);
	snprintf(f2, sizeof f2, "%s/x", d2);
	fclose(fopen(f2, "w"));
	int d2fd = open(d2, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(fscrypt_set_policy(d2fd, id, &e), -1);
	close(d2fd);

	/* removal while a file is open: incomplete, then complete after the close */
	int open_fd = open(file, O_RDONLY | O_CLOEXEC);
	assert_true(open_fd >= 0);
	bool busy = false, absent = true;
	assert_int_equal(fscrypt_remove_key(mfd, id, &busy, &absent, &e), 0);
	assert_true(busy);
	assert_false(absent);
	assert_int_equal(fscrypt_key_status(mfd, id, &e), FSCRYPT_KEY_INCOMPLETE_STATE);
	close(open_fd);
	close(dfd); /* an open encrypted directory keeps the key busy too */
	assert_int_equal(fscrypt_remove_key(mfd, id, &busy, &absent, &e), 0);
	assert_false(busy);
	assert_int_equal(fscrypt_key_status(mfd, id, &e), FSCRYPT_KEY_ABSENT_STATE);
	/* removing an absent key is not an error */
	assert_int_equal(fscrypt_remove_key(mfd, id, &busy, &absent, &e), 0);
	assert_true(absent);

	/* without the key: the plaintext name is gone, content unreadable */
	assert_int_equal(access(file, F_OK), -1);
	DIR *dd = opendir(dir);
	assert_non_null(dd);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(dd)))
		if (de->d_name[0] != '.') {
			n++;
			assert_null(strstr(de->d_name, "plain-name"));
		}
	closedir(dd);
	assert_int_equal(n, 1);
	/* deleting locked data works (the wipe relies on it) */
	assert_int_equal(cells_rm_rf(dir, &e), 0);
	uint64_t trimmed = 0;
	assert_int_equal(syncfs(mfd), 0);
	assert_int_equal(loopdev_fstrim(mfd, &trimmed, &e), 0);
	assert_true(trimmed > 0);
	close(mfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_support_and_mount),
	    cmocka_unit_test(test_policy_and_key_lifecycle),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
