#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages Cells needs to build, test and run the demo.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
PKGS=(
	build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
	libssl-dev openssl libprotobuf-c-dev protobuf-c-compiler libwebsockets-dev
	libsqlite3-dev sqlite3 postgresql libpq-dev libcmocka-dev libseccomp-dev libcap-dev libargon2-dev
	libselinux1-dev libjson-c-dev libpng-dev libmnl-dev libnftables-dev
	busybox-static iproute2 nftables crun util-linux e2fsprogs python3 procps file
	python3-cryptography curl erofs-utils squashfs-tools debootstrap
	chromium chromium-driver libnss3-tools python3-selenium
)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#PKGS[@]} packages present"
	exit 0
fi
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
