#!/bin/bash
# Builds the tiny QEMU test guest for vmlan's end-to-end tests:
#   $REPO/target/vmlan-guest/vmlinuz            Debian bookworm kernel (linux-image-amd64)
#   $REPO/target/vmlan-guest/initramfs.cpio.gz  static busybox + NIC modules + tests/guest/init
#                                               + /bin/udhcpc6 (built by udhcpc6.sh, cached)
#
# Needs (see tests/setup.sh): apt-get (to download the kernel .deb), dpkg,
# busybox-static, cpio, gzip, xz; curl, bzip2, make, gcc for udhcpc6.sh. Cached: does nothing when both outputs exist
# and are newer than every file in tests/guest/ (debian/, the other guest, aside). The unpacked kernel is cached
# in target/vmlan-guest/kernel/, so editing the init only rebuilds the cpio.
# Set VMLAN_GUEST_REBUILD=1 to force a rebuild (kernel download included).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT="$REPO/target/vmlan-guest"
KCACHE="$OUT/kernel"
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
failover net_failover virtio_net e1000 macvlan"

mkdir -p "$OUT"

if [[ "${VMLAN_GUEST_REBUILD:-0}" == 1 ]]; then
    rm -rf "$KCACHE" "$OUT/vmlinuz" "$OUT/initramfs.cpio.gz"
fi

# ---- cache check ---------------------------------------------------------------
if [[ -f "$OUT/vmlinuz" && -f "$OUT/initramfs.cpio.gz" ]] &&
    [[ -z "$(find "$HERE" -path "$HERE/debian" -prune -o -type f -newer "$OUT/initramfs.cpio.gz" -print -quit)" ]] &&
    [[ -z "$(find "$HERE" -path "$HERE/debian" -prune -o -type f -newer "$OUT/vmlinuz" -print -quit)" ]]; then
    exit 0
fi

BUSYBOX=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    echo "build.sh: busybox-static is not installed (run tests/setup.sh)" >&2
    exit 1
fi
for tool in cpio gzip apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool missing (run tests/setup.sh)" >&2; exit 1; }
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# apt-get download as root: let the _apt sandbox user write into the dir.
apt_download() {
    (cd "$TMP/deb" && apt-get download -q "$@" 2>&1) || {
        # Package lists may be missing/stale on a fresh machine: update once.
        apt-get update -q >/dev/null
        (cd "$TMP/deb" && apt-get download -q "$@" 2>&1)
    }
}

# ---- kernel + modules ---------------------------------------------------------------
if [[ ! -f "$KCACHE/vmlinuz" ]]; then
    rm -rf "$KCACHE"
    mkdir -p "$TMP/deb" "$TMP/kernel-tmp/modules"
    if id _apt >/dev/null 2>&1; then chown _apt "$TMP/deb"; fi
    apt_download linux-image-amd64 >/dev/null
    meta=$(find "$TMP/deb" -name 'linux-image-amd64_*.deb' | head -n1)
    # Depends: "linux-image-6.1.0-NN-amd64 (= 6.1.xxx-y)"
    real=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
    if [[ -z "$real" ]]; then
        echo "build.sh: cannot find the kernel package in Depends of $meta" >&2
        exit 1
    fi
    echo "build.sh: downloading $real" >&2
    apt_download "$real" >/dev/null
    dpkg -x "$TMP"/deb/"$real"_*.deb "$TMP/x"
    cp "$(find "$TMP/x/boot" -name 'vmlinuz-*' | head -n1)" "$TMP/kernel-tmp/vmlinuz"
    for m in $MODULES; do
        f=$(find "$TMP/x/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
        if [[ -z "$f" ]]; then
            echo "build.sh: module $m not found in $real" >&2
            exit 1
        fi
        case "$f" in
            *.xz)
                if command -v xz >/dev/null; then
                    xz -dc "$f" > "$TMP/kernel-tmp/modules/$m.ko"
                else
                    "$BUSYBOX" xz -dc "$f" > "$TMP/kernel-tmp/modules/$m.ko"
                fi ;;
            *) cp "$f" "$TMP/kernel-tmp/modules/$m.ko" ;;
        esac
    done
    echo "$real" > "$TMP/kernel-tmp/package"
    rm -rf "$TMP/x"
    mv "$TMP/kernel-tmp" "$KCACHE"
fi

# ---- udhcpc6 (Debian's busybox lacks it: built from Debian's source, cached) ---------
UDHCPC6=$("$HERE/udhcpc6.sh")

# ---- initramfs ------------------------------------------------------------------------
ROOT="$TMP/root"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,lib/modules}
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"
cp "$HERE/init" "$ROOT/init"
cp "$HERE/udhcpc.script" "$ROOT/etc/udhcpc.script"
cp "$HERE/udhcpc6.script" "$ROOT/etc/udhcpc6.script"
cp "$UDHCPC6" "$ROOT/bin/udhcpc6"
# A UDP echo server (tests/e2e_expose.rs; busybox's nc has no UDP).
gcc -static -Os -o "$ROOT/bin/udpecho" "$HERE/udpecho.c"
chmod 0755 "$ROOT/init" "$ROOT/etc/udhcpc.script" "$ROOT/etc/udhcpc6.script" "$ROOT/bin/busybox" "$ROOT/bin/udhcpc6"
cp "$KCACHE"/modules/*.ko "$ROOT/lib/modules/"
# The kernel opens /dev/console before init runs; create it when we can
# (root). The init also re-opens it after mounting devtmpfs.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true
printf 'root:x:0:0:root:/:/bin/sh\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\n' > "$ROOT/etc/group"
printf 'hosts: files dns\n' > "$ROOT/etc/nsswitch.conf"
: > "$ROOT/etc/resolv.conf"
printf '127.0.0.1 localhost\n' > "$ROOT/etc/hosts"

(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n > "$TMP/initramfs.cpio.gz"
cp "$KCACHE/vmlinuz" "$TMP/vmlinuz"
mv "$TMP/vmlinuz" "$OUT/vmlinuz"
mv "$TMP/initramfs.cpio.gz" "$OUT/initramfs.cpio.gz"
echo "build.sh: built $OUT/vmlinuz ($(cat "$KCACHE/package")) and $OUT/initramfs.cpio.gz" >&2
