/* receipt_forge - test helper: turn an agent's queued result envelope (a CommandResult
 * carrying a signed wipe receipt, as stored in the state DB's mgmt_outbox) into a forged
 * one: one bit of the receipt's signature flipped and, when CORRELATION is given, the
 * envelope made to answer that queue entry. The server must refuse it.
 *   receipt_forge IN OUT [CORRELATION] */
#include "cleanup.h"
#include "util.h"
#include "wire.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: receipt_forge IN OUT [CORRELATION]\n");
		return 2;
	}
	cleanup_free uint8_t *in = NULL;
	cleanup_free uint8_t *out = NULL;
	size_t n, on;
	cleanup_envelope Cells__V1__Envelope *env = NULL;
	if (cells_read_file(argv[1], CELLS_MAX_ENVELOPE, &in, &n, &err) < 0 ||
	    cells_envelope_decode(in, n, &env, &err) < 0) {
		fprintf(stderr, "receipt_forge: %s\n", err.msg);
		return 1;
	}
	if (env->body_case != CELLS__V1__ENVELOPE__BODY_RESULT || !env->result->receipt ||
	    !env->result->receipt->n_signatures) {
		fprintf(stderr, "receipt_forge: not a result with a signed receipt\n");
		return 1;
	}
	Cells__V1__Signature *sig = env->result->receipt->signatures[0];
	sig->signature.data[sig->signature.len - 1] ^= 1;
	char *saved = env->correlation_id; /* env owns it: put it back before env is freed */
	if (argc == 4)
		env->correlation_id = argv[3];
	int r = cells_envelope_encode(env, &out, &on, &err);
	env->correlation_id = saved;
	if (r < 0) {
		fprintf(stderr, "receipt_forge: %s\n", err.msg);
		return 1;
	}
	FILE *f = fopen(argv[2], "wbe");
	if (!f || fwrite(out, 1, on, f) != on || fclose(f) != 0) {
		fprintf(stderr, "receipt_forge: cannot write %s\n", argv[2]);
		return 1;
	}
	return 0;
}
