/* cells-mdm - the reference Cells MDM: enrollment CA, policy signing, command queue,
 * device registry, audit collection, and the outside-world simulators. */
#include "mdm.h"
#include "mdm_admin.h"
#include "cleanup.h"
#include "cmdtab.h"
#include "log.h"
#include "pol_sig.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct mdm_cmd commands[] = {
    {"init", "", "create the root key, a delegated signing key and the database", mdm_cmd_init},
    {"export-root", "", "print the root public key (PEM)", mdm_cmd_export_root},
    {"keys", "", "the key lifecycle (keys status|rotate-root|delegate|revoke|renew|push)",
     mdm_cmd_keys_status},
    {"keys status", "", "show the trust root and the signing key's delegation",
     mdm_cmd_keys_status},
    {"keys rotate-root", "",
     "make a new root (version + 1) signed by the old and the new root key; re-delegate",
     mdm_cmd_keys_rotate_root},
    {"keys delegate", "[--lifetime S|Nd] [--roles policy,command,images] [--keep-key]",
     "delegate a new signing key (the next serial supersedes every earlier one)",
     mdm_cmd_keys_delegate},
    {"keys revoke", "SERIAL", "revoke a delegation by serial (a later delegation supersedes it)",
     mdm_cmd_keys_revoke},
    {"keys renew", "[--lifetime S|Nd]", "re-delegate the signing key before it lapses",
     mdm_cmd_keys_renew},
    {"keys push", "DEVICE|--all [--from FILE] [-o FILE]",
     "queue the trust update (rotations + delegation) for devices", mdm_cmd_keys_push},
    {"modem-sim", "--pty PATH [--gateway NUMBER] [--imsi IMSI]",
     "run the carrier modem + VoIP gateway simulator on a pty linked at PATH", mdm_cmd_modem_sim},
    {"call", "NUMBER [--from CALLER]", "ring NUMBER through the gateway simulator", mdm_cmd_call},
    {"modem-ctl", "hangup|ring|vanish|return|state", "drive the modem simulator",
     mdm_cmd_modem_ctl},
    {"gateway assign", "NUMBER DIGIT", "serve NUMBER at the gateway with caller-ID digit DIGIT",
     mdm_cmd_gateway_assign},
    {"policy sign", "POLICY.json -o POLICY.bin", "sign a policy (JSON) for offline delivery",
     mdm_cmd_policy_sign},
    {"policy example", "[--device ID] [--version N]", "print a complete example policy (JSON)",
     mdm_cmd_policy_example},
    {"audit",
     "DEVICE [--since T] [--until T] [--vp V] [--type T] [--outcome O] [--grep S] [--limit N] "
     "[--csv]",
     "show a device's uploaded audit records", mdm_cmd_audit_query},
    {"audit verify", "FILE|DEVICE", "verify an export bundle offline, or a device's uploads",
     mdm_cmd_audit_verify},
    {"audit import", "FILE", "store an export bundle as uploads of its device (continuity checked)",
     mdm_cmd_audit_import},
    {"audit request", "DEVICE [--since SEQ]",
     "queue a signed request for the device to upload its audit log now", mdm_cmd_audit_request},
    {"ca-cert", "", "print the TLS CA certificate (PEM) that devices pin", mdm_cmd_ca_cert},
    {"enroll-token", "[--ttl SECONDS]", "make a one-time enrollment token", mdm_cmd_enroll_token},
    {"serve",
     "--listen HOST:PORT [--db URL] [--admin-port PORT | --admin-listen HOST:PORT] "
     "[--modem-pty PATH [--gateway NUMBER]] [--renew-before S]",
     "run the websocket server (mutual TLS; also the devices' image downloads, GET "
     "/v1/images/SHA256); with --admin-port also the admin API and web "
     "console (HTTPS, admin certificates; loopback); with --modem-pty also the modem "
     "simulator; renews the signing key S seconds before it lapses (default 30 days)",
     mdm_cmd_serve},
    {"devices", "", "list enrolled devices and their state", mdm_cmd_devices},
    {"policy push", "DEVICE|--all POLICY.json|POLICY.bin", "sign and queue a policy",
     mdm_cmd_policy_push},
    {"command list", "[DEVICE]", "list queued commands and their states", mdm_cmd_command_list},
    {"command cancel", "ID", "cancel a queued command", mdm_cmd_command_cancel},
    {"wipe", "DEVICE VP [--leave-absent]",
     "queue a signed wipe of a VP (goes first; recreated empty unless --leave-absent)",
     mdm_cmd_wipe},
    {"voip assign", "DEVICE VP NUMBER DIGIT [--gateway NUMBER]",
     "queue a signed VoIP number assignment (--gateway: the access number for calls out)",
     mdm_cmd_voip_assign},
    {"voip revoke", "DEVICE VP", "queue a signed revocation of a VP's number", mdm_cmd_voip_revoke},
    {"receipt verify", "RECEIPT.bin --device-key DEVICE.pub",
     "verify a device's signed wipe receipt", mdm_cmd_receipt_verify},
    {"receipts", "[DEVICE]",
     "list the wipe receipts devices sent (verified with the device key on arrival)",
     mdm_cmd_receipts},
    {"admin", "", "admins of the API and web console (admin add|list|revoke|audit|audit-verify)",
     mdm_cmd_admin_list},
    {"admin add", "NAME --role admin|helpdesk|auditor [--out DIR] [--p12-password-env VAR]",
     "issue an admin client certificate (cert, key, PKCS#12) with its role", mdm_cmd_admin_add},
    {"admin list", "", "list admins, their roles and whether revoked", mdm_cmd_admin_list},
    {"admin revoke", "NAME", "revoke an admin's certificates (refused from the next request)",
     mdm_cmd_admin_revoke},
    {"admin audit", "", "show the admin audit log (every change made through the admin API)",
     mdm_cmd_admin_audit},
    {"admin audit-verify", "", "verify the admin audit log's hash chain",
     mdm_cmd_admin_audit_verify},
    {"image", "", "signed VP images (image build|sign|push|list)", mdm_cmd_image_list},
    {"image build",
     "ROOTFS_DIR -o OUT.img --name NAME --version N [--fs erofs|squashfs] [--expires-days D]",
     "build a reproducible read-only image of a tree and its manifest (OUT.img.manifest.json)",
     mdm_cmd_image_build},
    {"image sign", "OUT.img",
     "sign the image's manifest with the images key -> OUT.img.bundle (offline delivery)",
     mdm_cmd_image_sign},
    {"image push", "DEVICE|--all OUT.img",
     "record the image (a copy in the state dir) and queue its signed manifest for devices",
     mdm_cmd_image_push},
    {"image list", "", "list pushed images and their state per device", mdm_cmd_image_list},
    {"lock", "DEVICE VP", "queue a signed lock of a VP (frozen until unlocked)", mdm_cmd_lock},
    {"unlock", "DEVICE VP", "queue a signed unlock of a VP", mdm_cmd_unlock},
};

CMDTAB_ENTRY_CHECK(struct mdm_cmd);
static const struct cmdtab table = {"cells-mdm", commands, CELLS_ARRAY_SIZE(commands),
				    sizeof commands[0], 30};

static void usage(FILE *f)
{
	fprintf(f, "Usage: cells-mdm [--state-dir DIR] [--db URL] [--json] COMMAND [ARGS]\n"
		   "The Cells reference MDM server and admin tool.\n\n"
		   "Options:\n"
		   "  --state-dir DIR   server state (default /var/lib/cells-mdm)\n"
		   "  --db URL          the database: postgresql://... (also CELLS_MDM_DB);\n"
		   "                    default: sqlite files in the state dir\n"
		   "  --json            machine-readable output\n"
		   "  -h, --help        show this help (also: cells-mdm COMMAND --help)\n\n"
		   "Commands:\n");
	cmdtab_list(&table, f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"db", required_argument, NULL, 'd'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	struct mdm m = {0};
	/* a fan-out (policy push --all, serve with 10,000 sessions) allocates and frees in
	 * bulk: keep the heap instead of trimming it, each shrink of it flushes the TLB of
	 * every core (it was a third of a 10,000-device push) */
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	const char *sd = getenv("CELLS_MDM_STATE_DIR");
	snprintf(m.state_dir, sizeof m.state_dir, "%s", sd ? sd : "/var/lib/cells-mdm");
	const char *db = getenv("CELLS_MDM_DB");
	if (db && *db && mdm_set_db(&m, db) < 0)
		return 2;
	int c;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			snprintf(m.state_dir, sizeof m.state_dir, "%s", optarg);
			break;
		case 'd':
			if (mdm_set_db(&m, optarg) < 0)
				return 2;
			break;
		case 'j':
			m.json = true;
			break;
		case 'V':
			printf("cells-mdm %s\n", CELLS_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return 2;
	}
	cells_log_init("cells-mdm", LOG_INFO, false);
	int rc, n;
	char **args;
	const struct mdm_cmd *cmd = cmdtab_dispatch(&table, argc, argv, &m.json, &rc, &n, &args);
	return cmd ? cmd->run(&m, cmd, n, args) : rc;
}
