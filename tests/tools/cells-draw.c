/* cells-draw - a test app for inside a VP: fills /dev/cells/fb0 with a colour, frame
 * after frame, as an app that owns the screen would.
 *
 *   cells-draw [--dev DIR] [--frames N] (COLOUR | --file PATH)
 *
 * COLOUR is RRGGBB hex. With --file the colour is re-read from PATH before each frame
 * (so a test can change what a VP draws while it is in the background). Draws at about
 * 60 frames per second until killed or N frames. Exit 1: cannot open or map fb0 (e.g.
 * the VP was denied the display); exit 3: the display was revoked while drawing. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void on_sigbus(int sig)
{
	static const char m[] = "cells-draw: the display was revoked\n";
	if (write(2, m, sizeof m - 1) < 0) {
	}
	_exit(3);
}

static int read_colour(const char *path, uint32_t *c)
{
	FILE *f = fopen(path, "re");
	char line[32];
	if (!f)
		return -1;
	char *ok = fgets(line, sizeof line, f);
	fclose(f);
	if (!ok)
		return -1;
	*c = (uint32_t)strtoul(line, NULL, 16) & 0xffffff;
	return 0;
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/cells", *file = NULL, *colour = NULL;
	long frames = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dev") && i + 1 < argc)
			dev = argv[++i];
		else if (!strcmp(argv[i], "--file") && i + 1 < argc)
			file = argv[++i];
		else if (!strcmp(argv[i], "--frames") && i + 1 < argc)
			frames = strtol(argv[++i], NULL, 10);
		else if (argv[i][0] != '-' && !colour)
			colour = argv[i];
		else {
			fprintf(
			    stderr,
			    "usage: cells-draw [--dev DIR] [--frames N] (COLOUR | --file PATH)\n");
			return 2;
		}
	}
	if (!colour && !file) {
		fprintf(stderr,
			"usage: cells-draw [--dev DIR] [--frames N] (COLOUR | --file PATH)\n");
		return 2;
	}
	char p[4096];
	unsigned w, h, stride;
	char fmt[32];
	snprintf(p, sizeof p, "%s/fb0.geometry", dev);
	FILE *g = fopen(p, "re");
	if (!g || fscanf(g, "%u %u %u %31s", &w, &h, &stride, fmt) != 4 ||
	    strcmp(fmt, "XRGB8888")) {
		fprintf(stderr, "cells-draw: %s: no usable geometry\n", p);
		return 1;
	}
	fclose(g);
	snprintf(p, sizeof p, "%s/fb0", dev);
	int fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cells-draw: %s: %s\n", p, strerror(errno));
		return 1;
	}
	size_t size = (size_t)stride * h;
	uint8_t *fb = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fb == MAP_FAILED) {
		fprintf(stderr, "cells-draw: mmap %s: %s\n", p, strerror(errno));
		return 1;
	}
	signal(SIGBUS, on_sigbus);
	uint32_t c = colour ? (uint32_t)strtoul(colour, NULL, 16) & 0xffffff : 0;
	for (long n = 0; frames < 0 || n < frames; n++) {
		if (file)
			read_colour(file, &c);
		for (unsigned y = 0; y < h; y++) {
			uint32_t *row = (uint32_t *)(fb + (size_t)y * stride);
			for (unsigned x = 0; x < w; x++)
				row[x] = c;
		}
		struct timespec ts = {0, 16 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return 0;
}
