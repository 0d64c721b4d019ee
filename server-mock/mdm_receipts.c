/* mdm_receipts.c - the server's check and record of wipe receipts (docs/PROTOCOL.md
 * §14): a CommandResult carrying a receipt is verified with the Ed25519 key of the
 * device's certificate (the key it enrolled with: the device id is derived from it)
 * and against the queued wipe command it answers, then stored in the receipts table;
 * and `cells-mdm receipts`. */
#include "cleanup.h"
#include "log.h"
#include "mdm.h"
#include "mdm_store.h"
#include "pol_sig.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The command of queue entry queue_id of device (our own signed blob from our DB):
 * 1 and *out when it is a command, 0 when there is no such entry or it is a policy. */
static int queued_command(struct mdm_store *st, const char *queue_id, const char *device,
			  Cells__V1__Command **out, cells_err_t *err)
{
	struct mdm_qentry e = {0};
	*out = NULL;
	int k = queue_id && *queue_id ? mdm_store_queue_get(st, queue_id, device, &e, err) : 0;
	if (k <= 0)
		return k;
	int r = 0;
	if (e.kind == MDM_QK_COMMAND) {
		cleanup_signed Cells__V1__Signed *s = NULL;
		if (cells_signed_decode(e.blob, e.blob_len, &s, err) < 0) {
			r = cells_err_prefix(err, "queue entry %s", queue_id);
		} else {
			*out = cells__v1__command__unpack(NULL, s->payload.len, s->payload.data);
			r = *out ? 1
				 : cells_err_set(err, EBADMSG, "queue entry %s: bad command",
						 queue_id);
		}
	}
	mdm_qentry_clear(&e);
	return r;
}

/* The checks of §14 on a verified receipt. */
static int receipt_matches(const Cells__V1__WipeReceipt *w, const char *device,
			   const Cells__V1__CommandResult *r, const Cells__V1__Command *c,
			   cells_err_t *err)
{
	if (strcmp(w->device_id, device))
		return cells_err_set(err, EPERM, "receipt names device %s", w->device_id);
	if (!r->command_id || strcmp(w->command_id, r->command_id))
		return cells_err_set(err, EINVAL, "receipt is for command %s, the result for %s",
				     w->command_id, r->command_id ? r->command_id : "");
	if (!c)
		return 0;
	if (c->action_case != CELLS__V1__COMMAND__ACTION_WIPE || !c->wipe)
		return cells_err_set(err, EINVAL, "receipt answers a command that is not a wipe");
	if (strcmp(w->command_id, c->command_id))
		return cells_err_set(err, EINVAL, "receipt is for command %s, not %s",
				     w->command_id, c->command_id);
	if (strcmp(w->vp, c->wipe->vp))
		return cells_err_set(err, EINVAL, "receipt is for VP %s, the command wiped %s",
				     w->vp, c->wipe->vp);
	return 0;
}

int mdm_receipt_check(struct mdm_store *st, const char *device, const uint8_t pub[32],
		      const char *queue_id, const Cells__V1__CommandResult *r, cells_err_t *err)
{
	cleanup_command_pb Cells__V1__Command *c = NULL;
	if (queued_command(st, queue_id, device, &c, err) < 0)
		return -1;
	if (!r->receipt) {
		/* a wipe is done only with its receipt */
		if (c && c->action_case == CELLS__V1__COMMAND__ACTION_WIPE &&
		    r->status == CELLS__V1__RESULT_STATUS__RESULT_DONE) {
			cells_err_set(err, EBADMSG, "wipe reported done without a receipt");
			return -2;
		}
		return 0;
	}
	cleanup_free uint8_t *blob = NULL;
	size_t n = 0;
	if (pol_signed_pack(r->receipt, &blob, &n, err) < 0)
		return cells_err_prefix(err, "receipt");
	Cells__V1__WipeReceipt *w = NULL;
	cells_err_t why = {0};
	int ok = mdm_wipe_receipt_verify(blob, n, pub, &w, &why) == 0 &&
		 receipt_matches(w, device, r, c, &why) == 0;
	struct mdm_receipt rec = {
	    .device = device,
	    .command_id = ok ? w->command_id : (r->command_id ? r->command_id : ""),
	    .vp = ok ? w->vp : "",
	    .queue_id = queue_id,
	    .reason = ok ? "" : why.msg,
	    .wiped_at = ok ? w->wiped_at : 0,
	    .received_at = time(NULL),
	    .key_status = ok ? (int)w->key_status : 0,
	    .wrapped_key_destroyed = ok && w->wrapped_key_destroyed,
	    .recreated = ok && w->recreated,
	    .verified = ok,
	    .blob = blob,
	    .blob_len = n,
	    .device_key = pub,
	};
	int s = mdm_store_receipt_put(st, &rec, err);
	if (w)
		cells__v1__wipe_receipt__free_unpacked(w, NULL);
	if (s < 0)
		return -1;
	if (!ok) {
		*err = why;
		cells_err_prefix(err, "receipt refused");
		return -2;
	}
	return 0;
}

static int usage(const struct mdm_cmd *cmd)
{
	fprintf(stderr, "cells-mdm: %s: usage: cells-mdm %s %s\n", cmd->words, cmd->words,
		cmd->args);
	return 2;
}

int mdm_cmd_receipts(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	cells_err_t err = {0};
	if (argc > 1 || (argc == 1 && argv[0][0] == '-'))
		return usage(cmd);
	char p[PATH_MAX];
	mdm_path(m, "mdm.db", p);
	if (!m->db[0] && access(p, F_OK) != 0) {
		fprintf(stderr, "cells-mdm: receipts: %s is missing (run 'cells-mdm init' first)\n",
			p);
		return 1;
	}
	struct mdm_store *s = NULL;
	json_object *arr = NULL;
	if (mdm_store_open(mdm_db_where(m), &s, &err) < 0 ||
	    mdm_store_receipts_json(s, argc ? argv[0] : NULL, &arr, &err) < 0) {
		fprintf(stderr, "cells-mdm: receipts: %s\n", err.msg);
		mdm_store_close(s);
		return 1;
	}
	mdm_store_close(s);
	if (m->json) {
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
	} else {
		printf("%-32s %-10s %-26s %-10s %-13s %-8s %s\n", "DEVICE", "VP", "COMMAND",
		       "WIPED_AT", "KEY", "VERIFIED", "REASON");
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *o = json_object_array_get_idx(arr, i);
#define F(k) json_object_object_get(o, k)
			printf("%-32s %-10s %-26s %-10lld %-13s %-8s %s\n",
			       json_object_get_string(F("device_id")),
			       json_object_get_string(F("vp")),
			       json_object_get_string(F("command_id")),
			       (long long)json_object_get_int64(F("wiped_at")),
			       json_object_get_string(F("key_status")),
			       json_object_get_boolean(F("verified")) ? "yes" : "NO",
			       json_object_get_string(F("reason")));
#undef F
		}
	}
	json_object_put(arr);
	return 0;
}
