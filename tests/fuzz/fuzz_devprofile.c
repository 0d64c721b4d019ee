/* fuzz_devprofile.c - the strict device profile parser (agent/devices/devprofile.c). */
#include <stdlib.h>

#include "devprofile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cells_err_t err;
	struct devprofile *p = NULL;
	if (devprofile_parse(data, size, &p, &err) == 0) {
		for (size_t i = 0; i < p->nclasses; i++)
			for (size_t j = 0; j < p->classes[i].nnodes; j++)
				json_object_put(devprofile_node_json(&p->classes[i].nodes[j]));
		free(p);
	}
	return 0;
}
