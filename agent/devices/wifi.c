/* wifi.c - the per-VP WiFi control proxy (see wifi.h). */
#include "wifi.h"
#include "cjson.h"
#include "cleanup.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REFUSAL_AUDIT_INTERVAL_MS 60000
#define PENDING_TIMEOUT_MS 5000

static const char *const status_cmds[] = {
    "PING",	   "STATUS",	    "STATUS-VERBOSE", "SCAN_RESULTS",	"LIST_NETWORKS",
    "SIGNAL_POLL", "BSS",	    "INTERFACES",     "GET_CAPABILITY", "IFNAME",
    "MIB",	   "STATUS-DRIVER", "PKTCNT_POLL",
};
static const char *const unsupported_cmds[] = {"ATTACH", "DETACH", "LEVEL"};

enum wifi_kind wifi_classify(const char *req, size_t n)
{
	char w[32];
	size_t i = 0;
	while (i < n && i < sizeof w - 1 && req[i] && !isspace((unsigned char)req[i])) {
		w[i] = req[i];
		i++;
	}
	w[i] = 0;
	if (i < n && i == sizeof w - 1)
		return WIFI_CONFIG;
	for (size_t k = 0; k < CELLS_ARRAY_SIZE(unsupported_cmds); k++)
		if (!strcmp(w, unsupported_cmds[k]))
			return WIFI_UNSUPPORTED;
	for (size_t k = 0; k < CELLS_ARRAY_SIZE(status_cmds); k++)
		if (!strcmp(w, status_cmds[k]))
			return WIFI_STATUS;
	return WIFI_CONFIG;
}

int wifi_init(struct wifi *w, const char *host_ctrl, const char *run_dir, cells_err_t *err)
{
	memset(w, 0, sizeof *w);
	if (strlen(host_ctrl) >= sizeof w->host_ctrl)
		return cells_err_set(err, ENAMETOOLONG, "wpa_supplicant socket path too long");
	snprintf(w->host_ctrl, sizeof w->host_ctrl, "%s", host_ctrl);
	snprintf(w->run_dir, sizeof w->run_dir, "%s", run_dir);
	for (size_t i = 0; i < WIFI_MAX_VPS; i++)
		w->vps[i].proxy = w->vps[i].upstream = w->vps[i].rootfd = -1;
	return 0;
}

void wifi_set_foreground(struct wifi *w, const char *vp)
{
	snprintf(w->fg, sizeof w->fg, "%s", vp ? vp : "");
}

static struct wifi_vp *find_vp(struct wifi *w, const char *vp, bool create)
{
	struct wifi_vp *free_slot = NULL;
	for (size_t i = 0; i < WIFI_MAX_VPS; i++) {
		if (!strcmp(w->vps[i].name, vp))
			return &w->vps[i];
		if (!w->vps[i].name[0] && !free_slot)
			free_slot = &w->vps[i];
	}
	if (!create || !free_slot)
		return NULL;
	snprintf(free_slot->name, sizeof free_slot->name, "%s", vp);
	return free_slot;
}

static int bind_dgram(const char *path, mode_t mode, cells_err_t *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path)
		return cells_err_set(err, ENAMETOOLONG, "socket path too long: %s", path);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	cleanup_close int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return cells_err_sys(err, errno, "socket");
	unlink(path);
	if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0)
		return cells_err_sys(err, errno, "bind %s", path);
	if (chmod(path, mode) < 0)
		return cells_err_sys(err, errno, "chmod %s", path);
	return take_fd(&s);
}

int wifi_vp_open(struct wifi *w, const char *vp, const char *devcells, pid_t root_pid,
		 cells_err_t *err)
{
	struct wifi_vp *v = find_vp(w, vp, true);
	if (!v)
		return cells_err_set(err, ENOSPC, "wifi: too many VPs");
	if (v->proxy >= 0) {
		wifi_vp_close(w, vp);
		v = find_vp(w, vp, true);
	}
	char p[PATH_MAX + 64];
	snprintf(p, sizeof p, "/proc/%d/root", (int)root_pid);
	v->rootfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (v->rootfd < 0) {
		cells_err_sys(err, errno, "open %s", p);
		goto fail;
	}
	snprintf(v->proxy_path, sizeof v->proxy_path, "%s/wpa_ctrl", devcells);
	v->proxy = bind_dgram(v->proxy_path, 0666, err);
	if (v->proxy < 0)
		goto fail;
	snprintf(p, sizeof p, "%s/wifi", w->run_dir);
	if (cells_mkdir_p(p, 0700, err) < 0)
		goto fail;
	snprintf(v->up_path, sizeof v->up_path, "%s/wifi/%s.sock", w->run_dir, vp);
	v->upstream = bind_dgram(v->up_path, 0600, err);
	if (v->upstream < 0)
		goto fail;
	return 0;
fail:
	cells_err_prefix(err, "wifi proxy for VP %s", vp);
	wifi_vp_close(w, vp);
	return -1;
}

int wifi_vp_fds(struct wifi *w, const char *vp, int *proxy, int *upstream)
{
	struct wifi_vp *v = find_vp(w, vp, false);
	if (!v || v->proxy < 0)
		return -1;
	*proxy = v->proxy;
	*upstream = v->upstream;
	return 0;
}

/* Send a datagram to a client path inside the VP, resolved within the VP's root. */
static int send_to_client(struct wifi_vp *v, const char *client, const void *b, size_t n)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	const char *rel = client;
	while (*rel == '/')
		rel++;
	cleanup_close int fd = (int)syscall(SYS_openat2, v->rootfd, rel, &how, sizeof how);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		errno = ENOTSOCK;
		return -1;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d", fd);
	return sendto(v->proxy, b, n, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa) < 0 ? -1 : 0;
}

static void refusal(struct wifi *w, struct wifi_vp *v, const char *req, const char *reason)
{
	v->refused++;
	v->refused_unreported++;
	int64_t now = cells_mono_ns() / 1000000;
	if (v->refused > 1 && now - v->last_refusal_audit_ms < REFUSAL_AUDIT_INTERVAL_MS)
		return;
	cleanup_json json_object *d = json_object_new_object();
	char word[32];
	snprintf(word, sizeof word, "%.*s", (int)strcspn(req, " \t\r\n"), req);
	json_object_object_add(d, "request", json_object_new_string(word));
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "count", json_object_new_uint64(v->refused_unreported));
	if (w->audit)
		w->audit(w->ctx, v->name, "wifi.refused", "refused", d);
	v->refused_unreported = 0;
	v->last_refusal_audit_ms = now;
}

void wifi_vp_input(struct wifi *w, const char *vp)
{
	struct wifi_vp *v = find_vp(w, vp, false);
	if (!v || v->proxy < 0)
		return;
	for (int iter = 0; iter < 64; iter++) {
		char req[WIFI_MAX_REQUEST + 1];
		struct sockaddr_un from;
		socklen_t fl = sizeof from;
		memset(&from, 0, sizeof from);
		ssize_t n = recvfrom(v->proxy, req, sizeof req, MSG_DONTWAIT | MSG_TRUNC,
				     (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		/* the client must have a path address (abstract/unnamed: no reply possible) */
		if (fl <= offsetof(struct sockaddr_un, sun_path) || from.sun_path[0] == 0)
			continue;
		char client[sizeof from.sun_path + 1];
		size_t cl = fl - offsetof(struct sockaddr_un, sun_path);
		memcpy(client, from.sun_path, cl);
		client[cl] = 0;
		const char *reason = NULL;
		if ((size_t)n > WIFI_MAX_REQUEST) {
			reason = "request too long";
			n = WIFI_MAX_REQUEST;
		}
		req[n] = 0;
		bool fg = w->fg[0] && !strcmp(w->fg, vp);
		enum wifi_kind k = wifi_classify(req, (size_t)n);
		if (reason)
			;
		else if (w->vp_allowed && !w->vp_allowed(w->ctx, vp))
			reason = "no WiFi access for this VP (policy)";
		else if (k == WIFI_UNSUPPORTED)
			reason = "event monitoring is not supported through the Cells proxy";
		else if (k == WIFI_CONFIG && !fg)
			reason = "background VP may not change WiFi configuration";
		else if (k == WIFI_STATUS && !fg && !w->bvp_status_allowed)
			reason = "background VP may not query WiFi status (policy)";
		if (reason) {
			char reply[160];
			int rl = snprintf(reply, sizeof reply, "FAIL %s\n", reason);
			refusal(w, v, req, reason);
			send_to_client(v, client, reply, (size_t)rl);
			continue;
		}
		/* drop answers that never came (supplicant restarted) */
		int64_t now = cells_mono_ns() / 1000000;
		while (v->npending && now - v->pending[0].at_ms > PENDING_TIMEOUT_MS) {
			memmove(&v->pending[0], &v->pending[1],
				(v->npending - 1) * sizeof v->pending[0]);
			v->npending--;
		}
		if (v->npending >= WIFI_MAX_PENDING) {
			send_to_client(v, client, "FAIL busy\n", 10);
			continue;
		}
		struct sockaddr_un to = {.sun_family = AF_UNIX};
		snprintf(to.sun_path, sizeof to.sun_path, "%s", w->host_ctrl);
		if (sendto(v->upstream, req, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&to,
			   sizeof to) < 0) {
			log_warn("wifi: VP %s: send to %s: %s", vp, w->host_ctrl, strerror(errno));
			send_to_client(v, client, "FAIL wpa_supplicant not reachable\n", 34);
			continue;
		}
		struct wifi_pending *pd = &v->pending[v->npending++];
		snprintf(pd->client, sizeof pd->client, "%s", client);
		pd->at_ms = now;
		v->forwarded++;
	}
}

void wifi_vp_upstream(struct wifi *w, const char *vp)
{
	struct wifi_vp *v = find_vp(w, vp, false);
	if (!v || v->upstream < 0)
		return;
	static char buf[WIFI_MAX_REPLY];
	for (int iter = 0; iter < 64; iter++) {
		ssize_t n = recv(v->upstream, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0)
			return;
		if (!v->npending)
			continue; /* unsolicited: nobody asked */
		if (send_to_client(v, v->pending[0].client, buf, (size_t)n) < 0)
			log_debug("wifi: VP %s: reply to %s: %s", vp, v->pending[0].client,
				  strerror(errno));
		memmove(&v->pending[0], &v->pending[1], (v->npending - 1) * sizeof v->pending[0]);
		v->npending--;
	}
}

void wifi_vp_close(struct wifi *w, const char *vp)
{
	struct wifi_vp *v = find_vp(w, vp, false);
	if (!v)
		return;
	if (v->proxy >= 0) {
		close(v->proxy);
		unlink(v->proxy_path);
	}
	if (v->upstream >= 0) {
		close(v->upstream);
		unlink(v->up_path);
	}
	if (v->rootfd >= 0)
		close(v->rootfd);
	memset(v, 0, sizeof *v);
	v->proxy = v->upstream = v->rootfd = -1;
}

void wifi_free(struct wifi *w)
{
	for (size_t i = 0; i < WIFI_MAX_VPS; i++)
		if (w->vps[i].name[0])
			wifi_vp_close(w, w->vps[i].name);
}

json_object *wifi_describe(const struct wifi *w)
{
	json_object *o = json_object_new_object(), *vps = json_object_new_object();
	json_object_object_add(o, "wpa_supplicant", json_object_new_string(w->host_ctrl));
	json_object_object_add(o, "bvp_status_allowed",
			       json_object_new_boolean(w->bvp_status_allowed));
	for (size_t i = 0; i < WIFI_MAX_VPS; i++) {
		const struct wifi_vp *v = &w->vps[i];
		if (!v->name[0])
			continue;
		json_object *vo = json_object_new_object();
		json_object_object_add(vo, "forwarded", json_object_new_uint64(v->forwarded));
		json_object_object_add(vo, "refused", json_object_new_uint64(v->refused));
		json_object_object_add(vps, v->name, vo);
	}
	json_object_object_add(o, "vps", vps);
	return o;
}
