/* display_png.c - XRGB8888 pixels to PNG (libpng), written to an fd. */
#include "cleanup.h"
#include "display_int.h"
#include "util.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>

struct png_out {
	int fd;
	int err; /* errno of the first failed write */
};

static void png_write_cb(png_structp png, png_bytep data, size_t n)
{
	struct png_out *o = png_get_io_ptr(png);
	if (!o->err && cells_write_all(o->fd, data, n) < 0)
		o->err = errno ? errno : EIO;
}

static void png_flush_cb(png_structp png)
{
}

int disp_png_write(int fd, const uint8_t *px, uint32_t w, uint32_t h, uint32_t stride,
		   cells_err_t *err)
{
	struct png_out o = {.fd = fd};
	cleanup_free uint8_t *row = malloc((size_t)w * 3);
	if (!row)
		return cells_err_sys(err, ENOMEM, "png");
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return cells_err_set(err, ENOMEM, "png: cannot initialise libpng");
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return cells_err_set(err, o.err ? o.err : EIO, "png: encoding failed%s",
				     o.err ? " (write error)" : "");
	}
	png_set_write_fn(png, &o, png_write_cb, png_flush_cb);
	png_set_compression_level(png, 1);
	png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (uint32_t y = 0; y < h; y++) {
		const uint32_t *src = (const uint32_t *)(px + (size_t)y * stride);
		for (uint32_t x = 0; x < w; x++) {
			uint32_t p = src[x]; /* 0xXXRRGGBB in native (little-endian) order */
			row[3 * x] = (uint8_t)(p >> 16);
			row[3 * x + 1] = (uint8_t)(p >> 8);
			row[3 * x + 2] = (uint8_t)p;
		}
		png_write_row(png, row);
	}
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	if (o.err)
		return cells_err_sys(err, o.err, "png: write");
	return 0;
}
