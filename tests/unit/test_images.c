/* test_images.c - agent/images: images_ref_parse, the NAME@VERSION references a VP's
 * policy names (images.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "images.h"

static void test_ref_parse(void **state)
{
	(void)state;
	char name[IMAGES_NAME_MAX + 1];
	uint64_t v = 0;
	cells_err_t err = {0};
	assert_int_equal(images_ref_parse("work-base@12", name, &v, &err), 0);
	assert_string_equal(name, "work-base");
	assert_int_equal(v, 12);
	assert_int_equal(images_ref_parse("a.b_c@1", name, &v, &err), 0);
	static const char *const bad[] = {
	    "",
	    "work",
	    "@1",
	    "work@",
	    "work@0",
	    "work@01",
	    "work@1x",
	    "work@-1",
	    "Work@1",
	    "-w@1",
	    "a/b@1",
	    "work@99999999999999999999",
	    "abcdefghijklmnopqrstuvwxyz0123456@1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_int_equal(images_ref_parse(bad[i], name, &v, &err), -1);
		assert_int_equal(err.code, EINVAL);
	}
	assert_int_equal(images_ref_parse(NULL, name, &v, &err), -1);
}

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
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_ref_parse),
					   cmocka_unit_test(test_option)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
