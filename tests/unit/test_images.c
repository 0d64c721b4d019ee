/* test_images.c - agent/images: the store's options (images.h); the NAME@VERSION
 * references are tested with the policy (test_policy.c test_image_ref). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "images.h"

static void test_option(void **state)
{
	(void)state;
	cells_err_t err = {0};
	assert_int_equal(images_option("max-image-size", "4G", &err), 0);
	assert_int_equal(images_option("max-image-size", "123", &err), 0);
	assert_int_equal(images_option("max-image-size", "0", &err), -1);
	assert_int_equal(images_option("max-image-size", "1T", &err), -1);
	assert_int_equal(images_option("max-image-size", "", &err), -1);
	assert_int_equal(images_option("other", "1", &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_option)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
