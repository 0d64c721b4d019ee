/* cellctl_common.c - the request/response and output helpers every cellctl command uses. */
#include "cellctl.h"
#include "cjson.h"
#include "cleanup.h"
#include "ctl_io.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

int cellctl_call(struct cellctl *cc, const char *words, Cells__Ctl__V1__CtlRequest *req,
		 const int *fds, size_t nfds, json_object **result, int *exit_code)
{
	cells_err_t err = {0};
	cleanup_close int s = ctl_connect(cc->run_dir, &err);
	if (s < 0) {
		fprintf(stderr, "cellctl: %s: %s\n", words, err.msg);
		return 1;
	}
	cleanup_ctl_response Cells__Ctl__V1__CtlResponse *resp = NULL;
	if (ctl_call(s, req, fds, nfds, &resp, &err) < 0) {
		fprintf(stderr, "cellctl: %s: %s\n", words, err.msg);
		return 1;
	}
	if (resp->status != 0) {
		fprintf(stderr, "cellctl: %s: %s\n", words, resp->error);
		return 1;
	}
	json_object *r = json_tokener_parse(resp->result && *resp->result ? resp->result : "{}");
	if (!r || !json_object_is_type(r, json_type_object)) {
		json_object_put(r);
		fprintf(stderr, "cellctl: %s: cellsd sent a malformed result\n", words);
		return 1;
	}
	*result = r;
	if (exit_code)
		*exit_code = resp->exit_code;
	return 0;
}

static void print_value(json_object *v)
{
	if (json_object_is_type(v, json_type_string))
		fputs(json_object_get_string(v), stdout);
	else
		fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), stdout);
}

static void print_table(json_object *arr, const char *const *columns)
{
	size_t n = json_object_array_length(arr);
	const char *cols[32];
	size_t ncol = 0;
	if (columns) {
		while (columns[ncol] && ncol < 32)
			ncol++, cols[ncol - 1] = columns[ncol - 1];
	} else if (n) {
		json_object_object_foreach(json_object_array_get_idx(arr, 0), k, v)
		{
			(void)v;
			if (ncol < 32)
				cols[ncol++] = k;
		}
	}
	size_t width[32];
	for (size_t c = 0; c < ncol; c++) {
		width[c] = strlen(cols[c]);
		for (size_t i = 0; i < n; i++) {
			json_object *v =
			    json_object_object_get(json_object_array_get_idx(arr, i), cols[c]);
			const char *s = v ? json_object_get_string(v) : "";
			if (strlen(s) > width[c])
				width[c] = strlen(s);
		}
		if (width[c] > 60)
			width[c] = 60;
	}
	for (size_t c = 0; c < ncol; c++) {
		char up[64];
		size_t k = 0;
		for (; cols[c][k] && k < sizeof up - 1; k++)
			up[k] = (char)(cols[c][k] >= 'a' && cols[c][k] <= 'z' ? cols[c][k] - 32
									      : cols[c][k]);
		up[k] = 0;
		printf("%-*s%s", (int)width[c], up, c + 1 < ncol ? "  " : "\n");
	}
	for (size_t i = 0; i < n; i++)
		for (size_t c = 0; c < ncol; c++) {
			json_object *v =
			    json_object_object_get(json_object_array_get_idx(arr, i), cols[c]);
			printf("%-*.*s%s", (int)width[c], (int)width[c],
			       v ? json_object_get_string(v) : "-", c + 1 < ncol ? "  " : "\n");
		}
}

int cellctl_request(struct cellctl *cc, const char *words, Cells__Ctl__V1__CtlRequest *req,
		    const char *field, void (*text)(json_object *res))
{
	cleanup_json json_object *res = NULL;
	int code;
	if (cellctl_call(cc, words, req, NULL, 0, &res, &code))
		return 1;
	if (cc->json || (!text && !field))
		cellctl_print(cc, res, NULL, NULL);
	else if (text)
		text(res);
	else
		printf("%s\n", json_object_get_string(json_object_object_get(res, field)));
	return 0;
}

void cellctl_print(struct cellctl *cc, json_object *result, const char *array_key,
		   const char *const *columns)
{
	if (cc->json) {
		printf("%s\n",
		       json_object_to_json_string_ext(result, JSON_C_TO_STRING_PRETTY |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
		return;
	}
	json_object_object_foreach(result, k, v)
	{
		if (array_key && !strcmp(k, array_key) && json_object_is_type(v, json_type_array)) {
			print_table(v, columns);
			continue;
		}
		printf("%s: ", k);
		print_value(v);
		putchar('\n');
	}
}

int cellctl_simple(struct cellctl *cc, const char *words, Cells__Ctl__V1__CtlRequest *req)
{
	return cellctl_request(cc, words, req, NULL, NULL);
}

char *cellctl_read_password(const char *path, const char *prompt, size_t *len)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	if (path) {
		cleanup_file FILE *f = fopen(path, "re");
		if (!f) {
			fprintf(stderr, "cellctl: password file %s: %s\n", path, strerror(errno));
			return NULL;
		}
		n = getline(&line, &cap, f);
	} else {
		struct termios old, quiet;
		bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
		if (tty) {
			fprintf(stderr, "%s", prompt);
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		}
		n = getline(&line, &cap, stdin);
		if (tty) {
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
			fputc('\n', stderr);
		}
	}
	if (n < 0) {
		free(line);
		fprintf(stderr, "cellctl: no password given\n");
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	*len = (size_t)n;
	return line;
}

int cellctl_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
	cells_err_t err;
	if (cells_read_file(path, max, out, len, &err) < 0) {
		fprintf(stderr, "cellctl: %s\n", err.msg);
		return 1;
	}
	return 0;
}
