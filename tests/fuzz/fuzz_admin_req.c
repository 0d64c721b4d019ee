/* fuzz_admin_req.c - the admin API's request-body parser (mdm_admin_req_parse): the
 * first byte picks the body kind (lock/unlock, wipe, policy, token), the rest is the
 * untrusted body. */
#include "mdm_admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	cells_err_t err;
	struct mdm_admin_req r;
	enum mdm_admin_body kind = (enum mdm_admin_body)(data[0] % 4);
	if (mdm_admin_req_parse(kind, (const char *)data + 1, size - 1, &r, &err) == 0)
		mdm_admin_req_clear(&r);
	return 0;
}
