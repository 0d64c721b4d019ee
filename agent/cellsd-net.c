/* cellsd-net - the unprivileged network process of the Cells agent: TLS, websocket and
 * envelope framing only; it is never trusted (see docs/PROTOCOL.md, SECURITY.md).
 * cellsd starts it with its key and socket as fds; it is not meant to be run by hand. */
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: cellsd-net --ipc-fd N --key-fd N [OPTIONS]\n"
		"The Cells agent's unprivileged network process. cellsd starts it; it speaks\n"
		"TLS websockets to the MDM and forwards size-bounded typed messages to cellsd.\n\n"
		"Options:\n"
		"  --version      print the version and exit\n"
		"  -h, --help     show this help and exit\n");
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf("cellsd-net %s\n", CELLS_VERSION);
			return 0;
		}
	}
	fprintf(stderr, "cellsd-net: the management channel is not built yet (issue 5)\n");
	return 1;
}
