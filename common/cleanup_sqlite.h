/* cleanup_sqlite.h - cleanup attributes for sqlite3 objects (see cleanup.h). */
#ifndef CELLS_CLEANUP_SQLITE_H
#define CELLS_CLEANUP_SQLITE_H

#include <sqlite3.h>

static inline void cells_sqlite3_finalizep(sqlite3_stmt **s)
{
	if (*s)
		sqlite3_finalize(*s);
}
static inline void cells_sqlite3_closep(sqlite3 **db)
{
	if (*db)
		sqlite3_close_v2(*db);
}
static inline void cells_sqlite3_freep(char **p)
{
	if (*p)
		sqlite3_free(*p);
}
#define cleanup_stmt __attribute__((cleanup(cells_sqlite3_finalizep)))
#define cleanup_sqlite __attribute__((cleanup(cells_sqlite3_closep)))
#define cleanup_sqlite_str __attribute__((cleanup(cells_sqlite3_freep)))

#endif
