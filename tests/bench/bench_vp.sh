#!/usr/bin/env bash
# bench_vp.sh [BUILD_DIR] [RUNS] - VP start-run-teardown cost against its peers, run
# side by side and alternating:
#   cells:   cellctl vp run X --image IMG -- /bin/true
#   crun:    crun run of an OCI bundle over the same image with the same namespaces
#            (user with a 65536-id range like a VP's, pid, mount, network, uts, ipc,
#            cgroup); crun refuses this VM's hybrid
#            cgroup layout, so all runs happen in a private mount namespace with
#            /sys/fs/cgroup/unified unmounted
#   unshare: unshare -fpmnui true (namespaces only: the floor)
# Prints medians and ratios; then cellsd's idle RSS and the memory one idle VP adds.
# Not part of ctest. Needs root, crun, busybox-static.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:-$SRC/build}" && pwd)
RUNS=${2:-25}
export PATH="$B/agent:$PATH"
[ "$(id -u)" = 0 ] || { echo "bench_vp: needs root" >&2; exit 1; }
command -v crun >/dev/null || { echo "bench_vp: needs crun" >&2; exit 1; }
W=$(mktemp -d /tmp/cells-bench.XXXXXX)
chmod 0755 "$W" # crun's container root (a user-namespace range) must reach the image
export CELLS_RUN_DIR="$W/run"
CPID=
finish() {
	[ -n "$CPID" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null
	rm -rf "$W"
}
trap finish EXIT
bash "$SRC/scripts/mkimage.sh" "$W/img" >/dev/null
mkdir -p "$W/state" "$W/run" "$W/bundle"
cellsd --state-dir "$W/state" --run-dir "$W/run" --log-level warn >"$W/cellsd.log" 2>&1 &
CPID=$!
for _ in $(seq 100); do cellctl ping >/dev/null 2>&1 && break; sleep 0.05; done
# the OCI bundle: same rootfs (read-only, like the VP's lower layer), same namespaces
(cd "$W/bundle" && crun spec)
python3 - "$W/bundle/config.json" "$W/img" <<'PY'
import json, sys
p, img = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["root"] = {"path": img, "readonly": True}
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["linux"]["namespaces"] = [{"type": t} for t in ("user", "pid", "network", "ipc", "uts", "mount", "cgroup")]
# a VP's root is a 65536-id range of its own (kidmap.h): the same for crun's container
c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 2000000000, "size": 65536}]
c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 2000000000, "size": 65536}]
json.dump(c, open(p, "w"))
PY
cat >"$W/loop.sh" <<'LOOP'
set -eu
umount /sys/fs/cgroup/unified 2>/dev/null || true
W=$1 RUNS=$2
ns() { date +%s%N; }
for i in $(seq 1 "$RUNS"); do
	t0=$(ns); cellctl vp run bench --image "$W/img" -- /bin/true; t1=$(ns)
	crun --root "$W/crun" run --bundle "$W/bundle" "bench-$$-$i" </dev/null; t2=$(ns)
	unshare -fpmnui true; t3=$(ns)
	echo "$(( (t1 - t0) / 1000 )) $(( (t2 - t1) / 1000 )) $(( (t3 - t2) / 1000 ))"
done
LOOP
# warm-up
unshare -m bash "$W/loop.sh" "$W" 2 >/dev/null
unshare -m bash "$W/loop.sh" "$W" "$RUNS" >"$W/times"
python3 - "$W/times" "$RUNS" <<'PY'
import statistics, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
med = [statistics.median(r[i] for r in rows) / 1000 for i in range(3)]
print(f"runs per tool: {len(rows)} (alternating)")
for n, m in zip(("cells vp run", "crun run", "unshare -fpmnui"), med):
    print(f"  {n:18s} median {m:8.2f} ms")
print(f"  ratio cells/crun    {med[0] / med[1]:.2f}")
print(f"  ratio cells/unshare {med[0] / med[2]:.2f}")
PY
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
echo "cellsd idle RSS: $(rss "$CPID") kB"
before=$(rss "$CPID")
cellctl vp create idle --image "$W/img" >/dev/null
cellctl vp start idle >/dev/null
sleep 1
vpmem=$(cellctl --json vp status idle | python3 -c 'import json,sys; print(json.load(sys.stdin)["memory_bytes"] // 1024)')
echo "one idle VP: cgroup memory $vpmem kB (init + its sleep, page cache of the VP), cellsd RSS +$(( $(rss "$CPID") - before )) kB"
cellctl vp destroy idle >/dev/null
