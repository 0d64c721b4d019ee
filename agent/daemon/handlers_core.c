/* handlers_core.c - requests about the agent itself. */
#include "cleanup_ssl.h"
#include "device_key.h"
#include "handlers_core.h"
#include "vpm.h"

/* Safe: read-only, reveals nothing but liveness and the version. */
int h_ping(struct ctl_call *c, cells_err_t *err)
{
	json_object_object_add(c->result, "pong", json_object_new_boolean(1));
	json_object_object_add(c->result, "version", json_object_new_string(CELLS_VERSION));
	return 0;
}

/* Safe: read-only summary of the agent's own state. */
int h_status(struct ctl_call *c, cells_err_t *err)
{
	char id[DEVICE_ID_LEN + 1];
	if (device_key_load(c->d->state_dir, NULL, id, err) < 0)
		return -1;
	json_object_object_add(c->result, "device_id", json_object_new_string(id));
	json_object_object_add(c->result, "version", json_object_new_string(CELLS_VERSION));
	json_object_object_add(c->result, "state_dir", json_object_new_string(c->d->state_dir));
	json_object_object_add(c->result, "vps_running",
			       json_object_new_int(c->d->vpm ? vpm_count_running(c->d) : 0));
	json_object_object_add(
	    c->result, "audit",
	    json_object_new_string(c->d->state & CELLSD_ST_AUDIT_CLOSED ? "closed" : "ok"));
	return 0;
}

/* Safe: the device id is a hash of the public key, public by design. */
int h_device_id(struct ctl_call *c, cells_err_t *err)
{
	char id[DEVICE_ID_LEN + 1];
	if (device_key_load(c->d->state_dir, NULL, id, err) < 0)
		return -1;
	json_object_object_add(c->result, "device_id", json_object_new_string(id));
	return 0;
}
