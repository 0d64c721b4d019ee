/* fuzz_netipc.c - decode untrusted datagrams of the cellsd <-> cellsd-net socketpair
 * in both directions (header, direction, size limits, embedded messages). */
#include "netipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cells_err_t err;
	struct netipc_msg m;
	if (netipc_decode(data, size, NETIPC_TO_CELLSD, &m, &err) == 0) {
		if (m.type == NETIPC_RECV) {
			Cells__V1__Envelope *env = NULL;
			if (cells_envelope_decode(m.raw, m.raw_len, &env, &err) == 0)
				cells__v1__envelope__free_unpacked(env, NULL);
		}
		netipc_msg_free(&m);
	}
	if (netipc_decode(data, size, NETIPC_TO_NET, &m, &err) == 0)
		netipc_msg_free(&m);
	return 0;
}
