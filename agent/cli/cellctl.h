/* cellctl.h - shared pieces of the cellctl CLI. Each command area (vp, policy, audit,
 * ...) implements its commands in cellctl_AREA.c and adds rows to the table in
 * cellctl.c. A command gets the words after its name and returns the exit status. */
#ifndef CELLS_CELLCTL_H
#define CELLS_CELLCTL_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "wire.h"

struct cellctl {
	const char *run_dir;
	bool json;
};

struct cellctl_cmd {
	const char *words;   /* "vp create" */
	const char *args;    /* usage of the arguments */
	const char *summary; /* one line */
	int (*run)(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
};

/* Send req (with optional fds) to cellsd. On a transport error or a refused request,
 * prints "cellctl: WORDS: reason" and returns non-zero; on success *result (owned, may
 * be an empty object) is the parsed JSON and *exit_code the command's exit status. */
int cellctl_call(struct cellctl *cc, const char *words, Cells__Ctl__V1__CtlRequest *req,
		 const int *fds, size_t nfds, json_object **result, int *exit_code);
/* Print a result: --json prints the document; otherwise "key: value" lines, arrays of
 * objects as a table with the given columns (NULL: all keys of the first row). */
/* Send req and print the result: as JSON with --json, else with text(res) when given,
 * else the string value of field, else as cellctl_print. Returns the exit code (0, or 1
 * after the error line). */
int cellctl_request(struct cellctl *cc, const char *words, Cells__Ctl__V1__CtlRequest *req,
		    const char *field, void (*text)(json_object *res));
void cellctl_print(struct cellctl *cc, json_object *result, const char *array_key,
		   const char *const *columns);
/* The usual case: call, print, return 0 or 1. */
int cellctl_simple(struct cellctl *cc, const char *words, Cells__Ctl__V1__CtlRequest *req);
/* Print "cellctl: WORDS: usage: cellctl WORDS ARGS" and return 2. */
int cellctl_usage(const struct cellctl_cmd *cmd);
/* Read a password from a file (first line, without the newline), or prompt on the
 * terminal when path is NULL. Returns a malloc'd buffer or NULL (message printed). */
char *cellctl_read_password(const char *path, const char *prompt, size_t *len);
/* Read a whole file of at most max bytes (message printed on failure). */
int cellctl_read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* cellctl_tel.c */
int cellctl_cmd_tel_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			   char **argv);
/* cellctl_policy.c */
int cellctl_cmd_trust_pin(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_cmd_policy_apply(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			     char **argv);
int cellctl_cmd_policy_verify(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			      char **argv);
int cellctl_cmd_policy_show(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv);
int cellctl_cmd_vp_password(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv);
int cellctl_cmd_vp_config(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
/* cellctl_image.c */
int cellctl_cmd_image_import(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			     char **argv);
int cellctl_cmd_image_list(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			   char **argv);
int cellctl_cmd_image_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			     char **argv);
/* cellctl_mgmt.c */
int cellctl_cmd_enroll(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_cmd_mgmt_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc,
			    char **argv);

#endif
