#!/usr/bin/env bash
# mkimage.sh OUT_DIR [EXTRA_STATIC_BINARY...] - build a small VP root filesystem from
# Debian's busybox-static: busybox and its applet links, /etc basics, an /sbin/init
# that stops on SIGTERM, and the extra static binaries in OUT_DIR/usr/local/bin.
# Any root filesystem directory (e.g. a debootstrap) works as an image too.
set -euo pipefail
out=${1:?usage: mkimage.sh OUT_DIR [EXTRA_STATIC_BINARY...]}
shift
bb=$(command -v busybox || true)
[ -n "$bb" ] || { echo "mkimage: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ! file -L "$bb" 2>/dev/null | grep -q "statically linked"; then
	if [ -x /bin/busybox ] && file -L /bin/busybox | grep -q "statically linked"; then bb=/bin/busybox
	else echo "mkimage: $bb is not statically linked (apt-get install busybox-static)" >&2; exit 1; fi
fi
mkdir -p "$out"
cd "$out"
mkdir -p bin sbin usr/bin usr/sbin usr/local/bin etc root tmp proc sys dev var/log run home
chmod 1777 tmp
cp "$bb" bin/busybox
for a in $(bin/busybox --list-full); do
	[ -e "$a" ] || ln -s /bin/busybox "$a"
done
cat >etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >etc/group <<'G'
root:x:0:
tty:x:5:
nogroup:x:65534:
G
echo "127.0.0.1 localhost" >etc/hosts
: >etc/resolv.conf
rm -f sbin/init
cat >sbin/init <<'I'
#!/bin/sh
# VP init: run /etc/rc.local if present, then idle; SIGTERM stops the VP.
trap 'exit 0' TERM INT
[ -x /etc/rc.local ] && /etc/rc.local
while :; do sleep 3600 & wait $!; done
I
chmod 755 sbin/init
for b in "$@"; do
	cp "$b" usr/local/bin/
done
echo "mkimage: image at $out ($(du -sh . | cut -f1))"
