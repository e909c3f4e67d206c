#!/bin/sh
# sframe_trixie_toolchain.sh DIR [MIRROR]
#
# Build a minimal Debian trixie chroot in DIR with binutils 2.44 (native x86-64 and
# aarch64-linux-gnu) and gcc: the toolchain that writes SFrame **v2** for the fixture corpus
# of tests/data/sframe (see tools/build_sframe_corpus.py).  The corpus builder only uses its
# `as` and `ld` (and `objdump` for the 2.44 reference dumps); the compilers are gcc 16 from the
# sid chroot, whose assembly output this chroot assembles.  binutils-dev brings libsframe 2.44
# (sframe-api.h, libsframe.a) for the v2 lookup oracle; libc6-dev the crt files for the PIE.
#
# Same conventions as tools/sid-toolchain (root, debootstrap fetched from the mirror when
# absent, Check-Valid-Until off).  About 300 MB, under a minute on a fast mirror.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DIR [MIRROR]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: must run as root" >&2; exit 1; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
MIRROR=${2:-${MIRROR:-http://deb.debian.org/debian}}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
PACKAGES=binutils,binutils-aarch64-linux-gnu,binutils-dev,gcc,libc6-dev

if [ -x "$DIR/usr/bin/as" ] && [ -x "$DIR/usr/bin/aarch64-linux-gnu-as" ] && [ -e "$DIR/usr/include/sframe-api.h" ] && [ ! -d "$DIR/debootstrap" ]; then
	echo "$0: $DIR already has the toolchain"
	exit 0
fi
if command -v debootstrap >/dev/null 2>&1; then
	DEBOOTSTRAP=debootstrap
else
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/trixie-toolchain.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
	(cd "$TMP" && apt-get -q download debootstrap)
	dpkg -x "$TMP"/debootstrap_*.deb "$TMP/debootstrap"
	DEBOOTSTRAP_DIR=$TMP/debootstrap/usr/share/debootstrap
	export DEBOOTSTRAP_DIR
	DEBOOTSTRAP=$TMP/debootstrap/usr/sbin/debootstrap
fi
"$DEBOOTSTRAP" --variant=minbase --keyring="$KEYRING" --include="$PACKAGES" trixie "$DIR" "$MIRROR"
rm -f "$DIR"/var/cache/apt/archives/*.deb
chroot "$DIR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c \
	'as --version | head -n1; aarch64-linux-gnu-as --version | head -n1'
