/* audit_tool - a test-only driver of the agent's audit library (not installed).
 *
 *   audit_tool bulk DB N [BATCH]   append N records (BATCH per transaction, default 1),
 *                                  printing each acknowledged seq on stdout at once
 *   audit_tool fill DB NEAR_FULL   append until the log refuses; prints acknowledged
 *                                  seqs, then "refused: <error>"; exit 0 iff ENOSPC
 *   audit_tool verify DB           verify chain and checkpoints; exit 1 on a break
 *   audit_tool prune DB BELOW      rotate: prune records below BELOW
 *   audit_tool upload DB SINCE MAX MODE OUT   write one AuditBatch (MODE full|metadata)
 *
 * The device key is DB's directory's device.key (created when missing). */
#include "audit.h"
#include "device_key.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct audit *open_log(const char *path)
{
	cells_err_t err = {0};
	struct audit *a = NULL;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	EVP_PKEY *key = NULL;
	char id[DEVICE_ID_LEN + 1];
	if (audit_open(path, &a, &err) < 0 || device_key_load(dirname(dir), &key, id, &err) < 0 ||
	    audit_set_signer(a, key, &err) < 0) {
		fprintf(stderr, "audit_tool: %s\n", err.msg);
		exit(1);
	}
	return a;
}

static void ack(uint64_t seq)
{
	char b[32];
	int n = snprintf(b, sizeof b, "%" PRIu64 "\n", seq);
	if (write(STDOUT_FILENO, b, (size_t)n) != n)
		exit(3);
}

static int metadata_mode(const char *vp, void *data)
{
	return *(int *)data;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: see the header of tests/integration/audit_tool.c\n");
		return 2;
	}
	cells_err_t err = {0};
	struct audit *a = open_log(argv[2]);
	int rc = 0;
	if (!strcmp(argv[1], "bulk") && argc >= 4) {
		uint64_t n = strtoull(argv[3], NULL, 10);
		size_t batch = argc > 4 ? strtoul(argv[4], NULL, 10) : 1;
		if (batch < 1 || batch > 1000)
			batch = 1;
		json_object *d = json_object_new_object();
		json_object_object_add(d, "i", json_object_new_int64(0));
		struct audit_entry e[1000];
		for (size_t i = 0; i < batch; i++)
			e[i] = (struct audit_entry){"work", "test", "test.bulk", "ok", d};
		for (uint64_t i = 0; i < n; i += batch) {
			uint64_t last;
			size_t k = n - i < batch ? (size_t)(n - i) : batch;
			json_object_object_add(d, "i", json_object_new_int64((int64_t)i));
			if (audit_append_batch(a, e, k, &last, &err) < 0) {
				fprintf(stderr, "audit_tool: %s\n", err.msg);
				rc = 1;
				break;
			}
			for (uint64_t s = last - k + 1; s <= last; s++)
				ack(s);
		}
		json_object_put(d);
	} else if (!strcmp(argv[1], "fill") && argc >= 4) {
		audit_set_near_full(a, strtoull(argv[3], NULL, 10));
		char pad[2048];
		memset(pad, 'x', sizeof pad - 1);
		pad[sizeof pad - 1] = 0;
		json_object *d = json_object_new_object();
		json_object_object_add(d, "pad", json_object_new_string(pad));
		for (uint64_t i = 0; i < 10000000; i++) {
			uint64_t seq;
			if (audit_append(a, "work", "test", "test.fill", "ok", d, &seq, &err) < 0) {
				printf("refused: %s\n", err.msg);
				rc = err.code == ENOSPC ? 0 : 1;
				break;
			}
			printf("%" PRIu64 "\n", seq);
		}
		json_object_put(d);
		/* a second try must fail too (fail closed, nothing silently accepted) */
		if (rc == 0 &&
		    audit_append(a, "work", "test", "test.after", "ok", NULL, NULL, &err) == 0) {
			printf("accepted after the refusal\n");
			rc = 1;
		}
	} else if (!strcmp(argv[1], "verify")) {
		struct audit_verify_result r;
		if (audit_verify(a, &r, &err) < 0) {
			fprintf(stderr, "audit_tool: %s\n", err.msg);
			rc = 1;
		} else if (!r.ok) {
			fprintf(stderr, "BROKEN at record %" PRIu64 ": %s\n", r.bad_seq, r.reason);
			rc = 1;
		} else {
			printf("ok %" PRIu64 " records %" PRIu64 "..%" PRIu64 ", %" PRIu64
			       " checkpoints\n",
			       r.records, r.first_seq, r.last_seq, r.checkpoints);
		}
	} else if (!strcmp(argv[1], "prune") && argc >= 4) {
		if (audit_prune(a, strtoull(argv[3], NULL, 10), &err) < 0) {
			fprintf(stderr, "audit_tool: %s\n", err.msg);
			rc = 1;
		}
	} else if (!strcmp(argv[1], "upload") && argc >= 7) {
		int mode = !strcmp(argv[5], "full")
			       ? CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_FULL
			       : CELLS__V1__AUDIT_UPLOAD__AUDIT_UPLOAD_METADATA;
		Cells__V1__AuditBatch *b = NULL;
		if (audit_upload_batch(a, strtoull(argv[3], NULL, 10), strtoul(argv[4], NULL, 10),
				       metadata_mode, &mode, &b, &err) < 0) {
			fprintf(stderr, "audit_tool: %s\n", err.msg);
			rc = 1;
		} else {
			size_t n = cells__v1__audit_batch__get_packed_size(b);
			uint8_t *p = malloc(n + 1);
			cells__v1__audit_batch__pack(b, p);
			FILE *f = fopen(argv[6], "we");
			if (!f || fwrite(p, 1, n, f) != n)
				rc = 1;
			if (f)
				fclose(f);
			free(p);
			audit_batch_free(b);
		}
	} else {
		fprintf(stderr, "audit_tool: unknown command\n");
		rc = 2;
	}
	audit_close(a);
	return rc;
}
