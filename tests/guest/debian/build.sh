#!/bin/bash
# Builds a real Debian bookworm "cloud-style" guest for vmlan's end-to-end tests,
# shaped like Debian's bookworm genericcloud image (ifupdown + isc-dhcp-client,
# cloud-init rendering /etc/network/interfaces.d/50-cloud-init with its ENI renderer):
#   base.qcow2   a qcow2 whose virtual disk is ONE ext4 filesystem labelled "root"
#                (no partition table: the guest sees it as /dev/vda)
#   vmlinuz      the rootfs's kernel (linux-image-amd64), for direct kernel boot
#   initrd.img   its initramfs (initramfs-tools, MODULES=list: virtio_pci, virtio_blk, ext4)
# Boot: qemu-system-x86_64 -kernel vmlinuz -initrd initrd.img
#         -append "root=/dev/vda rw console=ttyS0 no_timer_check"
#         -drive file=OVERLAY.qcow2,if=virtio,format=qcow2   (overlay backed by base.qcow2)
#
# From: debootstrap --variant=minbase bookworm from deb.debian.org, then
# mkfs.ext4 -d ROOTFS on a sparse raw file and qemu-img convert. No loop
# devices, no mounts (apart from the /proc and /sys debootstrap mounts itself).
# Needs root and (see tests/setup.sh) debootstrap, e2fsprogs (mkfs.ext4 -d), qemu-img.
#
# What the launcher needs from the image: cloud-init with the NoCloud datasource
# (a "cidata" seed disk: user-data, meta-data, network-config v2), sshd (host
# keys are made by cloud-init on first boot), a DHCP client (dhclient via
# ifupdown) for the segment NIC, and the en_US.UTF-8 locale generated so
# cloud-init's locale module succeeds and `cloud-init status` ends in "done".
# Root is locked: users and keys come from the seed's user-data. Host keys are
# ed25519 + ecdsa only (99-vmlan.cfg). The initramfs only holds virtio_pci,
# virtio_blk, virtio_scsi, sd_mod and ext4: the root disk must be virtio.
# base.qcow2 is replaced when this directory changes: make overlays anew for each
# run, or back them by the resolved cache path (readlink -f) rather than the link.
#
# Cache: ${VMLAN_CACHE_DIR:-/var/cache/vmlan}/debian-bookworm-HASH/, HASH = first
# 12 hex digits of a sha256 over every file in tests/guest/debian/. Outputs are
# made in a temp dir and renamed into place only when complete. Cache dirs of
# other hashes are removed. $REPO/target/vmlan-guest/debian is made a symlink to
# the cache dir. Downloaded .debs are kept in $VMLAN_CACHE_DIR/debootstrap/.
# When cached, this only refreshes the symlink. VMLAN_GUEST_REBUILD=1 forces a rebuild.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # debootstrap, mkfs.ext4, chroot

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${VMLAN_CACHE_DIR:-/var/cache/vmlan}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
DISK_SIZE=3G
PACKAGES=(
    systemd-sysv udev dbus
    linux-image-amd64 initramfs-tools zstd
    openssh-server sudo
    cloud-init python3-cffi-backend
    ifupdown isc-dhcp-client iproute2 iputils-ping netbase
    locales
)
# (python3-cffi-backend: debootstrap does not resolve virtual packages, and
# cloud-init -> python3-oauthlib -> python3-cryptography needs python3-cffi-backend-api-*.)

# Units a throwaway test VM does not need; masked (a first boot with an empty
# machine-id applies presets, which would re-enable merely disabled units).
MASK=(
    apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
    man-db.timer man-db.service dpkg-db-backup.timer dpkg-db-backup.service
    e2scrub_all.timer e2scrub_all.service e2scrub_reap.service
    fstrim.timer fstrim.service
    getty@tty1.service
)

log() { echo "debian/build.sh: $*" >&2; }
die() { log "$*"; exit 1; }

HASH=$(cd "$HERE" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum |
    sha256sum | cut -c1-12)
NAME="debian-$SUITE-$HASH"
DEST="$CACHE/$NAME"
LINK="$REPO/target/vmlan-guest/debian"

link_dest() {
    mkdir -p "$(dirname "$LINK")"
    ln -sfn "$DEST" "$LINK"
}

is_complete() {
    [[ -f "$DEST/base.qcow2" && -f "$DEST/vmlinuz" && -f "$DEST/initrd.img" ]]
}

# ---- cached? ------------------------------------------------------------------------
if [[ "${VMLAN_GUEST_REBUILD:-0}" != 1 ]] && is_complete; then
    link_dest
    log "cached: $DEST (target/vmlan-guest/debian -> it)"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot); run tests/setup.sh as root"
for tool in debootstrap mkfs.ext4 qemu-img chroot flock sha256sum systemctl; do
    command -v "$tool" >/dev/null || die "$tool missing (run tests/setup.sh)"
done

mkdir -p "$CACHE/debootstrap"
# One build at a time (the lock is released when this script exits).
exec 9>"$CACHE/.lock"
flock 9
if [[ "${VMLAN_GUEST_REBUILD:-0}" != 1 ]] && is_complete; then
    link_dest
    log "cached (built by a concurrent run): $DEST"
    exit 0
fi

# Stale outputs of other hashes and leftovers of interrupted builds (we hold the lock).
for old in "$CACHE"/debian-"$SUITE"-* "$CACHE"/.build-*; do
    [[ -e "$old" && "$old" != "$DEST" ]] || continue
    log "removing stale $old"
    rm -rf "$old"
done

START=$SECONDS
WORK=$(mktemp -d "$CACHE/.build-$HASH.XXXXXX")
ROOT="$WORK/rootfs"
OUT="$WORK/$NAME"
cleanup() {
    # debootstrap unmounts what it mounts, but not when it is interrupted.
    local m
    for m in "$ROOT/proc" "$ROOT/sys"; do
        if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$ROOT" "$OUT"

# ---- rootfs ---------------------------------------------------------------------------
log "debootstrap $SUITE (minbase + ${#PACKAGES[@]} packages) into $ROOT"
include=$(IFS=,; echo "${PACKAGES[*]}")
if ! debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE/debootstrap" \
    "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    [[ -f "$ROOT/debootstrap/debootstrap.log" ]] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi

log "configuring the rootfs"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C "$@"; }

# cloud-init: NoCloud seed (or nothing); Debian's cloud.cfg picks the ENI renderer
# because ifupdown is installed.
cat >"$ROOT/etc/cloud/cloud.cfg.d/99-vmlan.cfg" <<'EOF'
# vmlan test guest: the launcher attaches a NoCloud "cidata" seed disk.
datasource_list: [ NoCloud, None ]
# Faster first boot under TCG: no RSA/DSA host keys (RSA-3072 keygen takes
# seconds there), and no GRUB to configure (the kernel is booted directly).
ssh_genkeytypes: [ ed25519, ecdsa ]
grub_dpkg:
  enabled: false
EOF

# en_US.UTF-8, the locale cloud-init's locale module sets by default.
sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' "$ROOT/etc/locale.gen"
grep -q '^en_US.UTF-8 UTF-8' "$ROOT/etc/locale.gen" || echo 'en_US.UTF-8 UTF-8' >>"$ROOT/etc/locale.gen"
in_root locale-gen >/dev/null
in_root update-locale LANG=en_US.UTF-8

cat >"$ROOT/etc/fstab" <<'EOF'
# The whole virtio disk is one ext4 filesystem (label "root").
/dev/vda  /  ext4  rw,errors=remount-ro  0  1
EOF
echo localhost >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
cat >"$ROOT/etc/network/interfaces" <<'EOF'
# cloud-init writes the NICs' stanzas to interfaces.d/50-cloud-init.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF
mkdir -p "$ROOT/etc/network/interfaces.d"
# debootstrap copied the build host's resolv.conf; the guest's comes from dhclient.
: >"$ROOT/etc/resolv.conf"

# One identity per instance: systemd makes a machine-id, cloud-init makes ssh host keys.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT"/etc/ssh/ssh_host_*
in_root passwd --lock root >/dev/null

# Fewer units at boot (TCG is slow).
for unit in "${MASK[@]}"; do
    file=${unit/@*./@.}   # an instance (getty@tty1.service) comes from its template (getty@.service)
    if [[ -e "$ROOT/lib/systemd/system/$file" || -e "$ROOT/usr/lib/systemd/system/$file" ]]; then
        systemctl --root="$ROOT" --quiet mask "$unit"
    fi
done

# Drivers a test VM on q35 does not need (each costs boot time under TCG).
cat >"$ROOT/etc/modprobe.d/vmlan-test-vm.conf" <<'EOF'
# vmlan test guest: no display, parallel port, speaker, watchdog or nested KVM.
blacklist bochs
blacklist parport_pc
blacklist ppdev
blacklist pcspkr
blacklist iTCO_wdt
blacklist kvm_amd
blacklist kvm_intel
blacklist powernow_k8
EOF

# A small initramfs: only what mounts the root disk (a 30 MB MODULES=most one
# takes ~10 s more to unpack and probe under TCG).
sed -i 's/^MODULES=.*/MODULES=list/' "$ROOT/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk virtio_scsi sd_mod ext4 >>"$ROOT/etc/initramfs-tools/modules"
in_root update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 ||
    { cat "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }

# The initramfs must load the root disk's drivers itself.
kver=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
[[ -n "$kver" && -f "$ROOT/boot/initrd.img-$kver" ]] || die "no kernel/initrd in $ROOT/boot"
in_root lsinitramfs "/boot/initrd.img-$kver" >"$WORK/initrd.list"
for mod in virtio_pci virtio_blk ext4; do
    grep -q "/$mod\.ko" "$WORK/initrd.list" || grep -q "/$mod\.ko" "$ROOT/lib/modules/$kver/modules.builtin" ||
        die "initrd.img-$kver lacks $mod"
done
cp "$ROOT/boot/vmlinuz-$kver" "$OUT/vmlinuz"
cp "$ROOT/boot/initrd.img-$kver" "$OUT/initrd.img"
chmod 0644 "$OUT/vmlinuz" "$OUT/initrd.img"

# Size: no package lists, caches or logs of the build.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old "$ROOT"/tmp/* "$ROOT"/var/tmp/*
mkdir -p "$ROOT/var/lib/apt/lists/partial"
find "$ROOT/var/log" -type f -exec truncate -s 0 {} +

# ---- disk image -----------------------------------------------------------------------
log "mkfs.ext4 -d (sparse $DISK_SIZE) and qemu-img convert (zstd-compressed qcow2)"
truncate -s "$DISK_SIZE" "$WORK/root.raw"
mkfs.ext4 -q -F -L root -d "$ROOT" "$WORK/root.raw"
# zstd-compressed clusters: ~240 MB instead of ~720 MB; QEMU decompresses on
# the host, so boot time under TCG is the same (measured).
qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$WORK/root.raw" "$OUT/base.qcow2"
rm -f "$WORK/root.raw"

# ---- into place -----------------------------------------------------------------------
if [[ -e "$DEST" ]]; then
    mv "$DEST" "$WORK/replaced"
fi
mv "$OUT" "$DEST"
link_dest
log "built $DEST in $((SECONDS - START)) s: kernel $kver, base.qcow2 $(du -h "$DEST/base.qcow2" | cut -f1)" \
    "(target/vmlan-guest/debian -> it)"
