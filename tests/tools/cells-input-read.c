/* cells-input-read - a test app for inside a VP: reads `struct input_event`s from
 * /dev/cells/input and prints one line "TYPE CODE VALUE" per event.
 *
 *   cells-input-read [--dev DIR] [--count N] [--timeout SECONDS]
 *
 * Stops after N events (default: never) or when no event came for SECONDS (default
 * 10). Exit 0 when it read at least one event, 1 when none came. */
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *dev = "/dev/cells";
	long count = -1, timeout = 10;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dev") && i + 1 < argc)
			dev = argv[++i];
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = strtol(argv[++i], NULL, 10);
		else {
			fprintf(stderr,
				"usage: cells-input-read [--dev DIR] [--count N] [--timeout S]\n");
			return 2;
		}
	}
	char p[4096];
	snprintf(p, sizeof p, "%s/input", dev);
	int fd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cells-input-read: %s: %s\n", p, strerror(errno));
		return 1;
	}
	long got = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (count < 0 || got < count) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int r = poll(&pf, 1, (int)(timeout * 1000));
		if (r <= 0)
			break;
		struct input_event ev[64];
		ssize_t n = read(fd, ev, sizeof ev);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0)
			break;
		for (size_t i = 0; i < (size_t)n / sizeof ev[0]; i++, got++)
			printf("%u %u %d\n", ev[i].type, ev[i].code, ev[i].value);
	}
	return got > 0 ? 0 : 1;
}
