# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run). measure_copy needs ROOT, WORK,
# VMLAN (the binary), VMLAN_STATE (ok when it built) and SERVERS set; the result
# helpers below (field, median_of, fps_of, cpu_per_frame, ratio) need RES, an
# associative array of CFG/SIZE -> "frames=... fps=... cpu_ns=..." lines; stop and
# wait_files stand alone; apt_install_quietly and median need only `log`.

# apt_install_quietly PKG...: installs the packages, refusing every service start
# while it does (a policy-rc.d that exits 101, unless one is there already), so a
# package with a daemon (kea-dhcp4-server, kea-dhcp6-server) never starts it on
# this machine; runs `apt-get update` once if the first try fails.
apt_install_quietly() {
    log "installing $*"
    local added_policy=0
    export DEBIAN_FRONTEND=noninteractive
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get install -y "$@" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$@" >/dev/null; }
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
    return 0
}

# median N...: the median of numbers (the lower one for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }

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

# field NAME LINE: the value of NAME=... in a result line.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# median_of LINES...: sets LINE to the line with the median delivered fps (the lower
# median for an even count).
median_of() {
    # shellcheck disable=SC2034 # LINE is the caller's result
    LINE=$(printf '%s\n' "$@" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^fps=/) print substr($i, 5), $0 }' |
        sort -g | cut -d' ' -f2- | awk -v n="$#" '{ l[NR] = $0 } END { print l[int((n + 1) / 2)] }')
}

# fps_of CFG/SIZE: the delivered frames/s of a result, or nothing.
fps_of() {
    local l=${RES[$1]:-}
    [[ $l == frames=* ]] && field fps "$l"
}

# cpu_per_frame CFG/SIZE: the switch's CPU ns per delivered frame, or nothing.
cpu_per_frame() {
    local l=${RES[$1]:-}
    [[ $l == frames=* ]] || return 0
    awk -v c="$(field cpu_ns "$l")" -v f="$(field frames "$l")" 'BEGIN { if (f > 0 && c > 0) printf "%.0f", c / f }'
}

# ratio OF A B: OF(A) / OF(B) as "1.23x" (OF: fps_of or cpu_per_frame), or n/a.
ratio() {
    local a b
    a=$("$1" "$2") || true
    b=$("$1" "$3") || true
    if [[ -n $a && -n $b && $b != 0 ]]; then
        awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }'
    else
        echo "n/a"
    fi
}

# Stops the given background processes (their `timeout` wrappers pass SIGTERM on).
stop() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# Waits until every given file exists; fails after 15 s.
wait_files() {
    local f t=0
    for f in "$@"; do
        while [[ ! -e $f ]]; do
            ((t++ < 1500)) || { log "timed out waiting for $f"; return 1; }
            sleep 0.01
        done
    done
}
