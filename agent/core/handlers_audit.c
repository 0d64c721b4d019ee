/* handlers_audit.c - control requests of the auditor: query, verify, export. */
#include "audit.h"
#include "cleanup.h"
#include "handlers_audit.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

/* Safe: read-only; the peer passed SO_PEERCRED (root or the control group), who may read
 * the audit log. Filters are bound as SQL parameters, the limit is capped. */
int h_audit_query(struct ctl_call *c, cells_err_t *err)
{
	const Cells__Ctl__V1__AuditQuery *q = c->req->audit_query;
	struct audit_filter f = {
	    .since_us = q->since_us,
	    .until_us = q->until_us,
	    .vp = q->vp,
	    .type = q->type,
	    .outcome = q->outcome,
	    .grep = q->grep,
	    .limit = q->limit,
	};
	json_object *arr = json_object_new_array();
	json_object_object_add(c->result, "records", arr);
	if (!c->d->audit)
		return cells_err_set(err, EIO, "audit log is not open");
	int r = audit_query(c->d->audit, &f, arr, err);
	if (r == 1)
		json_object_object_add(c->result, "truncated", json_object_new_boolean(1));
	return r < 0 ? -1 : 0;
}

/* Safe: read-only (one read transaction); permitted even when the log is closed so
 * that an auditor can see why. */
int h_audit_verify(struct ctl_call *c, cells_err_t *err)
{
	struct audit_verify_result r;
	if (!c->d->audit)
		return cells_err_set(err, EIO, "audit log is not open");
	if (audit_verify(c->d->audit, &r, err) < 0)
		return -1;
	json_object *o = c->result;
	json_object_object_add(o, "ok", json_object_new_boolean(r.ok));
	json_object_object_add(o, "records", json_object_new_int64((int64_t)r.records));
	json_object_object_add(o, "first_seq", json_object_new_int64((int64_t)r.first_seq));
	json_object_object_add(o, "last_seq", json_object_new_int64((int64_t)r.last_seq));
	json_object_object_add(o, "checkpoints", json_object_new_int64((int64_t)r.checkpoints));
	json_object_object_add(o, "checkpoints_signed",
			       json_object_new_boolean(r.signed_checkpoints));
	if (!r.ok) {
		json_object_object_add(o, "bad_seq", json_object_new_int64((int64_t)r.bad_seq));
		json_object_object_add(o, "reason", json_object_new_string(r.reason));
	}
	return 0;
}

/* Safe: writes only to the fd the (authorised) peer passed; the export is itself
 * audited first and refused when that record cannot be written (fail closed). */
int h_audit_export(struct ctl_call *c, cells_err_t *err)
{
	cleanup_close int fd = ctl_call_take_fd(c, 0);
	if (fd < 0)
		return cells_err_set(err, EBADF, "audit export needs the output file as an fd");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
		return cells_err_set(err, EBADF, "audit export: the output fd is not writable");
	if (cellsd_audit(c->d, "", c->actor, "audit.exported", "ok", NULL, err) < 0)
		return cells_err_prefix(err, "audit export");
	uint64_t n = 0;
	if (audit_export(c->d->audit, fd, &n, err) < 0)
		return -1;
	if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
		return cells_err_sys(err, errno, "audit export: fsync");
	json_object_object_add(c->result, "records", json_object_new_int64((int64_t)n));
	return 0;
}
