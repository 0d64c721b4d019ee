/* fuzz_envelope.c - decode untrusted management envelopes and the signed objects they
 * carry (size limits, version, ids, signature shapes, the kind of every Signed by its
 * position and that kind's payload limit). */
#include "wire.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cells_err_t err;
	Cells__V1__Envelope *env = NULL;
	if (cells_envelope_decode(data, size, &env, &err) == 0) {
		if (env->body_case == CELLS__V1__ENVELOPE__BODY_POLICY)
			cells_signed_check(env->policy, CELLS__V1__SIGNED_KIND__SIGNED_POLICY,
					   &err);
		if (env->body_case == CELLS__V1__ENVELOPE__BODY_COMMAND)
			cells_signed_check(env->command, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND,
					   &err);
		/* whatever decodes keeps the kind rules (decode checked them) */
		if (cells_envelope_check_signed(env, &err) < 0)
			abort();
		cells__v1__envelope__free_unpacked(env, NULL);
	}
	Cells__V1__Signed *s = NULL;
	if (cells_signed_decode(data, size, &s, &err) == 0)
		cells__v1__signed__free_unpacked(s, NULL);
	return 0;
}
