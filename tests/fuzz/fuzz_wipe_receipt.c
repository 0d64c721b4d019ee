/* fuzz_wipe_receipt.c - the MDM's verification of an untrusted signed wipe receipt
 * (decode, signature check against a fixed device key, WipeReceipt parse). */
#include "mdm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the device key that signed corpus/fuzz_wipe_receipt/receipt_valid.bin */
	static const uint8_t pub[32] = {0xb8, 0xd5, 0x8f, 0xe7, 0xd4, 0xa3, 0x4e, 0x92,
					0xf7, 0xc9, 0xa5, 0xcc, 0xef, 0x4b, 0xaf, 0xc2,
					0x03, 0xba, 0xb4, 0x98, 0xc4, 0x86, 0xbc, 0xf6,
					0x0b, 0xed, 0xb6, 0x22, 0x6c, 0x18, 0xc1, 0x1f};
	cells_err_t err;
	Cells__V1__WipeReceipt *r = NULL;
	if (mdm_wipe_receipt_verify(data, size, pub, &r, &err) == 0)
		cells__v1__wipe_receipt__free_unpacked(r, NULL);
	return 0;
}
