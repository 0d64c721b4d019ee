/* cellctl - the command-line interface to cellsd for the employee, the on-device
 * admin and the auditor. */
#include "cellctl.h"
#include "cellctl_vp.h"
#include "cellctl_audit.h"
#include "cellctl_display.h"
#include "cellctl_devns.h"
#include "cleanup.h"
#include "cmdtab.h"
#include "ctl_io.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static int cmd_ping(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_PING;
	req.ping = &e;
	return cellctl_simple(cc, cmd->words, &req);
}

static int cmd_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_STATUS;
	req.status = &e;
	return cellctl_simple(cc, cmd->words, &req);
}

static int cmd_device_id(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv)
{
	Cells__Ctl__V1__CtlRequest req = CELLS__CTL__V1__CTL_REQUEST__INIT;
	Cells__Ctl__V1__Empty e = CELLS__CTL__V1__EMPTY__INIT;
	if (argc)
		return cellctl_usage(cmd);
	req.req_case = CELLS__CTL__V1__CTL_REQUEST__REQ_DEVICE_ID;
	req.device_id = &e;
	return cellctl_request(cc, cmd->words, &req, "device_id", NULL);
}

int cellctl_vp_wipe(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_wipe_status(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);
int cellctl_wipe_prepare(struct cellctl *cc, const struct cellctl_cmd *cmd, int argc, char **argv);

/* The command table: every cellctl command, in the order --help lists them. */
static const struct cellctl_cmd commands[] = {
    {"ping", "", "check that cellsd answers", cmd_ping},
    {"status", "", "show the agent's status", cmd_status},
    {"device id", "", "print this device's id (what a policy's `device` names)", cmd_device_id},
    {"tel status", "", "telephony: the modem, each VP's number and call", cellctl_cmd_tel_status},
    {"trust pin", "ROOT.pub", "pin the MDM's root key (another root is refused once one is pinned)",
     cellctl_cmd_trust_pin},
    {"policy apply", "POLICY.bin", "verify and install a signed policy", cellctl_cmd_policy_apply},
    {"policy verify", "POLICY.bin", "check a signed policy only: verdict and reason",
     cellctl_cmd_policy_verify},
    {"policy show", "", "show the policy in force and the trust state", cellctl_cmd_policy_show},
    {"vp password", "NAME --new-password-file NEW [--password-file OLD]",
     "set or change a VP's configuration password", cellctl_cmd_vp_password},
    {"vp config", "NAME KEY=VALUE... [--password-file F]",
     "tighten a VP's configuration (net=none|nat, device.CLASS=MODE)", cellctl_cmd_vp_config},
    {"vp create",
     "NAME --image ROOTFS [--net nat|none] [--memory BYTES] [--pids N] [--hostname H] [--init "
     "CMD...]",
     "define a virtual phone", cellctl_vp_create},
    {"vp list", "", "list the virtual phones", cellctl_vp_list},
    {"vp status", "NAME", "show one virtual phone", cellctl_vp_status},
    {"vp start", "NAME [--password-file F]", "start a virtual phone", cellctl_vp_start},
    {"vp stop", "NAME", "stop a virtual phone", cellctl_vp_stop},
    {"vp destroy", "NAME [--password-file F]", "remove a virtual phone and its data",
     cellctl_vp_destroy},
    {"vp exec", "NAME [--password-file F] -- CMD...",
     "run CMD inside a running VP (stdio and status pass through)", cellctl_vp_exec},
    {"vp run", "NAME [--image ROOTFS] [--net nat|none] [--keep] -- CMD...",
     "run CMD as a VP's init, wait, tear it down", cellctl_vp_run},
    {"vp lock", "NAME", "lock a VP: frozen, no input, lock screen (unlock: its password)",
     cellctl_vp_lock},
    {"vp unlock", "NAME [--password-file F]", "unlock a locked VP with its password",
     cellctl_vp_unlock},
    {"vp pause", "NAME", "turn a VP off: frozen, no input, no network, no foreground",
     cellctl_vp_pause},
    {"vp resume", "NAME [--password-file F]", "resume a paused VP with its password",
     cellctl_vp_resume},
    {"audit query",
     "[--since T] [--until T] [--vp V] [--type T] [--outcome O] [--grep S] [--limit N] [--csv]",
     "show audit records (newest N, default 100): table, --json or --csv", cmd_audit_query},
    {"audit verify", "", "check the hash chain and signed checkpoints (exit 1 on a break)",
     cmd_audit_verify},
    {"audit export", "FILE", "write a signed export bundle (cells-mdm audit verify FILE)",
     cmd_audit_export},
    {"enroll", "wss://HOST:PORT TOKEN --ca CA.pem", "enroll this device with an MDM",
     cellctl_cmd_enroll},
    {"mgmt status", "", "show the management channel's state", cellctl_cmd_mgmt_status},
    {"switch", "NAME", "bring VP NAME to the foreground (screen and input)", cellctl_cmd_switch},
    {"screenshot", "FILE.png", "save what is on the screen as a PNG", cellctl_cmd_screenshot},
    {"input key", "CODE [--up]", "inject a key press (release) into the foreground VP",
     cellctl_cmd_input_key},
    {"input touch", "X Y", "inject a tap at X,Y into the foreground VP", cellctl_cmd_input_touch},
    {"display status", "", "show the screen, the foreground VP and each VP's display",
     cellctl_cmd_display_status},
    {"vp wipe", "NAME [--password-file F] [--recreate]",
     "crypto-erase a VP's data (signed receipt)", cellctl_vp_wipe},
    {"wipe status", "[NAME]", "show wipes, their steps and receipts", cellctl_wipe_status},
    {"wipe prepare", "NAME", "create/unlock a VP's (encrypted) storage; print its dir",
     cellctl_wipe_prepare},
    {"device list", "", "device classes, their nodes and each VP's access mode",
     cellctl_cmd_device_list},
    {"image import", "FILE.img BUNDLE", "verify a signed VP image and store and mount it",
     cellctl_cmd_image_import},
    {"image list", "", "signed VP images: version, state, size, SHA-256", cellctl_cmd_image_list},
    {"image status", "NAME", "one image's versions and states", cellctl_cmd_image_status},
};

CMDTAB_ENTRY_CHECK(struct cellctl_cmd);
static const struct cmdtab table = {"cellctl", commands, CELLS_ARRAY_SIZE(commands),
				    sizeof commands[0], 34};

static void usage(FILE *f)
{
	fprintf(f, "Usage: cellctl [--run-dir DIR] [--json] COMMAND [ARGS]\n"
		   "Control the Cells agent (cellsd).\n\n"
		   "Options:\n"
		   "  --run-dir DIR   where cellsd's control socket is (default /run/cells)\n"
		   "  --json          machine-readable output\n"
		   "  -h, --help      show this help (also: cellctl COMMAND --help)\n\n"
		   "Commands:\n");
	cmdtab_list(&table, f);
}

int cellctl_usage(const struct cellctl_cmd *cmd)
{
	return cmdtab_usage(&table, cmd);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"run-dir", required_argument, NULL, 'r'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	struct cellctl cc = {.run_dir = getenv("CELLS_RUN_DIR")};
	if (!cc.run_dir)
		cc.run_dir = "/run/cells";
	int c;
	/* "+": stop at the first command word; options after it belong to the command */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			cc.run_dir = optarg;
			break;
		case 'j':
			cc.json = true;
			break;
		case 'V':
			printf("cellctl %s\n", CELLS_VERSION);
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
	int rc, n;
	char **args;
	const struct cellctl_cmd *cmd =
	    cmdtab_dispatch(&table, argc, argv, &cc.json, &rc, &n, &args);
	return cmd ? cmd->run(&cc, cmd, n, args) : rc;
}
