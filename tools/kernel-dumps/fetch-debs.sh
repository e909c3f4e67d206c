#!/bin/sh
# fetch-debs.sh DEBS_DIR
#
# Download, with "apt-get download", the Debian arm64 packages the kernel-dumps
# pipeline uses into DEBS_DIR.  apt runs with a private state and source list
# under DEBS_DIR/.apt, so the host's apt configuration is not changed and no
# foreign architecture has to be added.  No root needed.
#
# Environment:
#   MIRROR    Debian's package mirror URL.  Default: the first ".../debian" URI
#             configured in /etc/apt/sources.list{,.d/*} on this machine.
#   SUITE     suite to take the packages from (default: sid)
#   KREL      kernel release (default: 7.2.13+deb14-cloud-arm64)
#   KVERSION  exact version of the kernel packages (default: what SUITE has)
#   KEYRING   archive keyring (default: /usr/share/keyrings/debian-archive-keyring.gpg)
#   PACKAGES  space-separated package names to download instead of the default set
#             (fetch-vmlinux-dbg.sh uses it to get only the -dbg package)
#
# Downloads linux-binary-$KREL, linux-base-$KREL, linux-modules-$KREL,
# linux-image-$KREL-dbg (about 360 MB) and busybox-static, all :arm64.
set -eu
if [ $# -ne 1 ]; then
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
SUITE=${SUITE:-sid}
KREL=${KREL:-7.2.13+deb14-cloud-arm64}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

detect_mirror() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		case "$f" in
		*.sources) awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" ;;
		*) awk '$1 == "deb" { for (i = 2; i <= NF; i++) { if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
		        print $i; break } }' "$f" ;;
		esac
	done | grep -E '^(https?|file)://.*/debian/?$' | head -n1
}
MIRROR=${MIRROR:-$(detect_mirror)}
[ -n "$MIRROR" ] || { echo "no Debian mirror found in /etc/apt; set MIRROR" >&2; exit 1; }
[ -r "$KEYRING" ] || { echo "keyring $KEYRING not found; set KEYRING (package debian-archive-keyring)" >&2; exit 1; }
echo "mirror: $MIRROR  suite: $SUITE"

A=$OUT/.apt
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/sources.list.d" "$A/preferences.d"
: > "$A/status"
echo "deb [arch=arm64 signed-by=$KEYRING] $MIRROR $SUITE main" > "$A/sources.list"
set -- -o Dir::State="$A" -o Dir::State::Lists="$A/lists" -o Dir::State::status="$A/status" \
	-o Dir::Cache="$A/cache" -o Dir::Etc::SourceList="$A/sources.list" \
	-o Dir::Etc::SourceParts="$A/sources.list.d" -o Dir::Etc::Preferences="$A/preferences" \
	-o Dir::Etc::PreferencesParts="$A/preferences.d" \
	-o APT::Architecture=arm64 -o APT::Architectures=arm64 \
	-o Acquire::Languages=none -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root
apt-get "$@" -q update

V=${KVERSION:+=$KVERSION}
cd "$OUT"
if [ -n "${PACKAGES:-}" ]; then
	# shellcheck disable=SC2086  # word splitting wanted: a list of names
	apt-get "$@" -q download $PACKAGES
else
	apt-get "$@" -q download "linux-binary-$KREL$V" "linux-base-$KREL$V" "linux-modules-$KREL$V" \
		"linux-image-$KREL-dbg$V" busybox-static
fi
rm -rf "$A"
ls -l "$OUT"
