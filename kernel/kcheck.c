#include "kcheck.h"
#include "cleanup.h"
#include "kidmap.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool file_has(const char *path, const char *needle)
{
	cleanup_file FILE *f = fopen(path, "re");
	char line[512];
	while (f && fgets(line, sizeof line, f))
		if (strstr(line, needle))
			return true;
	return false;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int kcheck_run(struct kcheck_item *it, int max)
{
	static const char *ns[] = {"pid", "mnt", "net", "uts", "ipc", "cgroup"};
	int n = 0;
	for (size_t i = 0; i < CELLS_ARRAY_SIZE(ns) && n < max; i++, n++) {
		char p[64];
		snprintf(p, sizeof p, "/proc/self/ns/%s", ns[i]);
		it[n] = (struct kcheck_item){.name = ns[i], .required = true};
		it[n].present = exists(p);
		snprintf(it[n].detail, sizeof it[n].detail, "%s namespace", ns[i]);
	}
	if (n < max) {
		/* a child in a new user namespace whose uid/gid maps this process writes */
		it[n] = (struct kcheck_item){.name = "userns", .required = true};
		it[n].present = kidmap_probe_userns();
		snprintf(it[n].detail, sizeof it[n].detail,
			 "user namespaces (VP root is a subordinate id range)");
		n++;
	}
	if (n < max) {
		/* open_tree + mount_setattr(MOUNT_ATTR_IDMAP) of / through such a namespace */
		it[n] = (struct kcheck_item){.name = "idmap", .required = true};
		it[n].present = kidmap_probe_idmap();
		snprintf(it[n].detail, sizeof it[n].detail,
			 "idmapped mounts (the shared base image seen in a VP's range)");
		n++;
	}
	if (n < max) {
		it[n] = (struct kcheck_item){.name = "overlay", .required = true};
		it[n].present = file_has("/proc/filesystems", "overlay");
		snprintf(it[n].detail, sizeof it[n].detail, "overlayfs (union root)");
		n++;
	}
	if (n < max) {
		it[n] = (struct kcheck_item){.name = "seccomp", .required = true};
		it[n].present = file_has("/proc/self/status", "Seccomp:");
		snprintf(it[n].detail, sizeof it[n].detail, "seccomp filters");
		n++;
	}
	if (n < max) {
		bool v1 = exists("/sys/fs/cgroup/devices/devices.allow");
		bool v2 = exists("/sys/fs/cgroup/cgroup.controllers") ||
			  exists("/sys/fs/cgroup/unified/cgroup.controllers");
		it[n] = (struct kcheck_item){.name = "cgroup", .required = true};
		it[n].present = v1 || v2;
		snprintf(it[n].detail, sizeof it[n].detail, "cgroups:%s%s", v1 ? " v1-devices" : "",
			 v2 ? " v2" : "");
		n++;
	}
	if (n < max) {
		/* clone3 and pidfds: a NULL argument gives EFAULT when the call exists */
		long r = syscall(SYS_clone3, NULL, 0);
		it[n] = (struct kcheck_item){.name = "clone3", .required = true};
		it[n].present = r < 0 && errno != ENOSYS;
		snprintf(it[n].detail, sizeof it[n].detail, "clone3, CLONE_PIDFD, pidfd_open");
		n++;
	}
	if (n < max) {
		/* BPF_PROG_TYPE_CGROUP_DEVICE (the v2 device controller): an empty program is
		 * refused with EINVAL when bpf() exists, ENOSYS otherwise */
		union bpf_attr a;
		memset(&a, 0, sizeof a);
		a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
		long r = syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
		it[n] = (struct kcheck_item){.name = "bpf-dev", .required = false};
		it[n].present = r < 0 && errno != ENOSYS;
		snprintf(it[n].detail, sizeof it[n].detail,
			 "bpf() for the cgroup v2 device program (needed on pure v2 hosts)");
		n++;
	}
	if (n < max) {
		it[n] = (struct kcheck_item){.name = "fscrypt", .required = false};
		it[n].present = exists("/sys/fs/ext4/features/encryption");
		snprintf(it[n].detail, sizeof it[n].detail,
			 "ext4 encryption (work VP crypto-erase)");
		n++;
	}
	if (n < max) {
		it[n] = (struct kcheck_item){.name = "ksm", .required = false};
		it[n].present = exists("/sys/kernel/mm/ksm/run");
		snprintf(it[n].detail, sizeof it[n].detail, "kernel samepage merging");
		n++;
	}
	return n;
}

int kcheck_report(FILE *f, bool json)
{
	struct kcheck_item it[32];
	int n = kcheck_run(it, 32), missing = 0;
	if (json)
		fputs("{\"features\":[", f);
	for (int i = 0; i < n; i++) {
		if (!it[i].present && it[i].required)
			missing++;
		if (json)
			fprintf(f, "%s{\"name\":\"%s\",\"present\":%s,\"required\":%s}",
				i ? "," : "", it[i].name, it[i].present ? "true" : "false",
				it[i].required ? "true" : "false");
		else
			fprintf(f, "%-10s %-8s %s%s\n", it[i].name,
				it[i].present ? "ok" : "MISSING", it[i].detail,
				it[i].required ? "" : " (optional)");
	}
	if (json)
		fprintf(f, "],\"missing_required\":%d}\n", missing);
	return missing;
}
