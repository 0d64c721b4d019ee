#!/usr/bin/env bash
# mkrootfs.sh [--debootstrap [MIRROR]] OUT_DIR - a Debian root file system for a VP image
# (`cells-mdm image build OUT_DIR -o NAME.img`, docs/IMAGES.md).
#
#   default        assembled from this machine's installed Debian packages (dpkg -L): libc,
#                  bash, dash, coreutils, grep, sed, findutils, procps and the like, laid
#                  out as Debian 12 does (merged /usr), with an /sbin/init that idles and
#                  stops on SIGTERM. Needs no network; what the tests use.
#   --debootstrap  Debian 12 minbase from the package archive (debootstrap --variant=minbase
#                  bookworm OUT_DIR MIRROR; MIRROR defaults to the first of this machine's
#                  apt sources), the same /sbin/init added. Reaches the archive: not for tests.
# Files keep their owners (uids 0..65535 in the VP; the device maps them into each VP's range).
set -euo pipefail
usage() { echo "usage: mkrootfs.sh [--debootstrap [MIRROR]] OUT_DIR" >&2; exit 2; }
mode=installed mirror=
case ${1:-} in
-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
--debootstrap)
	mode=debootstrap
	shift
	if [ $# -ge 2 ]; then mirror=$1; shift; fi
	;;
esac
[ $# -eq 1 ] || usage
out=$1
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
	echo "mkrootfs: $out exists and is not empty" >&2
	exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

add_init() {
	rm -f "$out/sbin/init"
	cat >"$out/sbin/init" <<'I'
#!/bin/sh
# VP init: run /etc/rc.local if present, then idle; SIGTERM stops the VP.
trap 'exit 0' TERM INT
[ -x /etc/rc.local ] && /etc/rc.local
while :; do sleep 3600 & wait $!; done
I
	chmod 755 "$out/sbin/init"
}

if [ "$mode" = debootstrap ]; then
	command -v debootstrap >/dev/null || { echo "mkrootfs: debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
	if [ -z "$mirror" ]; then
		mirror=$(grep -h -m1 -oE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
		[ -n "$mirror" ] || mirror=$(grep -h -m1 -oE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')
		[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
	fi
	echo "mkrootfs: debootstrap minbase bookworm from $mirror"
	debootstrap --variant=minbase bookworm "$out" "$mirror" >"$out.debootstrap.log" 2>&1 ||
		{ echo "mkrootfs: debootstrap failed (see $out.debootstrap.log)" >&2; exit 1; }
	rm -f "$out.debootstrap.log"
	rm -rf "$out"/var/cache/apt/archives/*.deb "$out"/var/lib/apt/lists/*
	add_init
	echo "mkrootfs: Debian minbase at $out ($(du -sh "$out" | cut -f1))"
	exit 0
fi

# Debian 12's merged /usr: the top-level dirs are links into /usr, as on the host
mkdir -p "$out"/usr/{bin,sbin,lib} "$out"/{etc,root,tmp,proc,sys,dev,run,home,var/log,var/tmp}
for l in bin sbin lib lib64; do
	[ -L "/$l" ] && ln -sfn "usr/$l" "$out/$l"
done
[ -d /usr/lib64 ] && mkdir -p "$out/usr/lib64"
chmod 1777 "$out/tmp" "$out/var/tmp"
pkgs=(base-files base-passwd debianutils libc6 libc-bin bash dash coreutils grep sed findutils
	gzip tar diffutils hostname mawk procps sed ncurses-base
	libacl1 libattr1 libcap2 libcrypt1 libgmp10 libpcre2-8-0 libselinux1 libtinfo6 libzstd1
	liblzma5 libbz2-1.0 libproc2-0 libprocps8 libsystemd0 libgcrypt20 libgpg-error0 liblz4-1 libncursesw6)
# every file the packages ship (no docs), copied with its parents: a /bin/... path lands in
# /usr/bin through the links made above
have=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && have+=("$p")
done
dpkg -L "${have[@]}" | sort -u | grep -vE '^/usr/share/(doc|man|info|locale|lintian)/' |
	while IFS= read -r f; do
		{ [ -L "$f" ] || [ -f "$f" ]; } && printf '%s\0' "$f"
	done | xargs -0 -r cp -a --parents -t "$out" 2>/dev/null || true
n=${#have[@]}
# the files dpkg makes at install time rather than ships
cp /usr/share/base-passwd/passwd.master "$out/etc/passwd" 2>/dev/null ||
	printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$out/etc/passwd"
cp /usr/share/base-passwd/group.master "$out/etc/group" 2>/dev/null ||
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$out/etc/group"
ln -sfn bash "$out/usr/bin/sh" 2>/dev/null || true
[ -e "$out/usr/bin/dash" ] && ln -sfn dash "$out/usr/bin/sh"
echo "127.0.0.1 localhost" >"$out/etc/hosts"
: >"$out/etc/resolv.conf"
echo cells-vp >"$out/etc/hostname"
add_init
chroot "$out" /bin/sh -c 'ldconfig 2>/dev/null; true'
echo "mkrootfs: Debian root file system from $n installed packages at $out ($(du -sh "$out" | cut -f1))"
