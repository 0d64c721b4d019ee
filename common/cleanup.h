/* cleanup.h - scope-bound ownership (after crun/LXC/systemd).
 *
 *   cleanup_free char *s = malloc(..);     freed at scope exit
 *   cleanup_close int fd = open(..);       closed at scope exit (-1 ignored)
 *   return steal_pointer(&s);              hand ownership to the caller
 *   int owned = take_fd(&fd);              hand an fd over
 *
 * Every cleanup function accepts NULL / -1. Library-specific helpers live in
 * cleanup_ssl.h and cleanup_sqlite.h so that this header pulls in nothing.
 */
#ifndef CELLS_CLEANUP_H
#define CELLS_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

static inline void cells_freep(void *p)
{
	free(*(void **)p);
}
static inline void cells_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void cells_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void cells_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
/* Wipe a secret buffer of known size before freeing it: use cells_secret_t. */
typedef struct {
	unsigned char *p;
	size_t len;
} cells_secret_t;
void cells_secret_free(cells_secret_t *s);
static inline void cells_secret_freep(cells_secret_t *s)
{
	cells_secret_free(s);
}

#define cleanup_free __attribute__((cleanup(cells_freep)))
#define cleanup_close __attribute__((cleanup(cells_closep)))
#define cleanup_file __attribute__((cleanup(cells_fclosep)))
#define cleanup_dir __attribute__((cleanup(cells_closedirp)))
#define cleanup_secret __attribute__((cleanup(cells_secret_freep)))

#define steal_pointer(pp)                                                                          \
	({                                                                                         \
		__typeof__(*(pp)) _p = *(pp);                                                      \
		*(pp) = NULL;                                                                      \
		_p;                                                                                \
	})

static inline int take_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

#define CELLS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
