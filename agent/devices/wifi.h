/* wifi.h - the per-VP WiFi control proxy (/dev/cells/wpa_ctrl).
 *
 * A VP talks wpa_supplicant's control-interface protocol (unix datagram sockets; the
 * client binds its own socket and sends one command per datagram, the reply comes back
 * to its address) to the proxy socket cellsd binds in the VP's devcells directory. The
 * proxy forwards allowed requests to the host's wpa_supplicant control socket (path
 * configurable) from a socket of its own per VP, and passes the reply back:
 *   - configuration requests (everything that is not a status query): only from the
 *     foreground VP; a background VP gets "FAIL background VP may not change WiFi
 *     configuration" and an audit record (aggregated as for power);
 *   - status queries (PING, STATUS, SCAN_RESULTS, LIST_NETWORKS, ...): from the
 *     foreground VP, and from background VPs when Policy.bvp_wifi_status_allowed;
 *   - ATTACH/DETACH/LEVEL (unsolicited event monitoring): not supported (FAIL).
 * The client's address is a path inside the VP: the reply is sent to it through the
 * VP's root (openat2 RESOLVE_IN_ROOT on /proc/INIT/root, then the O_PATH fd's
 * /proc/self/fd path), so a client cannot make cellsd send to a host socket. */
#ifndef CELLS_WIFI_H
#define CELLS_WIFI_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include <json-c/json.h>

#include "err.h"

#define WIFI_MAX_VPS 16
#define WIFI_MAX_PENDING 8
#define WIFI_MAX_REQUEST 4096
#define WIFI_MAX_REPLY 16384

enum wifi_kind { WIFI_STATUS, WIFI_CONFIG, WIFI_UNSUPPORTED };

/* Classify a request by its first word. */
enum wifi_kind wifi_classify(const char *req, size_t n);

struct wifi_pending {
	char client[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int64_t at_ms;
};

struct wifi_vp {
	char name[33];
	int proxy;    /* bound at DEVCELLS/wpa_ctrl (owned) */
	int upstream; /* bound at RUN_DIR/wifi/NAME.sock, talks to the host socket (owned) */
	int rootfd;   /* the VP's root, O_PATH (owned) */
	char proxy_path[PATH_MAX];
	char up_path[PATH_MAX];
	size_t npending;
	struct wifi_pending pending[WIFI_MAX_PENDING];
	uint64_t forwarded, refused, refused_unreported;
	int64_t last_refusal_audit_ms;
};

struct wifi {
	char host_ctrl[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char run_dir[PATH_MAX];
	char fg[33];
	bool bvp_status_allowed;
	/* optional: may the VP use WiFi at all (the policy's "wifi" class) */
	bool (*vp_allowed)(void *ctx, const char *vp);
	void (*audit)(void *ctx, const char *vp, const char *event, const char *outcome,
		      json_object *details);
	void *ctx;
	struct wifi_vp vps[WIFI_MAX_VPS];
};

/* host_ctrl: the host wpa_supplicant's control socket (e.g. /run/wpa_supplicant/wlan0). */
int wifi_init(struct wifi *w, const char *host_ctrl, const char *run_dir, cells_err_t *err);
void wifi_set_foreground(struct wifi *w, const char *vp);
/* Bind DEVCELLS/wpa_ctrl for the VP; root_pid: a process whose root is the VP's root. */
int wifi_vp_open(struct wifi *w, const char *vp, const char *devcells, pid_t root_pid,
		 cells_err_t *err);
/* fds to watch (EPOLLIN): proxy -> wifi_vp_input, upstream -> wifi_vp_upstream. */
int wifi_vp_fds(struct wifi *w, const char *vp, int *proxy, int *upstream);
void wifi_vp_input(struct wifi *w, const char *vp);
void wifi_vp_upstream(struct wifi *w, const char *vp);
void wifi_vp_close(struct wifi *w, const char *vp);
void wifi_free(struct wifi *w);
json_object *wifi_describe(const struct wifi *w);

#endif
