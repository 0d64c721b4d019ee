/* fuzz_policy_decode.c - decode + validate a Policy payload; whatever validates must
 * render as JSON that parses back (strictly) into a valid policy. */
#include "pol_json.h"
#include "pol_policy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cells_err_t err;
	Cells__V1__Policy *p = NULL;
	if (pol_policy_decode(data, size, &p, &err) < 0)
		return 0;
	json_object *o = pol_policy_to_json(p);
	const char *t = json_object_to_json_string(o);
	uint8_t *b = NULL;
	size_t n;
	if (pol_json_to_policy(t, strlen(t), &b, &n, &err) < 0)
		abort(); /* a valid policy must survive its own JSON form */
	free(b);
	json_object_put(o);
	cells__v1__policy__free_unpacked(p, NULL);
	return 0;
}
