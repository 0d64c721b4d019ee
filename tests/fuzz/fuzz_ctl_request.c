/* fuzz_ctl_request.c - decode control requests as cellsd receives them. */
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cells_err_t err;
	Cells__Ctl__V1__CtlRequest *r = NULL;
	if (cells_ctl_request_decode(data, size, &r, &err) == 0)
		cells__ctl__v1__ctl_request__free_unpacked(r, NULL);
	return 0;
}
