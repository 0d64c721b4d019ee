/* sim_cli.c - cells-mdm subcommands of the telephony simulators (sim_modem.h). */
#include "cleanup.h"
#include "mdm.h"
#include "sim_modem.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sim_dir(const struct mdm *m, char out[PATH_MAX])
{
	mdm_path(m, "sim", out);
}

int mdm_cmd_modem_sim(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	struct sim_modem_opts o = {.gateway = "+15550000"};
	for (int i = 0; i < argc; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--pty"))
			o.pty_link = argv[++i];
		else if (i + 1 < argc && !strcmp(argv[i], "--gateway"))
			o.gateway = argv[++i];
		else if (i + 1 < argc && !strcmp(argv[i], "--imsi"))
			o.imsi = argv[++i];
		else
			return mdm_usage(cmd);
	}
	if (!o.pty_link)
		return mdm_usage(cmd);
	char dir[PATH_MAX];
	sim_dir(m, dir);
	o.dir = dir;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* the simulator thread inherits the mask */
	struct sim_modem *sm = NULL;
	cells_err_t err;
	if (sim_modem_start(&o, &sm, &err) < 0) {
		fprintf(stderr, "cells-mdm: modem-sim: %s\n", err.msg);
		return 1;
	}
	printf("modem simulator: pty %s, gateway %s, control %s/modem.sock\n", o.pty_link,
	       o.gateway, dir);
	fflush(stdout);
	int sig = 0;
	sigwait(&set, &sig);
	sim_modem_stop(sm);
	return 0;
}

int mdm_cmd_call(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	const char *number = NULL, *from = "+15559990000";
	for (int i = 0; i < argc; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--from"))
			from = argv[++i];
		else if (!number && argv[i][0] != '-')
			number = argv[i];
		else
			return mdm_usage(cmd);
	}
	if (!number)
		return mdm_usage(cmd);
	char dir[PATH_MAX], req[256], rep[256];
	sim_dir(m, dir);
	snprintf(req, sizeof req, "call %s %s\n", number, from);
	cells_err_t err;
	if (sim_modem_ctl(dir, req, rep, sizeof rep, &err) < 0) {
		fprintf(stderr, "cells-mdm: call: %s\n", err.msg);
		return 1;
	}
	printf("%s\n", rep + 3);
	return 0;
}

int mdm_cmd_modem_ctl(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	if (argc != 1)
		return mdm_usage(cmd);
	char dir[PATH_MAX], req[64], rep[256];
	sim_dir(m, dir);
	snprintf(req, sizeof req, "%s\n", argv[0]);
	cells_err_t err;
	if (sim_modem_ctl(dir, req, rep, sizeof rep, &err) < 0) {
		fprintf(stderr, "cells-mdm: modem-ctl: %s\n", err.msg);
		return 1;
	}
	printf("%s\n", rep);
	return 0;
}

int mdm_cmd_gateway_assign(struct mdm *m, const struct mdm_cmd *cmd, int argc, char **argv)
{
	if (argc != 2)
		return mdm_usage(cmd);
	char dir[PATH_MAX], *end = NULL;
	sim_dir(m, dir);
	unsigned long d = strtoul(argv[1], &end, 10);
	cells_err_t err;
	if (!*argv[1] || *end || d > 9 || sim_gateway_assign(dir, argv[0], (unsigned)d, &err) < 0) {
		fprintf(stderr, "cells-mdm: gateway assign: %s\n",
			end && !*end && d <= 9 ? err.msg : "digit must be 0..9");
		return 1;
	}
	printf("gateway: %s -> caller-ID digit %lu\n", argv[0], d);
	return 0;
}
