/* sim_modem.h - outside-world simulators for telephony: the carrier's modem on a pty
 * (plays the phone's real AT modem, e.g. a Quectel EG25-G, for cellsd --modem PATH)
 * with a VoIP gateway behind it.
 *
 * Gateway: the enterprise's numbers, one per VP, each with the caller-ID digit the
 * gateway appends (table SIM_DIR/gateway.tsv: "NUMBER DIGIT" lines). A call to a VP's
 * number reaches the phone's SIM as RING + `+CLIP: "<caller><digit>"`. An outgoing call
 * is ATD<gateway access number>; followed by DTMF (AT+VTS) "<digit><target>#" ('+' sent
 * as '*'); the gateway places it from the VP's number and logs it in SIM_DIR/calls.log
 * ("from=<VP number> to=<target>"), which is what the callee sees.
 *
 * Control: a unix socket SIM_DIR/modem.sock, one request line, one reply line:
 *   call NUMBER CALLER | ring | hangup | vanish | return | stats
 * Every command line the modem receives is appended to SIM_DIR/modem.log. */
#ifndef CELLS_SIM_MODEM_H
#define CELLS_SIM_MODEM_H

#include "err.h"

struct sim_modem_opts {
	const char *pty_link;	  /* path to link at the pty slave (what cellsd --modem opens) */
	const char *dir;	  /* SIM_DIR: control socket, logs, gateway table */
	const char *gateway;	  /* the gateway's access number */
	const char *imsi, *iccid; /* NULL: defaults */
};

struct sim_modem;

/* Start the simulator in a thread of the calling process (cells-mdm modem-sim, and
 * cells-mdm serve --modem-pty). */
int sim_modem_start(const struct sim_modem_opts *o, struct sim_modem **out, cells_err_t *err);
void sim_modem_stop(struct sim_modem *m);

/* Send one control line to the simulator in dir and read its reply (for the CLI). */
int sim_modem_ctl(const char *dir, const char *request, char *reply, size_t n, cells_err_t *err);
/* Add or replace a gateway number (digit 0..9) in dir/gateway.tsv. */
int sim_gateway_assign(const char *dir, const char *number, unsigned digit, cells_err_t *err);

#endif
