/* handlers_tel.c - control requests of the telephony proxy. */
#include "handlers_tel.h"
#include "tel.h"

/* Safe: read-only; shows numbers, pty paths and call states to root (or the control
 * group), never call content or the SIM's identifiers. */
int h_tel_status(struct ctl_call *c, cells_err_t *err)
{
	return tel_status_json(c->d, c->result, err);
}
