/* cmdtab.h - the one command dispatcher of the command-line tools (cellctl, cells-mdm).
 *
 * A tool keeps its own table of typed entries whose first three members are
 *   const char *words;   "vp create": the command words
 *   const char *args;    the usage of its arguments
 *   const char *summary; one line
 * (CMDTAB_ENTRY_CHECK asserts it) and describes the table with struct cmdtab. The
 * longest run of leading words that matches an entry picks it; after it, --help/-h
 * prints the entry's usage and --json is taken (both only before a "--"). */
#ifndef CELLS_CMDTAB_H
#define CELLS_CMDTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct cmdtab_head {
	const char *words;
	const char *args;
	const char *summary;
};

#define CMDTAB_ENTRY_CHECK(T)                                                                      \
	_Static_assert(offsetof(T, words) == offsetof(struct cmdtab_head, words) &&                \
			   offsetof(T, args) == offsetof(struct cmdtab_head, args) &&              \
			   offsetof(T, summary) == offsetof(struct cmdtab_head, summary),          \
		       #T " does not begin like struct cmdtab_head")

struct cmdtab {
	const char *prog;    /* "cellctl" */
	const void *entries; /* the tool's table */
	size_t n, size;	     /* entries and the size of one */
	int args_width;	     /* column of the summaries in the list */
};

/* The entry argv's leading words name, with its arguments in *cargc and *cargv (argv is
 * compacted in place); *json set when --json follows the command. NULL when there is
 * nothing to run: *rc is 0 after --help, 2 after a one-line error. */
const void *cmdtab_dispatch(const struct cmdtab *t, int argc, char **argv, bool *json, int *rc,
			    int *cargc, char ***cargv);
/* "  WORDS  ARGS  SUMMARY" for every entry, in table order. */
void cmdtab_list(const struct cmdtab *t, FILE *f);
/* "PROG: WORDS: usage: PROG WORDS ARGS" on stderr; returns 2 (the exit code). */
int cmdtab_usage(const struct cmdtab *t, const void *entry);

#endif
