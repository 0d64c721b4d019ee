/* cmdtab.c - the command dispatcher of the command-line tools (see cmdtab.h). */
#include "cmdtab.h"

#include <string.h>

static const struct cmdtab_head *entry(const struct cmdtab *t, size_t i)
{
	return (const struct cmdtab_head *)((const char *)t->entries + i * t->size);
}

/* How many of argv's leading words match `words`; 0 when they do not all match. */
static int match_words(const char *words, int argc, char **argv)
{
	int n = 0;
	const char *w = words;
	while (*w) {
		size_t len = strcspn(w, " ");
		if (n >= argc || strlen(argv[n]) != len || strncmp(argv[n], w, len) != 0)
			return 0;
		n++;
		w += len;
		w += strspn(w, " ");
	}
	return n;
}

const void *cmdtab_dispatch(const struct cmdtab *t, int argc, char **argv, bool *json, int *rc,
			    int *cargc, char ***cargv)
{
	*rc = 2;
	if (argc == 0) {
		fprintf(stderr, "%s: no command (see %s --help)\n", t->prog, t->prog);
		return NULL;
	}
	const struct cmdtab_head *best = NULL;
	int best_n = 0;
	for (size_t i = 0; i < t->n; i++) {
		int n = match_words(entry(t, i)->words, argc, argv);
		if (n > best_n) {
			best = entry(t, i);
			best_n = n;
		}
	}
	if (!best) {
		fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", t->prog, argv[0],
			t->prog);
		return NULL;
	}
	int n = 0;
	bool after_dd = false;
	for (int i = best_n; i < argc; i++) {
		if (!after_dd && !strcmp(argv[i], "--"))
			after_dd = true;
		if (!after_dd && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
			printf("Usage: %s %s %s\n%s\n", t->prog, best->words, best->args,
			       best->summary);
			*rc = 0;
			return NULL;
		}
		if (!after_dd && !strcmp(argv[i], "--json")) {
			*json = true;
			continue;
		}
		argv[best_n + n++] = argv[i];
	}
	*cargc = n;
	*cargv = argv + best_n;
	return best;
}

void cmdtab_list(const struct cmdtab *t, FILE *f)
{
	for (size_t i = 0; i < t->n; i++)
		fprintf(f, "  %-16s %-*s %s\n", entry(t, i)->words, t->args_width,
			entry(t, i)->args, entry(t, i)->summary);
}

int cmdtab_usage(const struct cmdtab *t, const void *e)
{
	const struct cmdtab_head *c = e;
	fprintf(stderr, "%s: %s: usage: %s %s %s\n", t->prog, c->words, t->prog, c->words, c->args);
	return 2;
}
