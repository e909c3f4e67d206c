#!/bin/sh
# fetch-vmlinux-dbg.sh DIR
#
# Put the full debug vmlinux (DWARF, ~411 MB) of the fixture kernel at DIR/vmlinux:
# downloads linux-image-$KREL-dbg (~356 MB) from Debian's mirror with fetch-debs.sh
# (private apt state, no root needed), extracts only the vmlinux, checks its SHA256 when
# the release is the fixtures' one, and deletes the .deb.  drgn needs this file (the
# reduced vmlinux.debug of the fixtures has no DWARF); benchmarks/vmcore_open.py calls this.
#
# Environment: as fetch-debs.sh (MIRROR, SUITE, KREL, KVERSION, KEYRING).
set -eu
if [ $# -ne 1 ]; then
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
KREL=${KREL:-7.2.13+deb14-cloud-arm64}
KVERSION=${KVERSION:-}
[ "$KREL" = 7.2.13+deb14-cloud-arm64 ] && KVERSION=${KVERSION:-7.2.13-1}
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
TMP=$(mktemp -d "$OUT/.fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
PACKAGES="linux-image-$KREL-dbg${KVERSION:+=$KVERSION}" KREL=$KREL "$HERE/fetch-debs.sh" "$TMP"
DEB=$(ls "$TMP"/linux-image-*-dbg_*.deb)
dpkg-deb --fsys-tarfile "$DEB" | tar -xO "./usr/lib/debug/lib/modules/$KREL/vmlinux" > "$TMP/vmlinux"
if [ "$KREL" = 7.2.13+deb14-cloud-arm64 ]; then
	echo "eae204550e5cb6468a2627e89e8b0b22018feac6fd84399ad55e0a277afd887d  $TMP/vmlinux" | sha256sum -c -
fi
mv "$TMP/vmlinux" "$OUT/vmlinux"
ls -l "$OUT/vmlinux"
