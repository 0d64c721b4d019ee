/* at.c - AT command subset: line splitting, command parsing, result classification. */
#include "at.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void at_lineacc_reset(struct at_lineacc *a)
{
	a->len = 0;
	a->too_long = a->binary = false;
}

void at_lineacc_feed(struct at_lineacc *a, const uint8_t *p, size_t n, at_line_cb cb, void *data)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c == '\r' || c == '\n') {
			if (a->binary)
				cb(data, AT_LINE_BINARY, "", 0);
			else if (a->too_long)
				cb(data, AT_LINE_TOO_LONG, "", 0);
			else if (a->len > 0) {
				a->buf[a->len] = '\0';
				cb(data, AT_LINE_OK, a->buf, a->len);
			}
			at_lineacc_reset(a);
			continue;
		}
		if (a->binary || a->too_long)
			continue;
		if (c < 0x20 || c > 0x7e) {
			a->binary = true;
			continue;
		}
		if (a->len >= AT_LINE_MAX) {
			a->too_long = true;
			continue;
		}
		a->buf[a->len++] = (char)c;
	}
}

bool at_valid_dtmf(char c)
{
	return (c >= '0' && c <= '9') || c == '*' || c == '#' || (c >= 'A' && c <= 'D');
}

bool at_valid_number(const char *s)
{
	size_t i = 0, n = strlen(s);
	if (n == 0 || n > AT_NUMBER_MAX)
		return false;
	if (s[0] == '+')
		i = 1;
	if (i == n)
		return false;
	for (; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '*' || s[i] == '#'))
			return false;
	return true;
}

static bool eq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

int at_parse_cmd(const char *line, size_t len, struct at_cmd *out)
{
	memset(out, 0, sizeof *out);
	if (len < 2 || len > AT_LINE_MAX || strncasecmp(line, "AT", 2) != 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x21 || (unsigned char)line[i] > 0x7e)
			return -1;
	const char *c = line + 2;
	size_t n = len - 2;
	if (n == 0) {
		out->kind = AT_C_AT;
		return 0;
	}
	if (eq(c, n, "E0") || eq(c, n, "E1") || eq(c, n, "E")) {
		out->kind = AT_C_ECHO;
		out->arg = n == 2 && c[1] == '1';
		return 0;
	}
	if (eq(c, n, "+CPIN?"))
		out->kind = AT_C_CPIN_Q;
	else if (eq(c, n, "+CIMI"))
		out->kind = AT_C_CIMI;
	else if (eq(c, n, "+CCID"))
		out->kind = AT_C_CCID;
	else if (eq(c, n, "+CREG?"))
		out->kind = AT_C_CREG_Q;
	else if (eq(c, n, "+COPS?"))
		out->kind = AT_C_COPS_Q;
	else if (eq(c, n, "+CSQ"))
		out->kind = AT_C_CSQ;
	else if (eq(c, n, "+CLIP?"))
		out->kind = AT_C_CLIP_Q;
	else if (eq(c, n, "+CLIP=0") || eq(c, n, "+CLIP=1")) {
		out->kind = AT_C_CLIP_SET;
		out->arg = c[6] == '1';
	} else if (eq(c, n, "A"))
		out->kind = AT_C_ANSWER;
	else if (eq(c, n, "H") || eq(c, n, "H0") || eq(c, n, "+CHUP"))
		out->kind = AT_C_HANGUP;
	else if (eq(c, n, "+CLCC"))
		out->kind = AT_C_CLCC;
	else if (n >= 6 && strncasecmp(c, "+VTS=", 5) == 0) {
		const char *v = c + 5;
		size_t vn = n - 5;
		if (vn == 3 && v[0] == '"' && v[2] == '"') {
			v++;
			vn = 1;
		}
		if (vn != 1 || !at_valid_dtmf(v[0]))
			return -1;
		out->kind = AT_C_VTS;
		out->number[0] = v[0];
	} else if ((c[0] == 'D' || c[0] == 'd') && n >= 3 && c[n - 1] == ';') {
		size_t nn = n - 2; /* without 'D' and ';' */
		if (nn > AT_NUMBER_MAX)
			return -1;
		memcpy(out->number, c + 1, nn);
		out->number[nn] = '\0';
		if (!at_valid_number(out->number))
			return -1;
		out->kind = AT_C_DIAL;
	} else
		return -1;
	return 0;
}

const char *at_cmd_name(enum at_cmd_kind k)
{
	static const char *const names[] = {
	    [AT_C_INVALID] = "invalid",	  [AT_C_AT] = "AT",	      [AT_C_ECHO] = "ATE",
	    [AT_C_CPIN_Q] = "AT+CPIN?",	  [AT_C_CIMI] = "AT+CIMI",    [AT_C_CCID] = "AT+CCID",
	    [AT_C_CREG_Q] = "AT+CREG?",	  [AT_C_COPS_Q] = "AT+COPS?", [AT_C_CSQ] = "AT+CSQ",
	    [AT_C_CLIP_SET] = "AT+CLIP=", [AT_C_CLIP_Q] = "AT+CLIP?", [AT_C_DIAL] = "ATD",
	    [AT_C_ANSWER] = "ATA",	  [AT_C_HANGUP] = "ATH",      [AT_C_VTS] = "AT+VTS",
	    [AT_C_CLCC] = "AT+CLCC",
	};
	return (size_t)k < sizeof names / sizeof names[0] ? names[k] : "invalid";
}

static bool prefix(const char *line, size_t len, const char *p)
{
	size_t n = strlen(p);
	return len >= n && memcmp(line, p, n) == 0;
}

enum at_resp_kind at_classify(const char *line, size_t len)
{
	if (eq(line, len, "OK"))
		return AT_R_OK;
	if (eq(line, len, "ERROR") || prefix(line, len, "+CME ERROR:") ||
	    prefix(line, len, "+CMS ERROR:"))
		return AT_R_ERROR;
	if (eq(line, len, "NO CARRIER"))
		return AT_R_NO_CARRIER;
	if (eq(line, len, "BUSY"))
		return AT_R_BUSY;
	if (eq(line, len, "NO ANSWER"))
		return AT_R_NO_ANSWER;
	if (eq(line, len, "NO DIALTONE"))
		return AT_R_NO_DIALTONE;
	if (prefix(line, len, "CONNECT"))
		return AT_R_CONNECT;
	if (eq(line, len, "RING"))
		return AT_R_RING;
	if (prefix(line, len, "+CLIP:"))
		return AT_R_CLIP;
	return AT_R_INFO;
}

bool at_resp_is_final(enum at_resp_kind k)
{
	return k != AT_R_INFO && k != AT_R_RING && k != AT_R_CLIP;
}

int at_parse_clip(const char *line, size_t len, char number[AT_NUMBER_MAX + 1], int *type)
{
	if (!prefix(line, len, "+CLIP:"))
		return -1;
	size_t i = 6;
	while (i < len && line[i] == ' ')
		i++;
	if (i >= len || line[i] != '"')
		return -1;
	size_t start = ++i;
	while (i < len && line[i] != '"')
		i++;
	if (i >= len || i - start > AT_NUMBER_MAX || i == start)
		return -1;
	memcpy(number, line + start, i - start);
	number[i - start] = '\0';
	if (!at_valid_number(number))
		return -1;
	i++;
	*type = 129;
	if (i < len && line[i] == ',') {
		i++;
		int t = 0;
		size_t digits = 0;
		while (i < len && line[i] >= '0' && line[i] <= '9' && digits < 3) {
			t = t * 10 + (line[i++] - '0');
			digits++;
		}
		if (digits == 0 || (i < len && line[i] != ','))
			return -1;
		*type = t;
	} else if (i != len)
		return -1;
	return 0;
}

int at_callerid_split(const char *number, char caller[AT_NUMBER_MAX + 1], int *digit)
{
	size_t n = strlen(number);
	if (!at_valid_number(number) || n < 2)
		return -1;
	char last = number[n - 1];
	if (last < '0' || last > '9' || (n == 2 && number[0] == '+'))
		return -1;
	memcpy(caller, number, n - 1);
	caller[n - 1] = '\0';
	*digit = last - '0';
	return 0;
}
