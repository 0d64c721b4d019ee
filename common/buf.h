/* buf.h - bounded byte buffers for untrusted input and for building output.
 *
 * cells_rbuf_t reads from borrowed bytes: every get checks the remaining length first
 * and fails (returns -1, nothing consumed) rather than reading past the end.
 * cells_wbuf_t owns a growable buffer with a hard capacity limit: a put that would
 * exceed the limit fails and leaves the buffer as it was. */
#ifndef CELLS_BUF_H
#define CELLS_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct {
	const uint8_t *p; /* borrowed */
	size_t len;
	size_t pos;
} cells_rbuf_t;

static inline cells_rbuf_t cells_rbuf(const void *p, size_t len)
{
	cells_rbuf_t b = {(const uint8_t *)p, len, 0};
	return b;
}
static inline size_t cells_rbuf_left(const cells_rbuf_t *b)
{
	return b->len - b->pos;
}
int cells_rbuf_u8(cells_rbuf_t *b, uint8_t *v);
int cells_rbuf_u16be(cells_rbuf_t *b, uint16_t *v);
int cells_rbuf_u32be(cells_rbuf_t *b, uint32_t *v);
int cells_rbuf_u64be(cells_rbuf_t *b, uint64_t *v);
/* Borrow n bytes (pointer into the buffer). */
int cells_rbuf_bytes(cells_rbuf_t *b, size_t n, const uint8_t **out);
/* Read a line ending in "\r", "\n" or "\r\n" of at most max bytes (without the
 * terminator); -1 when no terminator within max+2 bytes or the buffer ends first. */
int cells_rbuf_line(cells_rbuf_t *b, size_t max, const uint8_t **line, size_t *line_len);

typedef struct {
	uint8_t *p; /* owned */
	size_t len;
	size_t cap;
	size_t limit; /* hard maximum of len */
} cells_wbuf_t;

void cells_wbuf_init(cells_wbuf_t *b, size_t limit);
void cells_wbuf_free(cells_wbuf_t *b);
int cells_wbuf_put(cells_wbuf_t *b, const void *p, size_t n);
int cells_wbuf_u8(cells_wbuf_t *b, uint8_t v);
int cells_wbuf_u32be(cells_wbuf_t *b, uint32_t v);
int cells_wbuf_u64be(cells_wbuf_t *b, uint64_t v);
int cells_wbuf_printf(cells_wbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void cells_wbuf_freep(cells_wbuf_t *b)
{
	cells_wbuf_free(b);
}
#define cleanup_wbuf __attribute__((cleanup(cells_wbuf_freep)))

#endif
