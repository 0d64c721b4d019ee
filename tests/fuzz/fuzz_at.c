/* fuzz_at.c - the AT parser as the telephony proxy runs it on a VP's bytes (and on the
 * real modem's): split into lines, parse each as a command, classify it as a modem
 * response, parse +CLIP and the caller-ID digit. */
#include "at.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_line(void *data, enum at_line_status st, const char *line, size_t len)
{
	size_t *lines = data;
	(*lines)++;
	if (st != AT_LINE_OK) {
		assert(len == 0);
		return;
	}
	assert(len > 0 && len <= AT_LINE_MAX && strlen(line) == len);
	struct at_cmd c;
	if (at_parse_cmd(line, len, &c) == 0) {
		assert(c.kind != AT_C_INVALID);
		assert(strlen(c.number) <= AT_NUMBER_MAX);
		if (c.kind == AT_C_DIAL)
			assert(at_valid_number(c.number));
	}
	enum at_resp_kind k = at_classify(line, len);
	char num[AT_NUMBER_MAX + 1], caller[AT_NUMBER_MAX + 1];
	int type, digit;
	if (k == AT_R_CLIP && at_parse_clip(line, len, num, &type) == 0 &&
	    at_callerid_split(num, caller, &digit) == 0)
		assert(digit >= 0 && digit <= 9 && strlen(caller) + 1 == strlen(num));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct at_lineacc a;
	at_lineacc_reset(&a);
	size_t lines = 0, half = size / 2;
	/* in two reads, as from a pty */
	at_lineacc_feed(&a, data, half, on_line, &lines);
	at_lineacc_feed(&a, data + half, size - half, on_line, &lines);
	return 0;
}
