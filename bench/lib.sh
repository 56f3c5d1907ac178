# shellcheck shell=bash
# Shared by bench/dhcp.sh and bench/dns.sh (sourced, not run). Needs ROOT, WORK,
# VMLAN (the binary), VMLAN_STATE (ok when it built) and SERVERS set.

# measure_copy: names the measured binary in VMLAN_VERSION (commit, and "+changes"
# when the tree outside bench/ differs from it; or VMLAN_BIN as given) and, when
# vmlan is among SERVERS, points VMLAN at a copy in WORK, so that a rebuild of
# target/release/vmlan during the run changes nothing.
measure_copy() {
    if [[ -n ${VMLAN_BIN:-} ]]; then
        VMLAN_VERSION="vmlan ($VMLAN_BIN)"
    else
        VMLAN_VERSION="vmlan $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
        git -C "$ROOT" diff --quiet -- . ':!bench' 2>/dev/null || VMLAN_VERSION+=+changes
    fi
    if [[ $VMLAN_STATE == ok && " $SERVERS " == *" vmlan "* ]]; then
        cp "$VMLAN" "$WORK/vmlan"
        VMLAN=$WORK/vmlan
    fi
}
