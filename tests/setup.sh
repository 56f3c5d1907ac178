#!/bin/bash
# Installs what vmlan's test suite needs on a Debian bookworm machine (as root)
# and builds the QEMU test guests: the tiny busybox one (tests/guest/build.sh) and
# a Debian bookworm cloud image (tests/guest/debian/build.sh, cached in /var/cache/vmlan):
#   - QEMU 10 (qemu-system-x86 and qemu-utils for qemu-img, from bookworm-backports) + ipxe-qemu (NIC ROMs)
#   - busybox-static, cpio (guest initramfs), bind9-dnsutils (dig), iproute2, iputils-ping
#   - curl, bzip2, make, gcc, libc6-dev: tests/guest/udhcpc6.sh builds busybox's udhcpc6
#     (not in Debian's busybox) from Debian's busybox source for the guest
#   - dnsmasq-base (the binary only, no system service: the e2e DNS tests' upstream)
#   - isc-dhcp-client, dhcpcd-base, kea-admin (perfdhcp): real DHCP clients for the tests
#   - dnsperf: a real DNS load client (a burst from one socket, tests/e2e_dns.rs)
#   - ndisc6 (rdisc6): reads the hub's IPv6 router advertisements (tests/e2e_ipv6.rs)
#   - tcpdump (captures the DHCPACKs of tests/e2e_faults.rs), python3 (tests/tools/: raw-frame floods, pcap parsing)
#   - openvswitch-switch (its service never started) and ethtool: tests/e2e_vxlan_ovs.rs, see below
#   - debootstrap, e2fsprogs (mkfs.ext4 -d): the Debian guest image; openssh-client (ssh into it)
#   - g++: libfuzzer-sys compiles libFuzzer (C++) for the fuzz targets of fuzz/
#   - cargo-nextest (the test runner), from crates.io if missing
#   - schemathesis (PyPI, pinned, in a venv under /var/cache/vmlan) and socat: tests/e2e_schemathesis.rs
#   - cargo-fuzz (tests/fuzz.rs runs the fuzz targets of fuzz/ with it), from
#     crates.io unless this version is installed
# Idempotent: apt is skipped entirely when everything is already installed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources
PKGS=(ipxe-qemu busybox-static cpio bind9-dnsutils iproute2 iputils-ping isc-dhcp-client dhcpcd-base dnsmasq-base kea-admin dnsperf ndisc6 tcpdump python3 util-linux debootstrap e2fsprogs openssh-client g++ curl bzip2 make gcc libc6-dev)

have_pkg() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

qemu_ok() {
    command -v qemu-system-x86_64 >/dev/null || return 1
    local major
    major=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p')
    [[ -n "$major" && "$major" -ge 10 ]]
}

need_apt=0
qemu_ok || need_apt=1
for p in "${PKGS[@]}"; do
    have_pkg "$p" || need_apt=1
done
for c in qemu-img cpio dig ip ping dhclient dhcpcd dnsmasq perfdhcp dnsperf rdisc6 tcpdump python3 debootstrap mkfs.ext4 ssh ssh-keygen g++ curl bzip2 make gcc; do
    command -v "$c" >/dev/null || need_apt=1
done

if [[ $need_apt == 1 ]]; then
    if [[ $(id -u) != 0 ]]; then
        echo "setup.sh: packages missing and not root; run as root" >&2
        exit 1
    fi
    if [[ ! -f "$BACKPORTS" ]] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        cat > "$BACKPORTS" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils
    apt-get install -y -q --no-install-recommends "${PKGS[@]}"
    qemu_ok || { echo "setup.sh: qemu-system-x86_64 >= 10 still missing" >&2; exit 1; }
fi

# Open vSwitch and ethtool for tests/e2e_vxlan_ovs.rs, which starts its own ovsdb-server
# and ovs-vswitchd (userspace datapath) in a namespace: the package's service must not
# run on the machine, so a policy-rc.d that refuses every start is in place during the
# install (unless one already is), and where systemd runs the units are disabled and stopped.
if ! have_pkg openvswitch-switch || ! command -v ethtool >/dev/null; then
    if [[ $(id -u) != 0 ]]; then
        echo "setup.sh: openvswitch-switch/ethtool missing and not root; run as root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    POLICY=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY" && own_policy=1
    fi
    rc=0
    apt-get install -y -q --no-install-recommends openvswitch-switch ethtool ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends openvswitch-switch ethtool; } || rc=$?
    ((own_policy)) && rm -f "$POLICY"
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now openvswitch-switch.service ovs-vswitchd.service ovsdb-server.service >/dev/null 2>&1 || true
    fi
    ((rc == 0)) || { echo "setup.sh: installing openvswitch-switch ethtool failed" >&2; exit 1; }
fi

# The test runner (its summary counts every test run); a new machine has it.
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

# libFuzzer through cargo-fuzz: with --sanitizer none it needs no nightly toolchain.
CARGO_FUZZ_VERSION=0.13.2
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# schemathesis (PyPI, an exact version) for tests/e2e_schemathesis.rs, in a venv of
# Debian's python3 cached under /var/cache/vmlan (a stamp marks a finished install), and
# socat, which bridges the hub's --api unix socket to TCP for it.
SCHEMATHESIS_VERSION=4.32.5
ST_VENV=/var/cache/vmlan/schemathesis-$SCHEMATHESIS_VERSION
if ! have_pkg python3-venv || ! command -v socat >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends python3-venv socat ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends python3-venv socat; }
fi
if [[ ! -f $ST_VENV/.installed ]]; then
    rm -rf "$ST_VENV"
    mkdir -p /var/cache/vmlan
    /usr/bin/python3 -m venv "$ST_VENV"
    "$ST_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    "$ST_VENV/bin/schemathesis" --version | grep -q "$SCHEMATHESIS_VERSION"
    touch "$ST_VENV/.installed"
fi

"$HERE/guest/build.sh"
"$HERE/guest/debian/build.sh"
