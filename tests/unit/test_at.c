/* test_at.c - the AT parser: lines, commands, results, +CLIP and the caller-ID digit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "at.h"

struct got {
	int n;
	enum at_line_status st[8];
	char line[8][AT_LINE_MAX + 1];
};

static void on_line(void *data, enum at_line_status st, const char *line, size_t len)
{
	struct got *g = data;
	assert_true(g->n < 8);
	g->st[g->n] = st;
	memcpy(g->line[g->n], line, len + 1);
	g->n++;
}

static void feed(struct got *g, struct at_lineacc *a, const char *s, size_t n)
{
	at_lineacc_feed(a, (const uint8_t *)s, n, on_line, g);
}

static void test_lines(void **state)
{
	struct at_lineacc a;
	struct got g = {0};
	at_lineacc_reset(&a);
	feed(&g, &a, "AT\r\nATE0\rAT+C", 13);
	assert_int_equal(g.n, 2); /* the CRLF pair makes no empty line */
	assert_string_equal(g.line[0], "AT");
	assert_string_equal(g.line[1], "ATE0");
	feed(&g, &a, "SQ\n", 3); /* a line split across reads */
	assert_int_equal(g.n, 3);
	assert_string_equal(g.line[2], "AT+CSQ");

	/* overlong: one TOO_LONG report for the whole line, then back to normal */
	char big[AT_LINE_MAX + 50];
	memset(big, 'A', sizeof big);
	memset(&g, 0, sizeof g);
	feed(&g, &a, big, sizeof big);
	assert_int_equal(g.n, 0);
	feed(&g, &a, "\rAT\r", 4);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.st[0], AT_LINE_TOO_LONG);
	assert_int_equal(g.st[1], AT_LINE_OK);

	/* exactly AT_LINE_MAX is fine */
	memset(&g, 0, sizeof g);
	feed(&g, &a, big, AT_LINE_MAX);
	feed(&g, &a, "\r", 1);
	assert_int_equal(g.st[0], AT_LINE_OK);

	/* binary bytes anywhere in the line */
	memset(&g, 0, sizeof g);
	feed(&g, &a, "AT\x00+CSQ\rA\xffT\r\x1b\r", 14);
	assert_int_equal(g.n, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(g.st[i], AT_LINE_BINARY);
}

static void test_commands(void **state)
{
	struct at_cmd c;
#define P(s) at_parse_cmd(s, strlen(s), &c)
	assert_int_equal(P("AT"), 0);
	assert_int_equal(c.kind, AT_C_AT);
	assert_int_equal(P("at"), 0);
	assert_int_equal(P("ATE0"), 0);
	assert_int_equal(c.kind, AT_C_ECHO);
	assert_int_equal(c.arg, 0);
	assert_int_equal(P("ATE1"), 0);
	assert_int_equal(c.arg, 1);
	assert_int_equal(P("AT+CPIN?"), 0);
	assert_int_equal(c.kind, AT_C_CPIN_Q);
	assert_int_equal(P("at+cimi"), 0);
	assert_int_equal(c.kind, AT_C_CIMI);
	assert_int_equal(P("AT+CCID"), 0);
	assert_int_equal(P("AT+CREG?"), 0);
	assert_int_equal(c.kind, AT_C_CREG_Q);
	assert_int_equal(P("AT+COPS?"), 0);
	assert_int_equal(P("AT+CSQ"), 0);
	assert_int_equal(P("AT+CLIP=1"), 0);
	assert_int_equal(c.kind, AT_C_CLIP_SET);
	assert_int_equal(c.arg, 1);
	assert_int_equal(P("AT+CLIP?"), 0);
	assert_int_equal(P("ATA"), 0);
	assert_int_equal(c.kind, AT_C_ANSWER);
	assert_int_equal(P("ATH"), 0);
	assert_int_equal(c.kind, AT_C_HANGUP);
	assert_int_equal(P("AT+CHUP"), 0);
	assert_int_equal(c.kind, AT_C_HANGUP);
	assert_int_equal(P("AT+CLCC"), 0);
	assert_int_equal(P("ATD+15553334444;"), 0);
	assert_int_equal(c.kind, AT_C_DIAL);
	assert_string_equal(c.number, "+15553334444");
	assert_int_equal(P("ATD*31#555;"), 0);
	assert_int_equal(P("AT+VTS=5"), 0);
	assert_int_equal(c.kind, AT_C_VTS);
	assert_int_equal(c.number[0], '5');
	assert_int_equal(P("AT+VTS=\"#\""), 0);
	assert_int_equal(c.number[0], '#');

	/* refused */
	const char *bad[] = {"",
			     "A",
			     "AX",
			     "AT+FOO",
			     "ATD12345",
			     "ATD;",
			     "ATD+;",
			     "ATDabc;",
			     "ATD+1 555;",
			     "AT+CLIP=2",
			     "AT+CLIP=1;+CSQ",
			     "AT+VTS=",
			     "AT+VTS=55",
			     "AT+VTS=x",
			     "AT E0",
			     "ATE2",
			     "AT+CSQ?",
			     "AT+CPIN",
			     "ATD+123456789012345678901234567890123;"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(P(bad[i]), -1);
		assert_int_equal(c.kind, AT_C_INVALID);
	}
#undef P
}

static void test_results(void **state)
{
#define K(s) at_classify(s, strlen(s))
	assert_int_equal(K("OK"), AT_R_OK);
	assert_int_equal(K("ERROR"), AT_R_ERROR);
	assert_int_equal(K("+CME ERROR: 10"), AT_R_ERROR);
	assert_int_equal(K("NO CARRIER"), AT_R_NO_CARRIER);
	assert_int_equal(K("BUSY"), AT_R_BUSY);
	assert_int_equal(K("RING"), AT_R_RING);
	assert_int_equal(K("+CLIP: \"+1555\",145"), AT_R_CLIP);
	assert_int_equal(K("+CSQ: 24,99"), AT_R_INFO);
	assert_int_equal(K("OKAY"), AT_R_INFO);
	assert_true(at_resp_is_final(AT_R_OK));
	assert_false(at_resp_is_final(AT_R_RING));
	assert_false(at_resp_is_final(AT_R_INFO));
#undef K
}

static void test_clip_and_digit(void **state)
{
	char num[AT_NUMBER_MAX + 1], caller[AT_NUMBER_MAX + 1];
	int type, digit;
#define C(s) at_parse_clip(s, strlen(s), num, &type)
	assert_int_equal(C("+CLIP: \"+155577700001\",145,,,,0"), 0);
	assert_string_equal(num, "+155577700001");
	assert_int_equal(type, 145);
	assert_int_equal(C("+CLIP: \"5551234\",129"), 0);
	assert_int_equal(type, 129);
	assert_int_equal(C("+CLIP:\"5551234\""), 0);
	assert_int_equal(C("+CLIP: \"\",145"), -1);
	assert_int_equal(C("+CLIP: \"+1555\x22,145"), 0);
	assert_int_equal(C("+CLIP: \"abc\",145"), -1);
	assert_int_equal(C("+CLIP: \"+1555"), -1);
	assert_int_equal(C("+CLIP: \"+1555\"x"), -1);
	assert_int_equal(C("+CLIP: \"+1555\",1455"), -1);
#undef C
	assert_int_equal(at_callerid_split("+155577700001", caller, &digit), 0);
	assert_string_equal(caller, "+15557770000");
	assert_int_equal(digit, 1);
	assert_int_equal(at_callerid_split("12", caller, &digit), 0);
	assert_string_equal(caller, "1");
	assert_int_equal(digit, 2);
	assert_int_equal(at_callerid_split("+1", caller, &digit), -1); /* nothing left */
	assert_int_equal(at_callerid_split("5", caller, &digit), -1);
	assert_int_equal(at_callerid_split("555#", caller, &digit), -1);
	assert_int_equal(at_callerid_split("", caller, &digit), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines),
	    cmocka_unit_test(test_commands),
	    cmocka_unit_test(test_results),
	    cmocka_unit_test(test_clip_and_digit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
