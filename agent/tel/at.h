/* at.h - the AT command subset of the virtual modem (3GPP TS 27.007 / ITU-T V.250):
 * pure code on buffers, no I/O. Used by the telephony proxy (tel.c) on bytes from VPs
 * (untrusted) and from the real modem, and by the modem simulator.
 *
 * Lines: at_lineacc_feed() splits a byte stream at CR/LF into lines of at most
 * AT_LINE_MAX bytes; a longer line or one with a byte outside printable ASCII is
 * reported once, as a whole, with AT_LINE_TOO_LONG / AT_LINE_BINARY (the caller answers
 * ERROR) and its bytes are dropped up to the next terminator.
 * Commands: at_parse_cmd() turns one line into a validated struct at_cmd or fails.
 * Modem lines: at_classify() says whether a line is a final result, an unsolicited
 * code or information text; at_parse_clip() parses +CLIP. */
#ifndef CELLS_AT_H
#define CELLS_AT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AT_LINE_MAX 256	 /* longest line accepted (V.250 asks for at least 40) */
#define AT_NUMBER_MAX 32 /* longest phone number / DTMF string */

enum at_line_status { AT_LINE_OK = 0, AT_LINE_TOO_LONG, AT_LINE_BINARY };

struct at_lineacc {
	char buf[AT_LINE_MAX + 1];
	size_t len;
	bool too_long, binary; /* the current line is bad; drop until the terminator */
};

/* cb gets each non-empty line (NUL-terminated copy, borrowed for the call). */
typedef void (*at_line_cb)(void *data, enum at_line_status st, const char *line, size_t len);
void at_lineacc_feed(struct at_lineacc *a, const uint8_t *p, size_t n, at_line_cb cb, void *data);
void at_lineacc_reset(struct at_lineacc *a);

enum at_cmd_kind {
	AT_C_INVALID = 0,
	AT_C_AT,       /* AT */
	AT_C_ECHO,     /* ATE0 / ATE1 (arg) */
	AT_C_CPIN_Q,   /* AT+CPIN? */
	AT_C_CIMI,     /* AT+CIMI */
	AT_C_CCID,     /* AT+CCID */
	AT_C_CREG_Q,   /* AT+CREG? */
	AT_C_COPS_Q,   /* AT+COPS? */
	AT_C_CSQ,      /* AT+CSQ */
	AT_C_CLIP_SET, /* AT+CLIP=0|1 (arg) */
	AT_C_CLIP_Q,   /* AT+CLIP? */
	AT_C_DIAL,     /* ATD<number>; (voice only; number) */
	AT_C_ANSWER,   /* ATA */
	AT_C_HANGUP,   /* ATH, ATH0, AT+CHUP */
	AT_C_VTS,      /* AT+VTS=<dtmf> (number holds the one DTMF character) */
	AT_C_CLCC,     /* AT+CLCC */
};

struct at_cmd {
	enum at_cmd_kind kind;
	int arg;
	char number[AT_NUMBER_MAX + 1];
};

/* Parse one command line (without terminator). 0 and *out filled, or -1 (answer ERROR).
 * Names are case-insensitive; no spaces, no chaining with ';' (ATD's trailing ';' is the
 * voice-call marker and required). Numbers: optional '+' then 1..AT_NUMBER_MAX-1 of
 * [0-9*#]. */
int at_parse_cmd(const char *line, size_t len, struct at_cmd *out);
const char *at_cmd_name(enum at_cmd_kind k);

/* A valid dialled/E.164-ish number per the rule above. */
bool at_valid_number(const char *s);
/* A valid DTMF character: [0-9*#A-D]. */
bool at_valid_dtmf(char c);

enum at_resp_kind {
	AT_R_INFO = 0,	  /* information text of the pending command */
	AT_R_OK,	  /* final: OK */
	AT_R_ERROR,	  /* final: ERROR, +CME ERROR: n, +CMS ERROR: n */
	AT_R_NO_CARRIER,  /* final for ATD/ATA, unsolicited otherwise */
	AT_R_BUSY,	  /* final */
	AT_R_NO_ANSWER,	  /* final */
	AT_R_NO_DIALTONE, /* final */
	AT_R_CONNECT,	  /* final (data; never for voice) */
	AT_R_RING,	  /* unsolicited */
	AT_R_CLIP,	  /* unsolicited +CLIP: */
};
enum at_resp_kind at_classify(const char *line, size_t len);
bool at_resp_is_final(enum at_resp_kind k);

/* Parse `+CLIP: "<number>",<type>[,...]`: 0 with number (validated) and type, or -1. */
int at_parse_clip(const char *line, size_t len, char number[AT_NUMBER_MAX + 1], int *type);

/* Caller-ID digit scheme: the gateway appends the VP's digit to the caller's number.
 * Split "<caller><digit>" into the caller (at least one character) and the digit. */
int at_callerid_split(const char *number, char caller[AT_NUMBER_MAX + 1], int *digit);

#endif
