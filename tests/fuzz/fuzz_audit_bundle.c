/* fuzz_audit_bundle.c - untrusted audit bytes: export bundles (cells-mdm audit verify
 * FILE) and AuditBatch messages (uploads), through decoding, chain and checkpoint
 * verification. */
#include "audit_chain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cells_err_t err;
	struct audit_verifier v;
	uint8_t pub[32];
	audit_bundle_verify_mem(data, size, &v, pub, &err);
	Cells__V1__AuditBatch *b = NULL;
	if (audit_batch_decode(data, size, &b, &err) == 0) {
		uint8_t key[32] = {0};
		audit_verifier_init(&v);
		v.allow_any_start = true;
		audit_verifier_batch(&v, b, key, &err);
		audit_verifier_finish(&v, &err);
		cells__v1__audit_batch__free_unpacked(b, NULL);
	}
	return 0;
}
