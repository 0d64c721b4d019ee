/* test_wifi.c - the WiFi control proxy end to end on this host: two stand-in VPs (own
 * mount namespace, /dev/cells bound from their devcells dir, a private /tmp for their
 * client sockets) speak wpa_supplicant's control protocol to /dev/cells/wpa_ctrl; a
 * small test server plays the host's wpa_supplicant control socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"
#include "wifi.h"

static void test_classify(void **state)
{
	assert_int_equal(wifi_classify("PING", 4), WIFI_STATUS);
	assert_int_equal(wifi_classify("STATUS-VERBOSE", 14), WIFI_STATUS);
	assert_int_equal(wifi_classify("SCAN_RESULTS", 12), WIFI_STATUS);
	assert_int_equal(wifi_classify("STATUSX", 7), WIFI_CONFIG);
	assert_int_equal(wifi_classify("SET_NETWORK 0 ssid \"x\"", 22), WIFI_CONFIG);
	assert_int_equal(wifi_classify("SCAN", 4), WIFI_CONFIG);
	assert_int_equal(wifi_classify("ATTACH", 6), WIFI_UNSUPPORTED);
	assert_int_equal(wifi_classify("", 0), WIFI_CONFIG);
}

static char tmp[64];
static char audit_log[4096];
static void rec_audit(void *ctx, const char *vp, const char *event, const char *outcome,
		      json_object *details)
{
	size_t l = strlen(audit_log);
	snprintf(audit_log + l, sizeof audit_log - l, "%s %s %s\n", vp, event,
		 json_object_to_json_string_ext(details, JSON_C_TO_STRING_PLAIN));
}

/* The host's "wpa_supplicant": logs every request, answers PONG / OK. */
static void test_server(const char *path, const char *logpath)
{
	alarm(20);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0)
		_exit(2);
	FILE *log = fopen(logpath, "a");
	for (;;) {
		char b[4096];
		struct sockaddr_un from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(s, b, sizeof b - 1, 0, (struct sockaddr *)&from, &fl);
		if (n < 0)
			_exit(3);
		b[n] = 0;
		fprintf(log, "%s\n", b);
		fflush(log);
		const char *r = !strcmp(b, "PING") ? "PONG\n" : "OK\n";
		sendto(s, r, strlen(r), 0, (struct sockaddr *)&from, fl);
	}
}

struct fake_vp {
	const char *name;
	pid_t pid;
	int go, out;
	char devcells[128];
};

/* A stand-in VP: per round, send three requests and report the replies. */
static void fake_vp_child(struct fake_vp *v, int go, int out)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755,size=64k") < 0 ||
	    mkdir("/dev/cells", 0755) < 0 ||
	    mount(v->devcells, "/dev/cells", NULL, MS_BIND, NULL) < 0 ||
	    mount("tmpfs", "/tmp", "tmpfs", 0, "size=64k") < 0)
		_exit(3);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un me = {.sun_family = AF_UNIX}, to = {.sun_family = AF_UNIX};
	snprintf(me.sun_path, sizeof me.sun_path, "/tmp/wpa_ctrl_%d-1", (int)getpid());
	snprintf(to.sun_path, sizeof to.sun_path, "/dev/cells/wpa_ctrl");
	struct timeval tv = {3, 0};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (bind(s, (struct sockaddr *)&me, sizeof me) < 0)
		_exit(4);
	char c = 0;
	if (write(out, &c, 1) != 1)
		_exit(5);
	while (read(go, &c, 1) == 1) {
		char req[3][64], res[512] = "";
		snprintf(req[0], sizeof req[0], "PING");
		snprintf(req[1], sizeof req[1], "SET_NETWORK 0 ssid %s-net-%c", v->name, c);
		snprintf(req[2], sizeof req[2], "ATTACH");
		for (int i = 0; i < 3; i++) {
			char b[256];
			if (sendto(s, req[i], strlen(req[i]), 0, (struct sockaddr *)&to,
				   sizeof to) < 0)
				_exit(6);
			ssize_t n = recv(s, b, sizeof b - 1, 0);
			b[n < 0 ? 0 : n] = 0;
			strncat(res, n < 0 ? "TIMEOUT\n" : b, sizeof res - strlen(res) - 1);
		}
		if (write(out, res, sizeof res) != sizeof res)
			_exit(7);
	}
	_exit(0);
}

static struct fake_vp vps[2] = {{.name = "work"}, {.name = "personal"}};

static void pump_round(struct wifi *w, char c, char res[2][512])
{
	for (int i = 0; i < 2; i++)
		assert_int_equal(write(vps[i].go, &c, 1), 1);
	bool done[2] = {false, false};
	for (int iter = 0; iter < 200 && !(done[0] && done[1]); iter++) {
		struct pollfd pf[6];
		for (int i = 0; i < 2; i++) {
			int px, up;
			assert_int_equal(wifi_vp_fds(w, vps[i].name, &px, &up), 0);
			pf[3 * i] = (struct pollfd){.fd = px, .events = POLLIN};
			pf[3 * i + 1] = (struct pollfd){.fd = up, .events = POLLIN};
			pf[3 * i + 2] =
			    (struct pollfd){.fd = done[i] ? -1 : vps[i].out, .events = POLLIN};
		}
		if (poll(pf, 6, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (pf[3 * i].revents)
				wifi_vp_input(w, vps[i].name);
			if (pf[3 * i + 1].revents)
				wifi_vp_upstream(w, vps[i].name);
			if (pf[3 * i + 2].revents & POLLIN) {
				assert_int_equal(read(vps[i].out, res[i], 512), 512);
				done[i] = true;
			}
		}
	}
	assert_true(done[0] && done[1]);
}

static void test_proxy(void **state)
{
	if (geteuid() != 0) {
		if (getenv("CI") && !strcmp(getenv("CI"), "true"))
			fail_msg("needs root");
		skip();
	}
	snprintf(tmp, sizeof tmp, "/tmp/cells-wifi.XXXXXX");
	assert_non_null(mkdtemp(tmp));
	char host[128], logp[128], run[128];
	snprintf(host, sizeof host, "%s/wlan0", tmp);
	snprintf(logp, sizeof logp, "%s/requests.log", tmp);
	snprintf(run, sizeof run, "%s/run", tmp);
	pid_t srv = fork();
	if (srv == 0)
		test_server(host, logp);
	struct wifi w;
	cells_err_t err;
	assert_int_equal(wifi_init(&w, host, run, &err), 0);
	w.audit = rec_audit;
	for (int i = 0; i < 2; i++) {
		snprintf(vps[i].devcells, sizeof vps[i].devcells, "%s/devcells-%s", tmp,
			 vps[i].name);
		assert_int_equal(mkdir(vps[i].devcells, 0755), 0);
		int g[2], o[2];
		assert_int_equal(pipe2(g, O_CLOEXEC), 0);
		assert_int_equal(pipe2(o, O_CLOEXEC), 0);
		vps[i].pid = fork();
		if (vps[i].pid == 0)
			fake_vp_child(&vps[i], g[0], o[1]);
		close(g[0]);
		close(o[1]);
		vps[i].go = g[1];
		vps[i].out = o[0];
		char c;
		assert_int_equal(read(vps[i].out, &c, 1), 1);
		if (wifi_vp_open(&w, vps[i].name, vps[i].devcells, vps[i].pid, &err) < 0)
			fail_msg("%s", err.msg);
	}
	char res[2][512];
	/* round 1: personal in front, no status for BVPs */
	wifi_set_foreground(&w, "personal");
	pump_round(&w, '1', res);
	assert_string_equal(res[1], "PONG\nOK\nFAIL event monitoring is not supported through the "
				    "Cells proxy\n");
	assert_string_equal(res[0],
			    "FAIL background VP may not query WiFi status (policy)\n"
			    "FAIL background VP may not change WiFi configuration\n"
			    "FAIL event monitoring is not supported through the Cells proxy\n");
	assert_non_null(strstr(audit_log, "work wifi.refused {\"request\":\"PING\""));
	/* round 2: the policy lets BVPs query status */
	w.bvp_status_allowed = true;
	pump_round(&w, '2', res);
	assert_true(!strncmp(res[0], "PONG\nFAIL background VP may not change", 38));
	/* round 3: a switch flips the roles */
	wifi_set_foreground(&w, "work");
	pump_round(&w, '3', res);
	assert_true(!strncmp(res[0], "PONG\nOK\n", 8));
	assert_true(!strncmp(res[1], "PONG\nFAIL background VP may not change", 38));
	cleanup_free uint8_t *log = NULL;
	size_t n;
	assert_int_equal(cells_read_file(logp, 65536, &log, &n, &err), 0);
	assert_non_null(strstr((char *)log, "SET_NETWORK 0 ssid personal-net-1"));
	assert_non_null(strstr((char *)log, "SET_NETWORK 0 ssid personal-net-2"));
	assert_non_null(strstr((char *)log, "SET_NETWORK 0 ssid work-net-3"));
	assert_null(strstr((char *)log, "work-net-1"));
	assert_null(strstr((char *)log, "work-net-2"));
	assert_null(strstr((char *)log, "personal-net-3"));
	assert_null(strstr((char *)log, "ATTACH"));
	for (int i = 0; i < 2; i++) {
		close(vps[i].go);
		close(vps[i].out);
		kill(vps[i].pid, SIGKILL); /* siblings hold each other's pipes: no EOF */
		waitpid(vps[i].pid, NULL, 0);
	}
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
	wifi_free(&w);
	cells_rm_rf(tmp, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_proxy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
