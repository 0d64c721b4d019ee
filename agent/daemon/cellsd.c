/* cellsd - the Cells agent: the only process that changes the system. */
#include "audit.h"
#include "audit_mgmt.h"
#include "cellsd.h"
#include "cleanup.h"
#include "ctl_server.h"
#include "device_key.h"
#include "devns.h"
#include "display.h"
#include "fg.h"
#include "images.h"
#include "kcheck.h"
#include "mgmt.h"
#include "offline.h"
#include "vplock.h"
#include "log.h"
#include "password.h"
#include "policy_engine.h"
#include "routes.h"
#include "sqldb.h"
#include "tel.h"
#include "util.h"
#include "wipe.h"
#include "vpm.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* getopt code of the options devns_option() parses */
#define OPT_DEVNS 1000
#define OPT_WIPE 1002
#define OPT_NET 1003
#define OPT_AUDIT 1004
#define OPT_IMAGES 1005
#ifdef CELLS_TEST_HOOKS
#include "testhook.h"
/* getopt code of the test-only options (testhook.h; CELLS_TEST_HOOKS builds only) */
#define OPT_TEST 1001
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: cellsd [OPTIONS]\n"
		"Run the Cells agent in the foreground: virtual phones, policy enforcement,\n"
		"device multiplexing, telephony, wipe and the audit log.\n\n"
		"Options:\n"
		"  --state-dir DIR      all persistent state (default /var/lib/cells)\n"
		"  --run-dir DIR        control socket and runtime files (default /run/cells)\n"
		"  --uid-base N         VPs' host id ranges start at N (default 1048576)\n"
		"  --control-group GRP  also allow members of GRP on the control socket\n"
		"  --log-level LEVEL    error|warn|info|debug (default info)\n"
		"  --syslog             also log to syslog\n"
		"  --display SPEC       screen: shm[:WxH] (headless panel, default) or\n"
		"                       fbdev[:/dev/fbN]\n"
		"  --input SPEC         device input: none (default) or evdev:/dev/input/eventN\n"
		"  --modem PATH         the real modem's serial tty (AT commands; telephony)\n"
		"  --net-helper PATH    run PATH instead of cellsd-net (test/debug option)\n"
		"  --device-profile F   device profile (profiles/NAME.json; docs/DEVICES.md)\n"
		"  --power-backend K    auto|sysfs|record (default auto: record unless the\n"
		"                       kernel has wake locks)\n"
		"  --wpa-ctrl PATH      host wpa_supplicant control socket\n"
		"  --ksm on|off         KSM for VPs (default off); --ksm-threshold N pages/s\n"
		"  --bvp-oom-adj N      oom_score_adj of background VPs (default 500)\n"
		"  --encrypted-vps LIST comma list of VPs whose data is encrypted when neither\n"
		"                       `vp create --encrypted` nor the policy says (default\n"
		"                       work; \"\" for none)\n"
		"  --wipe-storage K     auto|image|host: where encrypted VP data lives (default\n"
		"                       auto: the state dir's ext4 if it has `encrypt`, else\n"
		"                       a loop-mounted image STATE_DIR/wipe/vpdata.img)\n"
		"  --wipe-image-mb N    size of that image when it is created (default 4096)\n"
		"  --max-image-size N   refuse signed VP images over N bytes (suffix K/M/G;\n"
		"                       default 4G)\n"
		"  --net-user U         cellsd-net's user: NAME or UID:GID (default the\n"
		"                       cellsd-net user, else 65500:65500)\n"
		"  --net-retry-max-ms N cap of cellsd-net's reconnect backoff (default its own)\n"
		"  --audit-near-full-mb N  free space below which the audit log is near full\n"
		"                       (default 32)\n"
		"  --check-kernel       report the kernel features Cells needs and exit\n"
		"  --json               with --check-kernel: machine-readable report\n"
		"  --version            print the version and exit\n"
		"  -h, --help           show this help and exit\n");
}

/* One cellsd per state directory: an exclusive flock on STATE_DIR/cellsd.lock, held
 * (fd open, O_CLOEXEC) for the daemon's life; the kernel releases it when cellsd dies,
 * however it dies. Returns the fd, or -1 with one clear line printed. */
static int lock_state_dir(const char *state_dir)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof p, "%s/cellsd.lock", state_dir);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		fprintf(stderr, "cellsd: lock %s: %s\n", p, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char other[32] = "";
		ssize_t n = pread(fd, other, sizeof other - 1, 0);
		other[n > 0 ? n : 0] = 0;
		other[strcspn(other, "\n")] = 0;
		if (e == EWOULDBLOCK)
			fprintf(stderr,
				"cellsd: another cellsd (pid %s) already runs on state dir %s\n",
				other[0] ? other : "?", state_dir);
		else
			fprintf(stderr, "cellsd: lock %s: %s\n", p, strerror(e));
		close(fd);
		return -1;
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("lock %s: cannot record the pid: %s", p, strerror(errno));
	return fd;
}

static void on_signal(struct loop *l, int fd, uint32_t events, void *data)
{
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_info("signal %u: shutting down", si.ssi_signo);
			loop_quit(l);
		}
	}
}

/* The settings of the modules that take them from the command line. */
static const char *opt_display, *opt_input, *opt_modem;

static int disp_module_init(struct cellsd *d, cells_err_t *err)
{
	return disp_init(d, opt_display, opt_input, err);
}

static int tel_module_init(struct cellsd *d, cells_err_t *err)
{
	return tel_start(d, opt_modem, err);
}

/* cellsd's modules, in start order: main runs every init forwards; at the end (or when an
 * init fails) it runs the stops of those that started backwards, then their frees
 * backwards. A module registers its VP, foreground and policy hooks in its init
 * (vpm_add_listener, fg listeners, enforce_register), so the order below is the order
 * of dependence. */
struct module {
	const char *name;
	int (*init)(struct cellsd *d, cells_err_t *err);
	void (*stop)(struct cellsd *d); /* stop serving: sockets, processes, VPs */
	void (*free)(struct cellsd *d); /* release what init made */
};
static const struct module modules[] = {
    {"policy engine", policy_engine_init, NULL, policy_engine_free},
    {"password", password_init, NULL, NULL},
    {"images", images_init, NULL, images_fini}, /* before vpm: VPs acquire images */
    {"VP manager", vpm_init, vpm_shutdown, NULL},
    {"foreground", fg_init, NULL, fg_shutdown},
    {"display", disp_module_init, NULL, disp_shutdown},
    {"wipe", wipe_init, NULL, wipe_fini}, /* after vpm: finishes interrupted wipes */
    {"lock", vplock_init, NULL, vplock_fini},
    {"offline limits", offline_init, NULL, offline_fini},
    {"devices", devns_init, NULL, devns_free},
    {"audit upload", audit_mgmt_init, audit_mgmt_stop, NULL},
    {"policy", policy_engine_start, NULL, NULL}, /* after every enforcer registered */
    {"control socket", ctl_server_start, ctl_server_stop, NULL},
    {"telephony", tel_module_init, tel_stop, NULL}, /* before mgmt: commands reach it */
    {"management", mgmt_init, mgmt_stop, NULL},
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"run-dir", required_argument, NULL, 'r'},
	    {"uid-base", required_argument, NULL, 'U'},
	    {"control-group", required_argument, NULL, 'g'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"syslog", no_argument, NULL, 'S'},
	    {"display", required_argument, NULL, 'D'},
	    {"input", required_argument, NULL, 'I'},
	    {"modem", required_argument, NULL, 'M'},
	    {"check-kernel", no_argument, NULL, 'K'},
	    {"net-helper", required_argument, NULL, 'N'},
	    {"json", no_argument, NULL, 'j'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    /* devns.h options */
	    {"device-profile", required_argument, NULL, OPT_DEVNS},
	    {"power-backend", required_argument, NULL, OPT_DEVNS},
	    {"wpa-ctrl", required_argument, NULL, OPT_DEVNS},
	    {"ksm", required_argument, NULL, OPT_DEVNS},
	    {"ksm-threshold", required_argument, NULL, OPT_DEVNS},
	    {"bvp-oom-adj", required_argument, NULL, OPT_DEVNS},
	    {"encrypted-vps", required_argument, NULL, OPT_WIPE},
	    {"wipe-storage", required_argument, NULL, OPT_WIPE},
	    {"wipe-image-mb", required_argument, NULL, OPT_WIPE},
	    {"max-image-size", required_argument, NULL, OPT_IMAGES},
	    {"net-user", required_argument, NULL, OPT_NET},
	    {"net-retry-max-ms", required_argument, NULL, OPT_NET},
	    {"audit-near-full-mb", required_argument, NULL, OPT_AUDIT},
#ifdef CELLS_TEST_HOOKS
	    {"test-fail", required_argument, NULL, OPT_TEST},
	    {"test-crash-at", required_argument, NULL, OPT_TEST},
	    {"test-pause-at", required_argument, NULL, OPT_TEST},
#endif
	    {0},
	};
	struct cellsd d = {.ctl_fd = -1, .state = CELLSD_ST_READY};
	const char *state_dir = "/var/lib/cells", *run_dir = "/run/cells", *group = NULL;
	uint64_t near_full = AUDIT_NEAR_FULL_DEFAULT;
	int level = LOG_INFO, c, oi = 0;
	bool use_syslog = false, check_kernel = false, json = false;
	while ((c = getopt_long(argc, argv, "h", opts, &oi)) != -1) {
		switch (c) {
		case 's':
			state_dir = optarg;
			break;
		case 'r':
			run_dir = optarg;
			break;
		case 'g':
			group = optarg;
			break;
		case 'U': {
			cells_err_t oe;
			if (vpm_option_uid_base(optarg, &oe) < 0) {
				fprintf(stderr, "cellsd: %s\n", oe.msg);
				return 2;
			}
			break;
		}
		case 'l':
			level = cells_log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "cellsd: unknown log level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'S':
			use_syslog = true;
			break;
		case 'N':
			mgmt_set_net_helper(optarg);
			break;
		case 'D':
			opt_display = optarg;
			break;
		case 'I':
			opt_input = optarg;
			break;
		case 'M':
			opt_modem = optarg;
			break;
		case 'K':
			check_kernel = true;
			break;
		case 'j':
			json = true;
			break;
		case 'V':
			printf("cellsd %s\n", CELLS_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_DEVNS: {
			cells_err_t oe;
			if (devns_option(opts[oi].name, optarg, &oe) < 0) {
				fprintf(stderr, "cellsd: %s\n", oe.msg);
				return 2;
			}
			break;
		}
		case OPT_IMAGES: {
			cells_err_t oe;
			if (images_option(opts[oi].name, optarg, &oe) < 0) {
				fprintf(stderr, "cellsd: %s\n", oe.msg);
				return 2;
			}
			break;
		}
		case OPT_WIPE:
		case OPT_NET: {
			cells_err_t oe;
			if ((c == OPT_WIPE ? wipe_option : mgmt_option)(opts[oi].name, optarg,
									&oe) < 0) {
				fprintf(stderr, "cellsd: %s\n", oe.msg);
				return 2;
			}
			break;
		}
		case OPT_AUDIT: {
			char *end;
			unsigned long mb = strtoul(optarg, &end, 10);
			if (!*optarg || *end || mb > (1ul << 20)) {
				fprintf(stderr,
					"cellsd: --audit-near-full-mb %s: want 0..1048576\n",
					optarg);
				return 2;
			}
			near_full = (uint64_t)mb << 20;
			break;
		}
#ifdef CELLS_TEST_HOOKS
		case OPT_TEST: {
			cells_err_t oe;
			if (testhook_option(opts[oi].name, optarg, &oe) < 0) {
				fprintf(stderr, "cellsd: %s\n", oe.msg);
				return 2;
			}
			break;
		}
#endif
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cellsd: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	if (check_kernel)
		return kcheck_report(stdout, json) ? 1 : 0;
	cells_log_init("cellsd", level, use_syslog);
	cells_err_t err = {0};
	if (!realpath(state_dir, d.state_dir) &&
	    (cells_mkdir_p(state_dir, 0700, &err) < 0 || !realpath(state_dir, d.state_dir))) {
		fprintf(stderr, "cellsd: state dir %s: %s\n", state_dir,
			err.msg[0] ? err.msg : strerror(errno));
		return 1;
	}
	/* before anything else is touched: the state dir belongs to one cellsd */
	cleanup_close int lock_fd = lock_state_dir(d.state_dir);
	if (lock_fd < 0)
		return 1;
	if (!realpath(run_dir, d.run_dir) &&
	    (cells_mkdir_p(run_dir, 0755, &err) < 0 || !realpath(run_dir, d.run_dir))) {
		fprintf(stderr, "cellsd: run dir %s: %s\n", run_dir,
			err.msg[0] ? err.msg : strerror(errno));
		return 1;
	}
	if (group) {
		struct group *g = getgrnam(group);
		if (!g) {
			fprintf(stderr, "cellsd: unknown group '%s'\n", group);
			return 1;
		}
		d.ctl_gid = g->gr_gid;
		d.ctl_gid_set = true;
	}
	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	cleanup_close int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	char path[PATH_MAX + 32];
	char id[DEVICE_ID_LEN + 1];
	int rc = 1;
	size_t started = 0;
	d.loop = loop_new(&err);
	if (!d.loop)
		goto out;
	snprintf(path, sizeof path, "%s/state.db", d.state_dir);
	if (sqldb_open(path, SQLDB_DURABLE, 5000, &d.db, &err) < 0)
		goto out;
	snprintf(path, sizeof path, "%s/audit.db", d.state_dir);
	if (audit_open(path, &d.audit, &err) < 0)
		goto out;
	audit_set_near_full(d.audit, near_full);
	if (device_key_load(d.state_dir, NULL, id, &err) < 0)
		goto out;
	if (audit_attach(d.audit, d.loop, d.state_dir, &err) < 0)
		goto out;
	if (loop_add_fd(d.loop, sfd, EPOLLIN, on_signal, &d, &err) < 0)
		goto out;
	ctl_server_set_routes(ctl_routes, ctl_nroutes);
	for (; started < CELLS_ARRAY_SIZE(modules); started++)
		if (modules[started].init && modules[started].init(&d, &err) < 0) {
			cells_err_prefix(&err, "%s", modules[started].name);
			started++; /* its stop and free clean up what it had done */
			goto out;
		}
	cellsd_audit(&d, "", "cellsd", "agent.started", "ok", NULL, NULL);
	log_info("cellsd %s ready: device %s, state %s, control %s/control.sock", CELLS_VERSION, id,
		 d.state_dir, d.run_dir);
	loop_run(d.loop);
	cellsd_audit(&d, "", "cellsd", "agent.stopped", "ok", NULL, NULL);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "cellsd: %s\n", err.msg);
	/* every module that started, backwards: first stop (the VPs stop while every module
	 * that hooks VP and foreground events is alive), then free */
	for (size_t i = started; i > 0; i--)
		if (modules[i - 1].stop)
			modules[i - 1].stop(&d);
	for (size_t i = started; i > 0; i--)
		if (modules[i - 1].free)
			modules[i - 1].free(&d);
	audit_close(d.audit);
	if (d.db)
		sqlite3_close_v2(d.db);
	loop_free(d.loop);
	return rc;
}
