/* fuzz_image_request.c - the parsers of an image download request on the MDM's serve
 * listener (GET /v1/images/<sha256>, a device's Range header): the first 8 bytes are the
 * file's size, the rest is "URI\0RANGE". A range that parses lies inside the file. */
#include "mdm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8 || size > 4096)
		return 0;
	uint64_t fsize;
	memcpy(&fsize, data, 8);
	char *s = malloc(size - 8 + 2);
	if (!s)
		return 0;
	memcpy(s, data + 8, size - 8);
	s[size - 8] = 0;
	s[size - 7] = 0;
	const char *range = s + strlen(s) + 1; /* "" when there is no NUL in the input */
	uint8_t sha[32];
	const char *hex = mdm_image_uri_sha(s, sha);
	if (hex && strlen(hex) != 64)
		abort();
	uint64_t from = 0, to = 0;
	if (mdm_image_range(range, fsize, &from, &to) == 0 && !(from < to && to <= fsize))
		abort();
	free(s);
	return 0;
}
