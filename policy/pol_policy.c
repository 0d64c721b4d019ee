/* pol_policy.c - the acceptance rules of a signed policy (docs/PROTOCOL.md "Policies"). */
#include "pol_policy.h"
#include "pol_image.h"
#include "cleanup.h"
#include "util.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

/* vpn, fuse, storage: classes of the device profiles (profiles/, docs/DEVICES.md) */
const char *const pol_device_classes[] = {
    "display", "input",	   "audio", "camera", "gps", "gpu-render", "modem",   "wifi", "bluetooth",
    "sensors", "vibrator", "power", "usb",    "vpn", "fuse",	   "storage", NULL,
};

/* The paper's framebuffer and the touchscreen: one VP at a time by the foreground, never
 * shared; "exclusive" there means "while in front", so several VPs may hold it. */
bool pol_device_class_foreground_bound(const char *name)
{
	return !strcmp(name, "display") || !strcmp(name, "input");
}

bool pol_device_class_valid(const char *name)
{
	for (size_t i = 0; pol_device_classes[i]; i++)
		if (!strcmp(pol_device_classes[i], name))
			return true;
	return false;
}

static const char *const access_names[] = {"no-access", "no-access", "shared", "exclusive"};
static const char *const net_names[] = {"none", "none", "nat"};

const char *pol_access_name(Cells__V1__AccessMode m)
{
	return (unsigned)m < 4 ? access_names[m] : "invalid";
}

int pol_access_parse(const char *s, Cells__V1__AccessMode *out)
{
	for (unsigned i = 1; i < 4; i++)
		if (!strcmp(s, access_names[i])) {
			*out = (Cells__V1__AccessMode)i;
			return 0;
		}
	return -1;
}

const char *pol_net_name(Cells__V1__NetMode m)
{
	return (unsigned)m < 3 ? net_names[m] : "invalid";
}

int pol_net_parse(const char *s, Cells__V1__NetMode *out)
{
	for (unsigned i = 1; i < 3; i++)
		if (!strcmp(s, net_names[i])) {
			*out = (Cells__V1__NetMode)i;
			return 0;
		}
	return -1;
}

int pol_access_rank(Cells__V1__AccessMode m)
{
	return m == CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE ? 2
	       : m == CELLS__V1__ACCESS_MODE__ACCESS_SHARED  ? 1
							     : 0;
}

int pol_net_rank(Cells__V1__NetMode m)
{
	return m == CELLS__V1__NET_MODE__NET_NAT ? 1 : 0;
}

Cells__V1__AccessMode pol_rule_device_mode(const Cells__V1__VpRule *r, const char *cls)
{
	for (size_t i = 0; r && i < r->n_devices; i++)
		if (r->devices[i]->device_class && !strcmp(r->devices[i]->device_class, cls))
			return r->devices[i]->mode ==
				       CELLS__V1__ACCESS_MODE__ACCESS_MODE_UNSPECIFIED
				   ? CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS
				   : r->devices[i]->mode;
	return CELLS__V1__ACCESS_MODE__ACCESS_NO_ACCESS;
}

void pol_bundle_free(struct pol_bundle *b)
{
	if (!b->pb)
		return;
	if (b->policy != b->pb)
		cells__v1__policy_bundle__free_unpacked(b->pb, NULL);
	else
		cells__v1__signed__free_unpacked(b->pb, NULL);
	memset(b, 0, sizeof *b);
}

int pol_bundle_parts(const Cells__V1__Signed *main, Cells__V1__SignedKind kind,
		     Cells__V1__Signed *const *dels, size_t ndels, Cells__V1__Signed *const *rots,
		     size_t nrots, Cells__V1__Signed *out_dels[POL_MAX_BUNDLE_DELEGATIONS],
		     size_t *out_ndels, Cells__V1__Signed *out_rots[POL_MAX_BUNDLE_ROTATIONS],
		     size_t *out_nrots, cells_err_t *err)
{
	*out_ndels = *out_nrots = 0;
	if (ndels > POL_MAX_BUNDLE_DELEGATIONS || nrots > POL_MAX_BUNDLE_ROTATIONS)
		return cells_err_set(err, EBADMSG,
				     "carries too many delegations or rotations (at most %d each)",
				     POL_MAX_BUNDLE_DELEGATIONS);
	for (size_t i = 0; i < ndels; i++)
		out_dels[(*out_ndels)++] = dels[i];
	for (size_t i = 0; i < nrots; i++)
		out_rots[(*out_nrots)++] = rots[i];
	int r = cells_signed_check(main, kind, err);
	for (size_t i = 0; r == 0 && i < ndels; i++)
		r = cells_signed_check(dels[i], CELLS__V1__SIGNED_KIND__SIGNED_KEY_DELEGATION, err);
	for (size_t i = 0; r == 0 && i < nrots; i++)
		r = cells_signed_check(rots[i], CELLS__V1__SIGNED_KIND__SIGNED_ROOT_ROTATION, err);
	return r;
}

int pol_bundle_decode(const uint8_t *p, size_t n, struct pol_bundle *out, cells_err_t *err)
{
	memset(out, 0, sizeof *out);
	if (n > POL_MAX_BUNDLE)
		return cells_err_set(err, EMSGSIZE, "policy of %zu bytes is over the limit of %d",
				     n, POL_MAX_BUNDLE);
	if (n == 0)
		return cells_err_set(err, EBADMSG, "policy is empty");
	Cells__V1__PolicyBundle *pb = cells__v1__policy_bundle__unpack(NULL, n, p);
	if (pb && pb->policy) {
		out->pb = pb;
		out->policy = pb->policy;
		if (pol_bundle_parts(out->policy, CELLS__V1__SIGNED_KIND__SIGNED_POLICY,
				     pb->delegations, pb->n_delegations, pb->root_rotations,
				     pb->n_root_rotations, out->delegations, &out->ndelegations,
				     out->rotations, &out->nrotations, err) < 0) {
			/* policy != pb here, so pol_bundle_free takes the bundle path */
			pol_bundle_free(out);
			return cells_err_prefix(err, "policy bundle");
		}
		return 0;
	}
	if (pb)
		cells__v1__policy_bundle__free_unpacked(pb, NULL);
	Cells__V1__Signed *s = NULL;
	if (n > CELLS_MAX_SIGNED_BLOB)
		return cells_err_set(err, EMSGSIZE, "policy of %zu bytes is over the limit of %d",
				     n, CELLS_MAX_SIGNED_BLOB);
	if (cells_signed_decode(p, n, &s, err) < 0)
		return cells_err_prefix(err, "policy (neither a PolicyBundle nor a Signed policy)");
	if (s->kind != CELLS__V1__SIGNED_KIND__SIGNED_POLICY) {
		/* name the kind before the object is gone (it was read after free once) */
		const char *what = cells_signed_domain(s->kind);
		cells__v1__signed__free_unpacked(s, NULL);
		return cells_err_set(err, EBADMSG, "signed object is a %s, not a policy",
				     what ? what : "object of unknown kind");
	}
	out->pb = s;
	out->policy = s;
	return 0;
}

static int check_enum(int v, int max, const char *what, const char *vp, cells_err_t *err)
{
	if (v < 0 || v > max)
		return cells_err_set(err, EINVAL, "%s%s%s: unknown value %d", vp ? "VP " : "",
				     vp ? vp : "", what, v);
	return 0;
}

static int validate(const Cells__V1__Policy *p, bool need_device, cells_err_t *err);

int pol_policy_validate(const Cells__V1__Policy *p, cells_err_t *err)
{
	return validate(p, true, err);
}

int pol_policy_validate_template(const Cells__V1__Policy *p, cells_err_t *err)
{
	return validate(p, p->device_id && *p->device_id, err);
}

static int validate(const Cells__V1__Policy *p, bool need_device, cells_err_t *err)
{
	if (p->version < 1 || p->version > INT64_MAX)
		return cells_err_set(err, EINVAL, "policy version must be within 1..2^63-1");
	if (p->issued_at < 0)
		return cells_err_set(err, EINVAL, "policy issued_at is negative");
	uint8_t idb[16];
	if (need_device &&
	    (!p->device_id || strlen(p->device_id) != 32 || cells_unhex(p->device_id, idb, 16) < 0))
		return cells_err_set(err, EINVAL, "policy device id '%s' is not 32 hex characters",
				     p->device_id ? p->device_id : "");
	for (const char *c = p->device_id ? p->device_id : ""; *c; c++)
		if (*c >= 'A' && *c <= 'F')
			return cells_err_set(err, EINVAL, "policy device id must be lowercase hex");
	if (p->expires_at < 0 || (p->expires_at && p->expires_at <= p->issued_at))
		return cells_err_set(err, EINVAL,
				     "policy expires (%lld) before it is issued (%lld)",
				     (long long)p->expires_at, (long long)p->issued_at);
	if (check_enum(p->on_expiry, 2, "on_expiry", NULL, err) < 0)
		return -1;
	if (p->n_vps > POL_MAX_VPS)
		return cells_err_set(err, EINVAL, "policy names %zu VPs (at most %d)", p->n_vps,
				     POL_MAX_VPS);
	for (size_t i = 0; i < p->n_vps; i++) {
		const Cells__V1__VpRule *r = p->vps[i];
		cells_err_t e2;
		if (!r->vp || cells_valid_name(r->vp, &e2) < 0)
			return cells_err_set(err, EINVAL, "VP name '%s': %s", r->vp ? r->vp : "",
					     r->vp ? e2.msg : "missing");
		for (size_t j = 0; j < i; j++)
			if (!strcmp(p->vps[j]->vp, r->vp))
				return cells_err_set(err, EINVAL, "VP %s is named twice", r->vp);
		if (check_enum(r->net, 2, " net", r->vp, err) < 0)
			return -1;
		if (r->audit && check_enum(r->audit->upload, 3, " audit.upload", r->vp, err) < 0)
			return -1;
		if (r->password && (r->password->min_length > POL_MAX_PASSWORD_LEN ||
				    r->password->max_failed_attempts > POL_MAX_FAILED_ATTEMPTS))
			return cells_err_set(err, EINVAL,
					     "VP %s password rule out of range (min_length <= %d, "
					     "max_failed_attempts <= %d)",
					     r->vp, POL_MAX_PASSWORD_LEN, POL_MAX_FAILED_ATTEMPTS);
		if (r->n_devices > POL_MAX_DEVICE_RULES)
			return cells_err_set(err, EINVAL, "VP %s has too many device rules", r->vp);
		if (r->image && r->image[0] && pol_image_ref_parse(r->image, NULL, NULL, &e2) < 0)
			return cells_err_set(err, EINVAL, "VP %s: %s", r->vp, e2.msg);
		if (r->n_wifi_status_allowed > 16)
			return cells_err_set(err, EINVAL, "VP %s: too many wifi_status_allowed",
					     r->vp);
		for (size_t w = 0; w < r->n_wifi_status_allowed; w++)
			if (!r->wifi_status_allowed[w] || strlen(r->wifi_status_allowed[w]) > 64)
				return cells_err_set(err, EINVAL,
						     "VP %s: a wifi_status_allowed entry is empty "
						     "or over 64 bytes",
						     r->vp);
		for (size_t d = 0; d < r->n_devices; d++) {
			const char *cls = r->devices[d]->device_class;
			if (!cls || !pol_device_class_valid(cls))
				return cells_err_set(err, EINVAL,
						     "VP %s: unknown device class '%s'", r->vp,
						     cls ? cls : "");
			if (check_enum(r->devices[d]->mode, 3, " device mode", r->vp, err) < 0)
				return -1;
			for (size_t e = 0; e < d; e++)
				if (!strcmp(r->devices[e]->device_class, cls))
					return cells_err_set(err, EINVAL,
							     "VP %s names device class %s twice",
							     r->vp, cls);
		}
	}
	/* no two VPs EXCLUSIVE on one class (the foreground already makes the
	 * foreground-bound classes one VP's at a time) */
	for (size_t c = 0; pol_device_classes[c]; c++) {
		const char *owner = NULL;
		if (pol_device_class_foreground_bound(pol_device_classes[c]))
			continue;
		for (size_t i = 0; i < p->n_vps; i++) {
			if (pol_rule_device_mode(p->vps[i], pol_device_classes[c]) !=
			    CELLS__V1__ACCESS_MODE__ACCESS_EXCLUSIVE)
				continue;
			if (owner)
				return cells_err_set(err, EINVAL,
						     "VPs %s and %s are both exclusive on %s",
						     owner, p->vps[i]->vp, pol_device_classes[c]);
			owner = p->vps[i]->vp;
		}
	}
	return 0;
}

int pol_policy_decode(const uint8_t *p, size_t n, Cells__V1__Policy **out, cells_err_t *err)
{
	if (n > CELLS_MAX_POLICY)
		return cells_err_set(err, EMSGSIZE, "policy of %zu bytes is over the limit of %d",
				     n, CELLS_MAX_POLICY);
	cleanup_policy_pb Cells__V1__Policy *pol = cells__v1__policy__unpack(NULL, n, p);
	if (!pol)
		return cells_err_set(err, EBADMSG, "policy is not a valid protobuf message");
	if (pol_policy_validate(pol, err) < 0)
		return -1;
	*out = steal_pointer(&pol);
	return 0;
}

int pol_policy_verify(const Cells__V1__Signed *s, const struct pol_delegation *dels, size_t ndels,
		      const char *device_id, int64_t now, const struct pol_installed *inst,
		      Cells__V1__Policy **out, cells_err_t *err)
{
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_POLICY, err) < 0)
		return -1;
	if (pol_signed_by_role(dels, ndels, s, CELLS__V1__KEY_ROLE__KEY_ROLE_POLICY, now, err) < 0)
		return -1;
	cleanup_policy_pb Cells__V1__Policy *pol = NULL;
	if (pol_policy_decode(s->payload.data, s->payload.len, &pol, err) < 0)
		return -1;
	int same = 0;
	if (inst && inst->have) {
		uint8_t h[32];
		SHA256(s->payload.data, s->payload.len, h);
		if (pol->version < inst->version)
			return cells_err_set(err, ESTALE,
					     "policy version %llu is older than the installed "
					     "version %llu (rollback)",
					     (unsigned long long)pol->version,
					     (unsigned long long)inst->version);
		if (pol->version == inst->version) {
			if (memcmp(h, inst->hash, 32))
				return cells_err_set(
				    err, ESTALE,
				    "policy version %llu is already installed with "
				    "different contents",
				    (unsigned long long)pol->version);
			same = 1;
		}
	}
	if (pol->expires_at && now >= pol->expires_at)
		return cells_err_set(err, ETIME, "policy version %llu expired at %lld",
				     (unsigned long long)pol->version, (long long)pol->expires_at);
	if (strcmp(pol->device_id, device_id))
		return cells_err_set(err, ENODEV, "policy is for device %s, this is device %s",
				     pol->device_id, device_id);
	*out = steal_pointer(&pol);
	return same;
}

int pol_command_verify(const Cells__V1__Signed *s, const struct pol_delegation *dels, size_t ndels,
		       const char *device_id, int64_t now, Cells__V1__Command **out,
		       cells_err_t *err)
{
	if (cells_signed_check(s, CELLS__V1__SIGNED_KIND__SIGNED_COMMAND, err) < 0)
		return -1;
	if (pol_signed_by_role(dels, ndels, s, CELLS__V1__KEY_ROLE__KEY_ROLE_COMMAND, now, err) < 0)
		return -1;
	cleanup_command_pb Cells__V1__Command *c =
	    cells__v1__command__unpack(NULL, s->payload.len, s->payload.data);
	if (!c)
		return cells_err_set(err, EBADMSG, "command is not a valid protobuf message");
	size_t idl = c->command_id ? strlen(c->command_id) : 0;
	if (idl == 0 || idl > CELLS_MAX_ID_LEN)
		return cells_err_set(err, EBADMSG, "command id is missing or over %d bytes",
				     CELLS_MAX_ID_LEN);
	for (size_t i = 0; i < idl; i++)
		if (c->command_id[i] < 0x21 || c->command_id[i] > 0x7e)
			return cells_err_set(err, EBADMSG, "command id holds a non-printable byte");
	if (c->action_case == CELLS__V1__COMMAND__ACTION__NOT_SET)
		return cells_err_set(err, EBADMSG, "command %s has no action", c->command_id);
	if (!c->device_id || strcmp(c->device_id, device_id))
		return cells_err_set(err, ENODEV, "command %s is for device %s, this is device %s",
				     c->command_id, c->device_id ? c->device_id : "", device_id);
	if (c->expires_at <= 0)
		return cells_err_set(err, EBADMSG, "command %s has no expiry", c->command_id);
	if (now >= c->expires_at)
		return cells_err_set(err, ETIME, "command %s expired at %lld", c->command_id,
				     (long long)c->expires_at);
	*out = steal_pointer(&c);
	return 0;
}
