/* dev_probe.c - a static helper copied into the VP image by devices_vp.sh: it does one
 * device operation inside the VP and prints its result as NAME=ok, NAME=ENOENT,
 * NAME=EPERM or NAME=errno:N (replies of the proxies verbatim). Built by the test with
 * `cc -static`.
 *
 *   dev_probe open PATH              open(PATH, O_RDWR)
 *   dev_probe mknod PATH MAJ MIN     mknod(PATH, S_IFCHR|0600, MAJ:MIN)
 *   dev_probe hold PATH GO           open PATH, print held=..., wait (<= 30 s) until the
 *                                    file GO exists, then use the old fd (TUNGETFEATURES
 *                                    on a TUN fd: used=...) and open PATH again (reopen=...)
 *   dev_probe wpa CMD                one request to /dev/cells/wpa_ctrl (wpa_cli style:
 *                                    own bound socket), prints the reply or "timeout"
 *   dev_probe power LINE             one request line to /dev/cells/power, prints the reply
 *   dev_probe boot LOG INIT...       a VP's init: its very first action appends whether
 *                                    /dev/net/tun exists and opens ("tun=ok|ENOENT|...")
 *                                    to LOG, then it execs INIT...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

static void report(const char *name, long rc)
{
	if (rc >= 0)
		printf("%s=ok\n", name);
	else if (errno == EPERM)
		printf("%s=EPERM\n", name);
	else if (errno == ENOENT)
		printf("%s=ENOENT\n", name);
	else
		printf("%s=errno:%d\n", name, errno);
	fflush(stdout);
}

static int cmd_hold(const char *path, const char *go)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	report("held", fd);
	if (fd < 0)
		return 1;
	for (int i = 0; i < 300 && access(go, F_OK) != 0; i++)
		usleep(100000);
	unsigned features = 0; /* needs no capability, only a live TUN fd */
	report("used", ioctl(fd, TUNGETFEATURES, &features));
	int fd2 = open(path, O_RDWR | O_CLOEXEC);
	report("reopen", fd2);
	return 0;
}

static int cmd_wpa(const char *req)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		report("socket", -1);
		return 1;
	}
	struct sockaddr_un me = {.sun_family = AF_UNIX}, to = {.sun_family = AF_UNIX};
	snprintf(me.sun_path, sizeof me.sun_path, "/tmp/wpa_probe-%d", (int)getpid());
	unlink(me.sun_path);
	snprintf(to.sun_path, sizeof to.sun_path, "/dev/cells/wpa_ctrl");
	if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) {
		report("bind", -1);
		return 1;
	}
	int rc = 1;
	if (sendto(s, req, strlen(req), 0, (struct sockaddr *)&to, sizeof to) < 0) {
		report("send", -1);
		goto out;
	}
	struct pollfd p = {.fd = s, .events = POLLIN};
	if (poll(&p, 1, 3000) != 1) {
		printf("timeout\n");
		goto out;
	}
	char buf[4096];
	ssize_t n = recv(s, buf, sizeof buf - 1, 0);
	if (n < 0) {
		report("recv", -1);
		goto out;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	printf("%s\n", buf);
	rc = 0;
out:
	unlink(me.sun_path);
	return rc;
}

static int cmd_power(const char *line)
{
	int fd = open("/dev/cells/power", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		report("open", -1);
		return 1;
	}
	char buf[256];
	int n = snprintf(buf, sizeof buf, "%s\n", line);
	if (n < 0 || (size_t)n >= sizeof buf || write(fd, buf, (size_t)n) != n) {
		report("write", -1);
		return 1;
	}
	size_t len = 0;
	while (len < sizeof buf - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 3000) != 1) {
			printf("timeout\n");
			return 1;
		}
		ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
		if (r <= 0) {
			report("read", -1);
			return 1;
		}
		len += (size_t)r;
		if (memchr(buf, '\n', len))
			break;
	}
	buf[len] = 0;
	buf[strcspn(buf, "\n")] = 0;
	printf("%s\n", buf);
	return 0;
}

static int cmd_boot(const char *log, char **init)
{
	int rc = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	int e = errno;
	char line[64];
	int n = rc >= 0	      ? snprintf(line, sizeof line, "tun=ok\n")
		: e == ENOENT ? snprintf(line, sizeof line, "tun=ENOENT\n")
		: e == EPERM  ? snprintf(line, sizeof line, "tun=EPERM\n")
			      : snprintf(line, sizeof line, "tun=errno:%d\n", e);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		return 1;
	close(fd);
	if (rc >= 0)
		close(rc);
	execv(init[0], init);
	return 127;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "boot"))
		return cmd_boot(argv[2], argv + 3);
	if (argc == 3 && !strcmp(argv[1], "open")) {
		report("open", open(argv[2], O_RDWR | O_CLOEXEC));
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "mknod")) {
		dev_t dev = makedev((unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]));
		report("mknod", mknod(argv[2], S_IFCHR | 0600, dev));
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "hold"))
		return cmd_hold(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "wpa"))
		return cmd_wpa(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "power"))
		return cmd_power(argv[2]);
	fprintf(stderr, "usage: dev_probe open|mknod|hold|wpa|power|boot ...\n");
	return 2;
}
