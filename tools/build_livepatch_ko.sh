#!/usr/bin/env bash
# Build tests/data/livepatch/livepatch-sfunwind{,-ext}.ko: real livepatch modules compiled by
# Debian's kbuild against the linux-headers of 7.2.13+deb14-cloud-arm64 (the kernel of the
# vmcore fixtures), with the sid chroot's aarch64-linux-gnu-gcc-16.
#
# usage: tools/build_livepatch_ko.sh [SID_CHROOT] [OUT_DIR]
#   SID_CHROOT defaults to $SFUNWIND_SID_ROOT, then /work/toolchains/sid
#   OUT_DIR    defaults to tests/data/livepatch
#
# The three packages come from Debian's mirror through apt-get download inside the chroot:
# linux-kbuild (amd64: the host tools fixdep/modpost), linux-headers-common (all) and
# linux-headers-cloud-arm64 (arm64; fetched with a private arm64 package list so the
# chroot's own apt state is not changed).  They are unpacked with dpkg -x into a scratch
# tree; make, bc and dwarves (pahole, for the module's .BTF) are apt-get installed into the
# chroot if missing.  Also written: livepatch-sfunwind.pahole.txt (struct sizes from the
# module's DWARF, which the tests compare with what the .ko parser infers).  The .ko is then
# stripped of DWARF the way Debian strips its modules (--strip-debug keeps .symtab and .BTF).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SID=${1:-${SFUNWIND_SID_ROOT:-/work/toolchains/sid}}
OUT=${2:-$here/tests/data/livepatch}
VER=7.2.13+deb14
PKGVER=7.2.13-1
[ -x "$SID/usr/bin/aarch64-linux-gnu-gcc-16" ] || { echo "no sid chroot with aarch64-linux-gnu-gcc-16 at $SID" >&2; exit 1; }
W=/tmp/sfunwind-livepatch-build
rm -rf "$SID$W" && mkdir -p "$SID$W/debs" "$SID$W/root" "$SID$W/mod" "$SID$W/apt/lists/partial" "$SID$W/apt/cache/archives/partial"
cp "$OUT/livepatch-sfunwind.c" "$OUT/livepatch-sfunwind-ext.c" "$SID$W/mod/"
echo 'obj-m += livepatch-sfunwind.o livepatch-sfunwind-ext.o' > "$SID$W/mod/Kbuild"

in_sid() {
  chroot "$SID" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$1"
}

in_sid "set -e
command -v make >/dev/null && command -v bc >/dev/null && command -v pahole >/dev/null || {
  apt-get update -qq; apt-get install -y -qq make bc dwarves >/dev/null; }
cd $W/debs
apt-get download -qq linux-kbuild-$VER=$PKGVER linux-headers-$VER-common=$PKGVER
ARM64='-o APT::Architecture=arm64 -o APT::Architectures=arm64 -o Dir::State::Lists=$W/apt/lists -o Dir::Cache=$W/apt/cache -o Dir::State::status=/dev/null'
apt-get \$ARM64 update -qq
apt-get \$ARM64 download -qq linux-headers-$VER-cloud-arm64:arm64=$PKGVER
for d in *.deb; do dpkg -x \$d $W/root; done
R=$W/root/usr/src
make -s -C \$R/linux-headers-$VER-common O=\$R/linux-headers-$VER-cloud-arm64 M=$W/mod \
  ARCH=arm64 KERNELRELEASE=$VER-cloud-arm64 CROSS_COMPILE=aarch64-linux-gnu- \
  CC=aarch64-linux-gnu-gcc-16 KBUILD_MODPOST_WARN=1 modules
cd $W/mod
pahole -C klp_func,klp_object,klp_patch livepatch-sfunwind.ko > livepatch-sfunwind.pahole.txt
pahole -C klp_func_ext,klp_object_ext livepatch-sfunwind-ext.ko >> livepatch-sfunwind.pahole.txt
# as Debian ships modules: DWARF stripped, .symtab and .BTF kept
aarch64-linux-gnu-strip --strip-debug livepatch-sfunwind.ko livepatch-sfunwind-ext.ko
sha256sum ../debs/*.deb > debs.sha256
"
cp "$SID$W/mod/livepatch-sfunwind.ko" "$SID$W/mod/livepatch-sfunwind-ext.ko" \
   "$SID$W/mod/livepatch-sfunwind.pahole.txt" "$OUT/"
cat "$SID$W/mod/debs.sha256"
sha256sum "$OUT/livepatch-sfunwind.ko" "$OUT/livepatch-sfunwind-ext.ko"
rm -rf "${SID:?}$W"
