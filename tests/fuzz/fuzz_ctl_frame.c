/* fuzz_ctl_frame.c - cellsd's non-blocking control frame reader (agent/ctl/ctl_io.c
 * ctl_rx_read) on untrusted bytes arriving in pieces: the first input byte picks the
 * piece size, the rest is written into a socketpair piece by piece, then closed; every
 * complete frame is decoded as a control request. */
#include "ctl_io.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_FRAME (64 * 1024) /* the reader's limit here, for speed */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t piece = (size_t)(data[0] % 32) + 1;
	data++;
	size--;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	struct ctl_rx rx = {0};
	size_t off = 0;
	for (int frames = 0; frames < 4;) {
		if (off < size) {
			size_t k = size - off < piece ? size - off : piece;
			ssize_t w = send(sv[1], data + off, k, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0)
				off += (size_t)w;
		} else if (sv[1] >= 0) {
			close(sv[1]);
			sv[1] = -1;
		}
		cells_err_t err;
		int r = ctl_rx_read(&rx, sv[0], FUZZ_MAX_FRAME, &err);
		if (r < 0)
			break;
		if (r == 0) {
			if (sv[1] < 0)
				abort(); /* a closed peer must end the frame with an error */
			continue;
		}
		if (rx.got != rx.len + 4)
			abort();
		Cells__Ctl__V1__CtlRequest *req = NULL;
		if (cells_ctl_request_decode(rx.body, rx.len, &req, &err) == 0)
			cells__ctl__v1__ctl_request__free_unpacked(req, NULL);
		ctl_rx_reset(&rx);
		frames++;
	}
	ctl_rx_reset(&rx);
	close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	return 0;
}
