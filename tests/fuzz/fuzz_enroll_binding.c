/* fuzz_enroll_binding.c - the MDM's check of an EnrollRequest's identity_binding, which
 * an unauthenticated peer reaches right after its token was accepted: the Signed
 * wrapper's decode, the kind, the signature by the key the payload names, the
 * EnrollBinding's parse, the CSR hash and the time. */
#include <time.h>

#include "mdm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the CSR bytes the seed bindings were made for (corpus/fuzz_enroll_binding) */
	static const uint8_t csr[] = "cells-fuzz-csr";
	cells_err_t err;
	Cells__V1__Signed *s = NULL;
	if (cells_signed_decode(data, size, &s, &err) < 0)
		return 0;
	uint8_t identity[32];
	(void)mdm_enroll_binding_verify(s, csr, sizeof csr - 1, (int64_t)time(NULL), identity,
					&err);
	cells__v1__signed__free_unpacked(s, NULL);
	return 0;
}
