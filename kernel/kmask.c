/* kmask.c - masked and read-only paths of a VP (see kmask.h). */
#include "kmask.h"
#include "cleanup.h"

#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>

/* runc/crun/Docker default maskedPaths and readonlyPaths, and Cells' own. */
const struct kmask_entry kmask_table[] = {
    /* hardware and firmware description of the host (ACPI tables, memory map, sound
     * and SCSI devices, power capping: RAPL energy counters are a side channel) */
    {"/proc/acpi", KMASK_HIDE},
    {"/proc/asound", KMASK_HIDE},
    {"/proc/scsi", KMASK_HIDE},
    {"/sys/firmware", KMASK_HIDE},
    {"/sys/devices/virtual/powercap", KMASK_HIDE},
    /* kernel memory, the host's keys, timers and scheduler internals, interrupt
     * counts (side channels into other VPs and the host) */
    {"/proc/kcore", KMASK_HIDE},
    {"/proc/keys", KMASK_HIDE},
    {"/proc/interrupts", KMASK_HIDE},
    {"/proc/latency_stats", KMASK_HIDE},
    {"/proc/timer_list", KMASK_HIDE},
    {"/proc/timer_stats", KMASK_HIDE},
    {"/proc/sched_debug", KMASK_HIDE},
    /* kernel settings that are not namespaced: readable, never writable */
    {"/proc/bus", KMASK_READONLY},
    {"/proc/fs", KMASK_READONLY},
    {"/proc/irq", KMASK_READONLY},
    {"/proc/sys", KMASK_READONLY},
    {"/proc/sysrq-trigger", KMASK_READONLY},
};
const size_t kmask_count = CELLS_ARRAY_SIZE(kmask_table);

static int hide(const char *p, const char *devnull, const char **step)
{
	struct stat st;
	*step = "mask";
	if (stat(p, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode))
		return mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			     "size=0,mode=0555");
	return mount(devnull, p, NULL, MS_BIND, NULL);
}

static int readonly(const char *p, const char **step)
{
	*step = "bind";
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
		return errno == ENOENT ? 0 : -1;
	*step = "remount read-only";
	return mount(NULL, p, NULL,
		     MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

int kmask_apply(const char *devnull, const char **step, const char **path)
{
	for (size_t i = 0; i < kmask_count; i++) {
		const char *p = kmask_table[i].path + 1; /* relative to the new root */
		*path = kmask_table[i].path;
		int rc =
		    kmask_table[i].kind == KMASK_HIDE ? hide(p, devnull, step) : readonly(p, step);
		if (rc < 0)
			return -1;
	}
	return 0;
}
