#!/bin/bash
# Builds busybox's DHCPv6 client, udhcpc6, for the busybox test guest (called by
# build.sh; prints the binary's path on stdout). Debian's busybox and
# busybox-static packages leave the applet out (their configs have only udhcpc
# and udhcpd), so this compiles Debian's own busybox source (the .orig tarball
# of bookworm's busybox 1:1.35.0-4, its sha256 pinned below from that .dsc) with
# `make allnoconfig` plus STATIC, FEATURE_IPV6, UDHCPC6 and its RFC 3646 (DNS
# servers, search list) and RFC 4704 (FQDN) options: one static (glibc) binary
# whose only applet is udhcpc6.
#
# Needs (tests/setup.sh): curl, bzip2, make, gcc. Cached in
# ${VMLAN_CACHE_DIR:-/var/cache/vmlan}/udhcpc6-HASH/udhcpc6, HASH = the first
# 12 hex digits of the sha256 of this script (so a changed config rebuilds);
# the tarball is kept beside it. Concurrent runs take a lock.
set -euo pipefail

VERSION=1.35.0
SHA256=faeeb244c35a348a334f4a59e44626ee870fb07b6884d68c10ae8bc19f83a694
URL=http://deb.debian.org/debian/pool/main/b/busybox/busybox_$VERSION.orig.tar.bz2
CONFIG="STATIC FEATURE_IPV6 UDHCPC6 FEATURE_UDHCPC6_RFC3646 FEATURE_UDHCPC6_RFC4704"

CACHE=${VMLAN_CACHE_DIR:-/var/cache/vmlan}
HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
DEST="$CACHE/udhcpc6-$HASH"
log() { echo "udhcpc6.sh: $*" >&2; }

if [[ -x "$DEST/udhcpc6" ]]; then
    echo "$DEST/udhcpc6"
    exit 0
fi
for tool in curl bzip2 make gcc sha256sum; do
    command -v "$tool" >/dev/null || { log "$tool missing (run tests/setup.sh)"; exit 1; }
done
mkdir -p "$CACHE"
exec 9>"$CACHE/.udhcpc6.lock"
flock 9
if [[ -x "$DEST/udhcpc6" ]]; then
    echo "$DEST/udhcpc6"
    exit 0
fi

TARBALL="$CACHE/busybox_$VERSION.orig.tar.bz2"
if [[ ! -f "$TARBALL" ]] || ! echo "$SHA256  $TARBALL" | sha256sum -c --quiet - >/dev/null 2>&1; then
    log "downloading $URL"
    curl -sSf --retry 3 --max-time 300 -o "$TARBALL.part" "$URL"
    if ! echo "$SHA256  $TARBALL.part" | sha256sum -c --quiet - >/dev/null 2>&1; then
        log "$URL: sha256 is not $SHA256"
        rm -f "$TARBALL.part"
        exit 1
    fi
    mv "$TARBALL.part" "$TARBALL"
fi

WORK=$(mktemp -d "$CACHE/.udhcpc6-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
tar -xjf "$TARBALL" -C "$WORK"
SRC="$WORK/busybox-$VERSION"
log "building udhcpc6 (busybox $VERSION, allnoconfig + $CONFIG)"
make -C "$SRC" -s allnoconfig >/dev/null
for opt in $CONFIG; do
    sed -i "s/^# CONFIG_$opt is not set\$/CONFIG_$opt=y/" "$SRC/.config"
done
{ yes "" || true; } | make -C "$SRC" -s oldconfig >/dev/null
for opt in $CONFIG; do
    grep -qx "CONFIG_$opt=y" "$SRC/.config" || { log "CONFIG_$opt did not stay set"; exit 1; }
done
# glibc's static link warns about getpwnam & co.; the output is kept for a failure.
if ! make -C "$SRC" -j"$(nproc)" busybox >"$WORK/make.log" 2>&1; then
    tail -n 40 "$WORK/make.log" >&2
    exit 1
fi
mkdir -p "$WORK/out"
cp "$SRC/busybox" "$WORK/out/udhcpc6"
chmod 0755 "$WORK/out/udhcpc6"
rm -rf "$DEST"
mv "$WORK/out" "$DEST"
log "built $DEST/udhcpc6"
echo "$DEST/udhcpc6"
