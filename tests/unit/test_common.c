/* test_common.c - the error contract, bounded buffers and file helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "err.h"
#include "util.h"

static void test_err_contract(void **state)
{
	cells_err_t e;
	assert_int_equal(cells_err_set(&e, EINVAL, "bad %s", "thing"), -1);
	assert_int_equal(e.code, EINVAL);
	assert_string_equal(e.msg, "bad thing");
	cells_err_prefix(&e, "ctx %d", 7);
	assert_string_equal(e.msg, "ctx 7: bad thing");
	cells_err_sys(&e, ENOENT, "open %s", "x");
	assert_string_equal(e.msg, "open x: No such file or directory");
	/* one line: newlines are folded */
	cells_err_set(&e, 0, "a\nb");
	assert_null(strchr(e.msg, '\n'));
	/* a NULL err is allowed */
	assert_int_equal(cells_err_set(NULL, 1, "x"), -1);
}

static void test_rbuf_bounds(void **state)
{
	uint8_t data[] = {1, 2, 3, 4, 5};
	cells_rbuf_t b = cells_rbuf(data, sizeof data);
	uint32_t v;
	assert_int_equal(cells_rbuf_u32be(&b, &v), 0);
	assert_int_equal(v, 0x01020304);
	assert_int_equal(cells_rbuf_u32be(&b, &v), -1); /* only one byte left */
	assert_int_equal(cells_rbuf_left(&b), 1);	/* nothing consumed on failure */
	const uint8_t *p;
	assert_int_equal(cells_rbuf_bytes(&b, 2, &p), -1);
	assert_int_equal(cells_rbuf_bytes(&b, 1, &p), 0);
	assert_int_equal(*p, 5);
}

static void test_rbuf_line(void **state)
{
	const char *s = "AT\r\nATD123;\rtail";
	cells_rbuf_t b = cells_rbuf(s, strlen(s));
	const uint8_t *l;
	size_t n;
	assert_int_equal(cells_rbuf_line(&b, 16, &l, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(l, "AT", 2);
	assert_int_equal(cells_rbuf_line(&b, 16, &l, &n), 0);
	assert_int_equal(n, 7);
	assert_int_equal(cells_rbuf_line(&b, 16, &l, &n), -1); /* no terminator */
	cells_rbuf_t b2 = cells_rbuf("ABCDEFGH\n", 9);
	assert_int_equal(cells_rbuf_line(&b2, 4, &l, &n), -1); /* over max */
}

static void test_wbuf_limit(void **state)
{
	cleanup_wbuf cells_wbuf_t w;
	cells_wbuf_init(&w, 8);
	assert_int_equal(cells_wbuf_put(&w, "12345", 5), 0);
	assert_int_equal(cells_wbuf_put(&w, "6789", 4), -1); /* would exceed */
	assert_int_equal(w.len, 5);			     /* unchanged */
	assert_int_equal(cells_wbuf_u8(&w, 'x'), 0);
	assert_int_equal(cells_wbuf_printf(&w, "%d", 12345), -1);
	assert_int_equal(cells_wbuf_printf(&w, "%d", 12), 0);
	assert_int_equal(w.len, 8);
	assert_memory_equal(w.p, "12345x12", 8);
}

static void test_valid_name(void **state)
{
	cells_err_t e;
	assert_int_equal(cells_valid_name("work", &e), 0);
	assert_int_equal(cells_valid_name("vp-2_x", &e), 0);
	assert_int_equal(cells_valid_name("a/b", &e), -1);
	assert_non_null(strstr(e.msg, "may hold only"));
	assert_int_equal(cells_valid_name("..", &e), -1);
	assert_int_equal(cells_valid_name("", &e), -1);
	assert_int_equal(cells_valid_name("Work", &e), -1);
	assert_int_equal(cells_valid_name("abcdefghijabcdefghijabcdefghijabc", &e), -1);
	assert_non_null(strstr(e.msg, "over 32"));
	assert_int_equal(cells_valid_name("abcdefghijabcdefghijabcdefghijab", &e), 0);
}

static void test_files(void **state)
{
	char dir[] = "/tmp/cells-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char p[256], sub[256];
	snprintf(sub, sizeof sub, "%s/a/b/c", dir);
	cells_err_t e;
	assert_int_equal(cells_mkdir_p(sub, 0700, &e), 0);
	snprintf(p, sizeof p, "%s/a/file", dir);
	assert_int_equal(cells_write_file_atomic(p, "hello", 5, 0600, &e), 0);
	uint8_t *out;
	size_t n;
	assert_int_equal(cells_read_file(p, 100, &out, &n, &e), 0);
	assert_int_equal(n, 5);
	assert_string_equal((char *)out, "hello");
	free(out);
	assert_int_equal(cells_read_file(p, 4, &out, &n, &e), -1); /* over the limit */
	assert_int_equal(e.code, EFBIG);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(cells_rm_rf(dir, &e), 0);
	assert_int_equal(stat(dir, &st), -1);
}

static void test_hex(void **state)
{
	uint8_t in[3] = {0x00, 0xab, 0xff}, out[3];
	char s[7];
	cells_hex(in, 3, s);
	assert_string_equal(s, "00abff");
	assert_int_equal(cells_unhex("00ABff", out, 3), 0);
	assert_memory_equal(in, out, 3);
	assert_int_equal(cells_unhex("00abf", out, 3), -1);
	assert_int_equal(cells_unhex("00abfg", out, 3), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_err_contract), cmocka_unit_test(test_rbuf_bounds),
	    cmocka_unit_test(test_rbuf_line),	 cmocka_unit_test(test_wbuf_limit),
	    cmocka_unit_test(test_valid_name),	 cmocka_unit_test(test_files),
	    cmocka_unit_test(test_hex),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
