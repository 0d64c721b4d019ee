/* cellctl_audit.c - `cellctl audit query|verify|export`: the auditor's commands. */
#include "cellctl.h"
#include "cjson.h"
#include "audit_time.h"
#include "cellctl_audit.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void csv_field(const char *s, bool last)
{
	bool quote = strpbrk(s, ",\"\r\n") != NULL;
	if (quote) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	putchar(last ? '\n' : ',');
}

static const char *const query_cols[] = {"seq",	  "time",    "vp",	"actor",
					 "event", "outcome", "details", NULL};

static void print_csv(json_object *arr)
{
	for (size_t c = 0; query_cols[c]; c++)
		csv_field(query_cols[c], !query_cols[c + 1]);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		for (size_t c = 0; query_cols[c]; c++) {
			json_object *v = json_object_object_get(o, query_cols[c]);
			const char *s =
			    !v ? ""
			    : json_object_is_type(v, json_type_object)
				? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)
				: json_object_get_string(v);
			csv_field(s ? s : "", !query_cols[c + 1]);
		}
	}
}

int cmd_audit_query(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__AuditQuery q = CELLS__CTL__V1__AUDIT_QUERY__INIT;
	bool csv = false;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	for (int i = 0; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "--csv")) {
			csv = true;
			continue;
		}
		if (i + 1 >= argc)
			return cellctl_usage(cmd);
		const char *v = argv[++i];
		if (!strcmp(o, "--since") || !strcmp(o, "--until")) {
			int64_t t;
			if (audit_parse_time(v, now, &t) < 0) {
				fprintf(stderr,
					"cellctl: %s: %s: bad time '%s' (use unix seconds, "
					"YYYY-MM-DD[THH:MM[:SS]][Z] UTC, or 10m/2h/3d ago)\n",
					cmd->words, o, v);
				return 2;
			}
			if (o[2] == 's')
				q.since_us = t;
			else
				q.until_us = t;
		} else if (!strcmp(o, "--vp")) {
			q.vp = (char *)v;
		} else if (!strcmp(o, "--type")) {
			q.type = (char *)v;
		} else if (!strcmp(o, "--outcome")) {
			q.outcome = (char *)v;
		} else if (!strcmp(o, "--grep")) {
			q.grep = (char *)v;
		} else if (!strcmp(o, "--limit")) {
			char *end;
			errno = 0;
			unsigned long n = strtoul(v, &end, 10);
			if (errno || *end || n == 0 || n > 100000) {
				fprintf(stderr, "cellctl: %s: --limit must be 1..100000\n",
					cmd->words);
				return 2;
			}
			q.limit = (uint32_t)n;
		} else {
			return cellctl_usage(cmd);
		}
	}
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_AUDIT_QUERY;
	req.audit_query = &q;
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, &code))
		return 1;
	json_object *arr = json_object_object_get(res, "records");
	if (csv && !cc->json && arr)
		print_csv(arr);
	else
		cellctl_print(cc, res, "records", query_cols);
	return 0;
}

int cmd_audit_verify(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_AUDIT_VERIFY;
	req.audit_verify = &e;
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, cmd->words, &req, NULL, 0, &res, &code))
		return 1;
	bool ok = json_object_get_boolean(json_object_object_get(res, "ok"));
	if (cc->json) {
		cellctl_print(cc, res, NULL, NULL);
	} else if (ok) {
		printf("audit log verifies: %s records (seq %s..%s), %s signed checkpoints\n",
		       json_object_get_string(json_object_object_get(res, "records")),
		       json_object_get_string(json_object_object_get(res, "first_seq")),
		       json_object_get_string(json_object_object_get(res, "last_seq")),
		       json_object_get_string(json_object_object_get(res, "checkpoints")));
	}
	if (!ok)
		fprintf(stderr, "cellctl: audit verify: BROKEN at record %s: %s\n",
			json_object_get_string(json_object_object_get(res, "bad_seq")),
			json_object_get_string(json_object_object_get(res, "reason")));
	return ok ? 0 : 1;
}

int cmd_audit_export(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return cellctl_usage(cmd);
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_AUDIT_EXPORT;
	req.audit_export = &e;
	cleanup_close int fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "cellctl: %s: %s: %s\n", cmd->words, argv[0], strerror(errno));
		return 1;
	}
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, cmd->words, &req, &fd, 1, &res, &code)) {
		unlink(argv[0]);
		return 1;
	}
	if (cc->json)
		cellctl_print(cc, res, NULL, NULL);
	else
		printf("exported %s records to %s\n",
		       json_object_get_string(json_object_object_get(res, "records")), argv[0]);
	return 0;
}
