#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cells_rbuf_u8(cells_rbuf_t *b, uint8_t *v)
{
	if (cells_rbuf_left(b) < 1)
		return -1;
	*v = b->p[b->pos++];
	return 0;
}

int cells_rbuf_u16be(cells_rbuf_t *b, uint16_t *v)
{
	if (cells_rbuf_left(b) < 2)
		return -1;
	*v = (uint16_t)(b->p[b->pos] << 8 | b->p[b->pos + 1]);
	b->pos += 2;
	return 0;
}

int cells_rbuf_u32be(cells_rbuf_t *b, uint32_t *v)
{
	if (cells_rbuf_left(b) < 4)
		return -1;
	const uint8_t *p = b->p + b->pos;
	*v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	b->pos += 4;
	return 0;
}

int cells_rbuf_u64be(cells_rbuf_t *b, uint64_t *v)
{
	uint32_t hi, lo;
	if (cells_rbuf_left(b) < 8)
		return -1;
	cells_rbuf_u32be(b, &hi);
	cells_rbuf_u32be(b, &lo);
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

int cells_rbuf_bytes(cells_rbuf_t *b, size_t n, const uint8_t **out)
{
	if (cells_rbuf_left(b) < n)
		return -1;
	*out = b->p + b->pos;
	b->pos += n;
	return 0;
}

int cells_rbuf_line(cells_rbuf_t *b, size_t max, const uint8_t **line, size_t *line_len)
{
	size_t left = cells_rbuf_left(b);
	const uint8_t *s = b->p + b->pos;
	for (size_t i = 0; i < left && i <= max; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			size_t adv = i + 1;
			if (s[i] == '\r' && i + 1 < left && s[i + 1] == '\n')
				adv++;
			*line = s;
			*line_len = i;
			b->pos += adv;
			return 0;
		}
	}
	return -1;
}

void cells_wbuf_init(cells_wbuf_t *b, size_t limit)
{
	b->p = NULL;
	b->len = b->cap = 0;
	b->limit = limit;
}

void cells_wbuf_free(cells_wbuf_t *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static int reserve(cells_wbuf_t *b, size_t n)
{
	if (n > b->limit || b->len > b->limit - n)
		return -1;
	if (b->len + n <= b->cap)
		return 0;
	size_t ncap = b->cap ? b->cap : 64;
	while (ncap < b->len + n)
		ncap *= 2;
	if (ncap > b->limit)
		ncap = b->limit;
	uint8_t *np = realloc(b->p, ncap ? ncap : 1);
	if (!np)
		return -1;
	b->p = np;
	b->cap = ncap;
	return 0;
}

int cells_wbuf_put(cells_wbuf_t *b, const void *p, size_t n)
{
	if (reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

int cells_wbuf_u8(cells_wbuf_t *b, uint8_t v)
{
	return cells_wbuf_put(b, &v, 1);
}

int cells_wbuf_u32be(cells_wbuf_t *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	return cells_wbuf_put(b, x, 4);
}

int cells_wbuf_u64be(cells_wbuf_t *b, uint64_t v)
{
	if (cells_wbuf_u32be(b, (uint32_t)(v >> 32)) < 0)
		return -1;
	if (cells_wbuf_u32be(b, (uint32_t)v) < 0) {
		b->len -= 4;
		return -1;
	}
	return 0;
}

int cells_wbuf_printf(cells_wbuf_t *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	char *tmp = malloc((size_t)n + 1);
	if (!tmp)
		return -1;
	va_start(ap, fmt);
	vsnprintf(tmp, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int r = cells_wbuf_put(b, tmp, (size_t)n);
	free(tmp);
	return r;
}
