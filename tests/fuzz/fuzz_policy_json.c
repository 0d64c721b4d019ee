/* fuzz_policy_json.c - the strict policy JSON parser (what `cells-mdm policy sign`
 * reads); an accepted policy must decode and validate as protobuf. */
#include "pol_json.h"
#include "pol_policy.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cells_err_t err;
	uint8_t *b = NULL;
	size_t n;
	if (pol_json_to_policy((const char *)data, size, &b, &n, &err) < 0)
		return 0;
	Cells__V1__Policy *p = cells__v1__policy__unpack(NULL, n, b);
	if (!p)
		abort();
	/* what the JSON parser accepts with a device, the device accepts as well-formed */
	if (*p->device_id && pol_policy_validate(p, &err) < 0)
		abort();
	cells__v1__policy__free_unpacked(p, NULL);
	free(b);
	return 0;
}
