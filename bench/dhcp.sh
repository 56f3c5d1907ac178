#!/usr/bin/env bash
# DHCP benchmark: the highest rate of DHCPv4 4-way exchanges (DISCOVER/OFFER/REQUEST/ACK)
# per second that a server sustains with ZERO drops, for `vmlan hub`, Kea (kea-dhcp4) and
# dnsmasq, each persisting its leases to a file on disk, measured with ISC's perfdhcp on
# the same network path in one run; once with an empty lease table and once with
# FILL (50,000) leases already in the table (a /16 pool of 65,279 addresses).
#
# Setup: three network namespaces made by this script (nothing leaves them):
#   $NS-cli  veth c0, 10.0.0.2/16: perfdhcp, acting as a DHCP relay agent (it is given
#            a unicast server address, so it sets giaddr=10.0.0.2 and sends from and
#            receives on UDP port 67: plain UDP sockets, no raw sockets)
#   $NS-sw   Linux bridge br0 joining: c0p (peer of c0), s0p (peer of s0) and tap vt0;
#            `vmlan hub --tap vt0` runs here (it is 10.0.0.1 on the segment, MAC
#            02:76:6d:00:00:01, answering ARP and DHCP itself)
#   $NS-srv  veth s0, 10.0.0.1/16: kea-dhcp4 or dnsmasq, bound to s0
# Path: perfdhcp -> c0 -> br0 -> vt0 -> vmlan, or perfdhcp -> c0 -> br0 -> s0 -> Kea or
# dnsmasq: one bridge hop and one more interface each. Only one server runs at a time;
# s0p is set down while vmlan runs (so 10.0.0.1 is vmlan's alone) and the client's ARP
# cache is flushed before every step. Replies go to the relay, giaddr 10.0.0.2:67 (vmlan
# sends them to the frame's source MAC, the relay's).
#
# The servers, all with a 1 h lease time and the pool 10.0.1.0 - 10.0.255.254 of 10.0.0.0/16:
#   vmlan    vmlan hub --addr 10.0.0.1/16 --tap vt0 --dhcp-range 10.0.1.0,10.0.255.254
#            --leasefile FILE   (log to a file: one info line per lease)
#   kea      kea-dhcp4 -c kea.json: memfile lease database, persist true (CSV appended on
#            every change), lfc-interval 0 (no cleanup during a step), UDP sockets on s0,
#            log severity INFO to a file (one line per lease), multi-threading as Kea's
#            default (off in Kea 2.2; KEA_MT=1 turns it on with 2 threads)
#   dnsmasq  dnsmasq --port=0 --interface=s0 --bind-interfaces --no-ping
#            --dhcp-range=10.0.1.0,10.0.255.254,255.255.0.0,1h --dhcp-leasefile=FILE
#            --dhcp-lease-max=100000 (log to a file: its default lines per message).
#            --no-ping: without it dnsmasq pings each address before offering it and
#            waits up to 3 s, which measures the ping timeout and not the server; Kea
#            and vmlan do not ping either.
# Lease files live in WORKDIR (default under /var/tmp, on disk, not tmpfs), so every
# server pays for its own way of persisting: Kea appends one CSV line per change (no
# fsync); dnsmasq rewrites its whole file (and fsyncs it) after changes; vmlan as its
# README says (at this writing: one journal line per change, fsynced at most once a
# second, the whole file rewritten only when the journal outgrows the table; before
# that: the whole file rewritten, fsynced and renamed on every change).
#
# One step = a fresh server with a fresh lease file (empty, or the FILL leases written in
# its own format before it starts: MACs 02:fe:00:xx:xx:xx on FILL addresses of the pool
# drawn at random with a fixed seed, the same for every server, expiring in 1 day; writing
# them is what filling through each server would leave, in seconds instead of the hours
# dnsmasq would need at ~20 leases/s), a readiness probe (exchanges by another MAC until
# one completes), then `perfdhcp -r RATE -p PERIOD -R CLIENTS -W 1000000`: CLIENTS
# different MACs (00:0c:01:02:03:04 counting up; perfdhcp takes them in turn, so with RATE*PERIOD above
# CLIENTS the later exchanges are a DORA by a client that already holds a lease), a reply
# later than 1 s (perfdhcp's default drop time) is a drop, and replies still in flight
# when the period ends are waited for 1 s. A step passes when both exchanges had 0 drops
# and all RATE*PERIOD exchanges were started (perfdhcp itself kept up). The search per
# server: START_RATE, doubled while steps pass (up to MAX_RATE), then bisected between
# the last pass and the first failure until they are within PRECISION percent. Every
# (server, table) search runs REPEAT times, interleaved round by round (the machine is
# shared and noisy); the table shows the median of the rounds' highest passing rates.
#
# Run as root (it creates namespaces; installs kea-dhcp4-server, kea-admin (perfdhcp)
# and dnsmasq-base with apt-get if missing), from anywhere:
#   bench/dhcp.sh
#   REPEAT=1 PERIOD=3 SERVERS='kea vmlan' TABLES=empty bench/dhcp.sh
# Env: REPEAT (rounds, default 3), PERIOD (seconds of load per step, default 5), CLIENTS
# (perfdhcp -R, default 15000: 50,000 + 15,000 fit the pool), FILL (leases in the full
# table, default 50000), START_RATE (default 200), MAX_RATE (default 32000), PRECISION
# (percent, default 10), SERVERS (subset of: kea dnsmasq vmlan), TABLES (subset of: empty
# full), FILL_LAYOUT (random, or contiguous: see gen_fill_index), KEA_MT (1: Kea
# multi-threaded), PROBE_LIMIT (seconds a server may take to answer, default 120),
# VMLAN_BIN (default target/release/vmlan, built here), WORKDIR (parent of the work
# directory, default /var/tmp), KEEP=1 (keep the work directory: every step's server log
# and perfdhcp output).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPEAT=${REPEAT:-3}
PERIOD=${PERIOD:-5}
CLIENTS=${CLIENTS:-15000}
FILL=${FILL:-50000}
START_RATE=${START_RATE:-200}
MAX_RATE=${MAX_RATE:-32000}
PRECISION=${PRECISION:-10}
SERVERS=${SERVERS:-kea dnsmasq vmlan}
TABLES=${TABLES:-empty full}
KEA_MT=${KEA_MT:-0}
FILL_LAYOUT=${FILL_LAYOUT:-random}
WORKDIR=${WORKDIR:-/var/tmp}
PROBE_LIMIT=${PROBE_LIMIT:-120}
KEEP=${KEEP:-0}
NS=vmlanb$$
CLI=$NS-cli SW=$NS-sw SRV=$NS-srv
SERVER_IP=10.0.0.1 RELAY_IP=10.0.0.2
POOL_START=10.0.1.0 POOL_END=10.0.255.254
POOL_SIZE=65279
export PATH=$PATH:/usr/sbin:/sbin

log() { echo "dhcp.sh: $*" >&2; }

if [[ $(id -u) != 0 ]]; then
    log "must run as root (network namespaces, taps, apt-get)"
    exit 1
fi
if ((FILL + CLIENTS + 1 > POOL_SIZE)); then
    log "FILL + CLIENTS + 1 must fit the pool ($POOL_SIZE addresses)"
    exit 2
fi

# ---- what it needs ----------------------------------------------------------
need=()
command -v kea-dhcp4 >/dev/null || need+=(kea-dhcp4-server)
command -v perfdhcp >/dev/null || need+=(kea-admin)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v ip >/dev/null || need+=(iproute2)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
((${#need[@]})) && apt_install_quietly "${need[@]}"

cd "$ROOT"
VMLAN=${VMLAN_BIN:-$ROOT/target/release/vmlan}
VMLAN_STATE=ok
if [[ " $SERVERS " == *" vmlan "* ]]; then
    if [[ -z ${VMLAN_BIN:-} ]] && ! cargo build --release -p vmlan; then
        VMLAN_STATE="vmlan: build failed"
    elif ! "$VMLAN" hub --help 2>/dev/null | grep -q -- --tap; then
        VMLAN_STATE="vmlan: no --tap"
    fi
fi

# ---- namespaces and processes ------------------------------------------------
WORK=$(mktemp -d "$WORKDIR/vmlan-dhcp.XXXXXX")
PIDS=()
cleanup() {
    local p n
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for n in "$CLI" "$SW" "$SRV"; do
        # Anything left in our own namespaces is ours.
        for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Measure a copy: others may rebuild target/release/vmlan while this runs.
measure_copy

for n in "$CLI" "$SW" "$SRV"; do
    ip netns add "$n"
    ip -n "$n" link set lo up
done
ip -n "$SW" link add br0 type bridge forward_delay 0 stp_state 0
ip -n "$SW" link set br0 up
ip -n "$SW" link add c0p type veth peer name c0 netns "$CLI"
ip -n "$SW" link add s0p type veth peer name s0 netns "$SRV"
ip -n "$SW" link set c0p master br0 up
ip -n "$SW" link set s0p master br0 up
ip -n "$CLI" addr add "$RELAY_IP/16" dev c0
ip -n "$CLI" link set c0 up
ip -n "$SRV" addr add "$SERVER_IP/16" dev s0
ip -n "$SRV" link set s0 up
ip -n "$SW" tuntap add dev vt0 mode tap
ip -n "$SW" link set vt0 master br0 up

# ---- lease files --------------------------------------------------------------
# The FILL leases: client i (MAC 02:fe:00:xx:xx:xx) holds pool address number idx(i),
# expiring in 1 day. FILL_LAYOUT=random (default): the addresses are a random sample of the
# pool (fixed seed), the layout a server's own allocations leave (dnsmasq hashes the MAC);
# contiguous: the first FILL addresses of the pool, which favours servers that hand out
# addresses in order and makes dnsmasq, which starts at the MAC's hash and walks to the
# next free address testing each with a scan of its lease list, take seconds per DISCOVER.
EXPIRY=$(($(date +%s) + 86400))
gen_fill_index() {
    awk -v n="$FILL" -v p="$POOL_SIZE" -v layout="$FILL_LAYOUT" 'BEGIN {
        srand(4)
        for (j = 0; j < p; j++) a[j] = j
        for (i = 0; i < n; i++) {
            if (layout == "random") { k = i + int(rand() * (p - i)); t = a[i]; a[i] = a[k]; a[k] = t }
            print a[i]
        }
    }' >"$WORK/fill.idx"
}
# dnsmasq's format, read by both dnsmasq and vmlan.
gen_dnsmasq_fill() {
    awk -v expiry="$EXPIRY" '{
        i = NR - 1
        mac = sprintf("02:fe:00:%02x:%02x:%02x", int(i / 65536) % 256, int(i / 256) % 256, i % 256)
        printf "%d %s 10.0.%d.%d * 01:%s\n", expiry, mac, 1 + int($1 / 256), $1 % 256, mac
    }' "$WORK/fill.idx" >"$WORK/fill.dnsmasq"
}
# Kea's memfile CSV, with the columns of the header this Kea writes itself (learnt from
# an empty run).
gen_kea_fill() {
    awk -v expiry="$EXPIRY" -v header="$1" '
        BEGIN { print header; nc = split(header, cols, ",") }
        {
            i = NR - 1
            mac = sprintf("02:fe:00:%02x:%02x:%02x", int(i / 65536) % 256, int(i / 256) % 256, i % 256)
            v["address"] = sprintf("10.0.%d.%d", 1 + int($1 / 256), $1 % 256)
            v["hwaddr"] = mac; v["client_id"] = "01:" mac; v["valid_lifetime"] = 86400
            v["expire"] = expiry; v["subnet_id"] = 1; v["fqdn_fwd"] = 0; v["fqdn_rev"] = 0
            v["hostname"] = ""; v["state"] = 0; v["user_context"] = ""; v["pool_id"] = 0
            line = ""
            for (c = 1; c <= nc; c++) line = line (c > 1 ? "," : "") ((cols[c] in v) ? v[cols[c]] : "")
            print line
        }' "$WORK/fill.idx" >"$WORK/fill.kea"
}

kea_config() {
    local d=$1 mt=
    if [[ $KEA_MT == 1 ]]; then
        mt='"multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },'
    else
        mt='"multi-threading": { "enable-multi-threading": false },'
    fi
    cat >"$d/kea.json" <<EOF
{ "Dhcp4": {
  $mt
  "interfaces-config": { "interfaces": [ "s0" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$d/leases.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "subnet4": [ { "id": 1, "subnet": "10.0.0.0/16", "pools": [ { "pool": "$POOL_START - $POOL_END" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$d/server.log" } ], "severity": "INFO" } ]
} }
EOF
}

# ---- one step -------------------------------------------------------------------
SRV_PID=
# start_server KIND TABLE DIR: starts the server with a fresh lease file; sets SRV_PID.
start_server() {
    local kind=$1 table=$2 d=$3
    local limit=$((PROBE_LIMIT + PERIOD + 60))
    ip -n "$CLI" neigh flush all
    case $kind in
    vmlan)
        ip -n "$SW" link set s0p down
        if [[ $table == full ]]; then cp "$WORK/fill.dnsmasq" "$d/leases"; else : >"$d/leases"; fi
        timeout -k 2 "$limit" ip netns exec "$SW" "$VMLAN" hub --addr "$SERVER_IP/16" --tap vt0 \
            --dhcp-range "$POOL_START,$POOL_END" --leasefile "$d/leases" >"$d/server.log" 2>&1 &
        ;;
    kea)
        ip -n "$SW" link set s0p up
        kea_config "$d"
        if [[ $table == full ]]; then cp "$WORK/fill.kea" "$d/leases.csv"; fi
        KEA_LOCKFILE_DIR=$d KEA_PIDFILE_DIR=$d timeout -k 2 "$limit" ip netns exec "$SRV" \
            kea-dhcp4 -c "$d/kea.json" >"$d/server.out" 2>&1 &
        ;;
    dnsmasq)
        ip -n "$SW" link set s0p up
        if [[ $table == full ]]; then cp "$WORK/fill.dnsmasq" "$d/leases"; else : >"$d/leases"; fi
        timeout -k 2 "$limit" ip netns exec "$SRV" dnsmasq --no-daemon --conf-file=/dev/null --port=0 \
            --interface=s0 --bind-interfaces --no-ping \
            --dhcp-range="$POOL_START,$POOL_END,255.255.0.0,1h" --dhcp-leasefile="$d/leases" \
            --dhcp-lease-max=100000 --user=root --group=root --pid-file="$d/dnsmasq.pid" \
            --log-facility="$d/server.log" >"$d/server.out" 2>&1 &
        ;;
    esac
    SRV_PID=$!
    PIDS+=("$SRV_PID")
}

# probe DIR: a few exchanges by a MAC outside the benchmark's clients until one completes;
# gives up after PROBE_LIMIT seconds (dnsmasq takes about 15 s to load 50,000 leases).
probe() {
    local d=$1 got end=$((SECONDS + PROBE_LIMIT))
    while ((SECONDS < end)); do
        kill -0 "$SRV_PID" 2>/dev/null || return 1
        # (perfdhcp -n 1 always reports its only exchange as dropped: it exits at once.)
        timeout -k 1 8 ip netns exec "$CLI" perfdhcp -4 -l "$RELAY_IP" -r 5 -n 3 -d 1 -W 1000000 \
            -b mac=02:fd:00:00:00:01 "$SERVER_IP" >"$d/probe.out" 2>&1 || true
        got=$(pd_stat "$d/probe.out" REQUEST-ACK "received packets")
        if ((${got:-0} > 0)); then
            return 0
        fi
        sleep 1
    done
    return 1
}

# pd_stat FILE SECTION FIELD: a number from perfdhcp's report (SECTION: DISCOVER-OFFER
# or REQUEST-ACK; FIELD e.g. "drops", "sent packets", "avg delay").
pd_stat() {
    awk -v sec="$2" -v f="$3" '
        /^\*\*\*Statistics for: / { in_sec = index($0, sec) > 0; next }
        in_sec && index($0, f ": ") == 1 { v = substr($0, length(f) + 3); sub(/ .*/, "", v); print v; exit }' "$1"
}

# rcvbuf_errors: UDP datagrams the client's namespace dropped for a full socket receive
# buffer (perfdhcp's socket, 208 KiB by default): where replies sent in a burst after a
# server stall are lost.
rcvbuf_errors() {
    ip netns exec "$CLI" cat /proc/net/snmp | awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }'
}

STEP=0
STEP_LINE=
# step KIND TABLE RATE: one measurement; returns 0 if it passed. Sets STEP_LINE.
step() {
    local kind=$1 table=$2 rate=$3
    local d rc=0 pdpid want do_drops ra_drops do_sent ra_recv note='' rb0
    STEP=$((STEP + 1))
    d=$WORK/step$STEP-$kind-$table-$rate
    mkdir -p "$d"
    start_server "$kind" "$table" "$d"
    if ! probe "$d"; then
        STEP_LINE="rate=$rate pass=0 note=server-not-ready"
        log "$kind/$table: server not ready: $(cat "$d/server.out" 2>/dev/null; tail -n 3 "$d/server.log" 2>/dev/null | tr '\n' ' ')"
        stop "$SRV_PID"
        PIDS=()
        return 1
    fi
    rb0=$(rcvbuf_errors)
    timeout -k 2 $((PERIOD + 30)) ip netns exec "$CLI" perfdhcp -4 -l "$RELAY_IP" -r "$rate" -p "$PERIOD" \
        -R "$CLIENTS" -W 1000000 "$SERVER_IP" >"$d/perfdhcp.out" 2>&1 &
    pdpid=$!
    PIDS+=("$pdpid")
    wait "$pdpid" || rc=$?
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
        note=server-exited
        log "$kind/$table at $rate/s: the server EXITED during the step; its log ends:"
        tail -n 5 "$d/server.log" "$d/server.out" 2>/dev/null >&2 || true
    fi
    stop "$SRV_PID"
    PIDS=()
    if grep -Eqi 'panic|ERROR' "$d/server.log" 2>/dev/null; then
        log "$kind/$table at $rate/s: errors in the server log: $(grep -Ei 'panic|ERROR' "$d/server.log" | head -3 | tr '\n' ' ')"
        note=${note:+$note,}log-errors
    fi
    do_drops=$(pd_stat "$d/perfdhcp.out" DISCOVER-OFFER drops)
    ra_drops=$(pd_stat "$d/perfdhcp.out" REQUEST-ACK drops)
    do_sent=$(pd_stat "$d/perfdhcp.out" DISCOVER-OFFER "sent packets")
    ra_recv=$(pd_stat "$d/perfdhcp.out" REQUEST-ACK "received packets")
    # perfdhcp -r R -p P starts R*P - 1 exchanges.
    want=$((rate * PERIOD - 1))
    local pass=0
    if [[ -z $do_drops || -z $ra_drops ]]; then
        note=${note:+$note,}no-report
        log "$kind/$table at $rate/s: perfdhcp (exit $rc) gave no report: $(tail -n 3 "$d/perfdhcp.out" | tr '\n' ' ')"
    elif ((do_drops == 0 && ra_drops == 0 && do_sent * 100 >= want * 97)) && [[ -z $note ]]; then
        pass=1
    elif ((do_sent * 100 < want * 97)); then
        note=${note:+$note,}client-limited
    fi
    STEP_LINE="rate=$rate pass=$pass done=${ra_recv:-0} drops=${do_drops:-?}/${ra_drops:-?} sent=${do_sent:-0}"
    STEP_LINE+=" delay_ms=$(pd_stat "$d/perfdhcp.out" DISCOVER-OFFER "avg delay")/$(pd_stat "$d/perfdhcp.out" REQUEST-ACK "avg delay")"
    STEP_LINE+=" max_ms=$(pd_stat "$d/perfdhcp.out" DISCOVER-OFFER "max delay")/$(pd_stat "$d/perfdhcp.out" REQUEST-ACK "max delay")"
    STEP_LINE+=" client_rcvbuf_drops=$(($(rcvbuf_errors) - rb0))"
    STEP_LINE+=" leases=$(lease_count "$kind" "$d")${note:+ note=$note}"
    log "$kind/$table r=$rate: $STEP_LINE"
    [[ $KEEP == 1 ]] || [[ -n $note && $note != client-limited ]] || rm -rf "$d"
    ((pass))
}

# lease_count KIND DIR: leases on disk after the step (Kea: distinct addresses in its CSV;
# vmlan: `vmlan leases` over its file and journal, where it has that command).
lease_count() {
    case $1 in
    kea) tail -n +2 "$2/leases.csv" 2>/dev/null | cut -d, -f1 | sort -u | wc -l ;;
    vmlan)
        if "$VMLAN" leases --help >/dev/null 2>&1; then
            "$VMLAN" leases --leasefile "$2/leases" 2>/dev/null | tail -n +2 | wc -l
        else
            grep -c . "$2/leases" 2>/dev/null || echo 0
        fi
        ;;
    *) grep -c . "$2/leases" 2>/dev/null || echo 0 ;;
    esac
}

# search KIND TABLE: the highest passing rate; sets BEST (0 if none) and BEST_LINE.
BEST=0
BEST_LINE=
search() {
    local kind=$1 table=$2 good=0 bad=0 r=$START_RATE mid
    BEST_LINE=
    while :; do
        if step "$kind" "$table" "$r"; then
            good=$r BEST_LINE=$STEP_LINE
            ((r < MAX_RATE)) || break
            r=$((r * 2 > MAX_RATE ? MAX_RATE : r * 2))
        else
            bad=$r
            break
        fi
    done
    while ((bad > 0 && (bad - good) * 100 > PRECISION * (good > 0 ? good : 1) && bad - good > 1)); do
        mid=$(((good + bad) / 2))
        if step "$kind" "$table" "$mid"; then
            good=$mid BEST_LINE=$STEP_LINE
        else
            bad=$mid
        fi
        # No rate passes at all: stop at 5/s.
        ((good > 0 || bad > 5)) || break
    done
    BEST=$good
}

# ---- the fill files ----------------------------------------------------------------
if [[ " $TABLES " == *" full "* ]]; then
    gen_fill_index
    gen_dnsmasq_fill
    if [[ " $SERVERS " == *" kea "* ]]; then
        # Let this Kea write an empty lease file to learn its CSV header.
        d=$WORK/kea-header
        mkdir -p "$d"
        start_server kea empty "$d"
        probe "$d" || { log "kea does not answer: $(tail -n 3 "$d/server.out" "$d/server.log" | tr '\n' ' ')"; exit 1; }
        stop "$SRV_PID"
        PIDS=()
        gen_kea_fill "$(head -1 "$d/leases.csv")"
        log "kea lease file header: $(head -1 "$d/leases.csv")"
    fi
fi

# ---- rounds ---------------------------------------------------------------------------
declare -A RATES LINES
for ((round = 1; round <= REPEAT; round++)); do
    for table in $TABLES; do
        for kind in $SERVERS; do
            [[ $kind == vmlan && $VMLAN_STATE != ok ]] && continue
            search "$kind" "$table"
            log "round $round: $kind, $table table: highest zero-drop rate $BEST/s ($BEST_LINE)"
            RATES[$kind/$table]+="$BEST "
            LINES[$kind/$table/$BEST]=$BEST_LINE
        done
    done
done

# ---- report ------------------------------------------------------------------------------
declare -A MED
version() {
    case $1 in
    vmlan) echo "$VMLAN_VERSION" ;;
    kea) echo "Kea $(kea-dhcp4 -v 2>/dev/null)$([[ $KEA_MT == 1 ]] && echo ', multi-threaded')" ;;
    dnsmasq) dnsmasq --version | sed -n '1s/^Dnsmasq version \([^ ]*\).*/dnsmasq \1/p' ;;
    esac
}

echo
echo "DHCP benchmark, $(nproc) CPUs, $(uname -r); perfdhcp $(perfdhcp -v 2>&1 | head -1); $REPEAT round(s), median shown"
echo "Highest rate of 4-way exchanges/s with zero drops (DISCOVER-OFFER and REQUEST-ACK), ${PERIOD} s per step,"
echo "$CLIENTS clients; table 'full' = $FILL leases before the step; lease files on $(df -PT "$WORK" | awk 'NR == 2 { print $2 }')"
echo
printf '%-34s %-6s %11s  %-22s %-14s %s\n' server table "exch/s" "rounds" "delay ms DO/RA" "leases after"
for table in $TABLES; do
    for kind in $SERVERS; do
        if [[ $kind == vmlan && $VMLAN_STATE != ok ]]; then
            printf '%-34s %-6s %s\n' vmlan "$table" "$VMLAN_STATE"
            continue
        fi
        read -ra rs <<<"${RATES[$kind/$table]}"
        m=$(median "${rs[@]}")
        MED[$kind/$table]=$m
        l=${LINES[$kind/$table/$m]:-}
        printf '%-34s %-6s %11s  %-22s %-14s %s\n' "$(version "$kind")" "$table" "$m" "${rs[*]}" \
            "$(field delay_ms "$l")" "$(field leases "$l")"
    done
done
ratio() {
    local a=${MED[$1]:-} b=${MED[$2]:-}
    if [[ -n $a && -n $b && $b != 0 ]]; then awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }'; else echo n/a; fi
}
echo
echo "Ratios (goal: vmlan >= 1.5x Kea with leases persisted, and unchanged with $FILL leases):"
for table in $TABLES; do
    echo "  $table table: vmlan/kea $(ratio vmlan/"$table" kea/"$table"), vmlan/dnsmasq $(ratio vmlan/"$table" dnsmasq/"$table")"
done
if [[ " $TABLES " == *" empty "* && " $TABLES " == *" full "* ]]; then
    for kind in $SERVERS; do echo "  $kind full/empty: $(ratio "$kind"/full "$kind"/empty)"; done
fi
echo
echo "Command: REPEAT=$REPEAT PERIOD=$PERIOD CLIENTS=$CLIENTS FILL=$FILL FILL_LAYOUT=$FILL_LAYOUT START_RATE=$START_RATE" \
    "MAX_RATE=$MAX_RATE PRECISION=$PRECISION SERVERS='$SERVERS' TABLES='$TABLES' KEA_MT=$KEA_MT bench/dhcp.sh"
echo "  load:    ip netns exec CLI perfdhcp -4 -l $RELAY_IP -r RATE -p $PERIOD -R $CLIENTS -W 1000000 $SERVER_IP"
echo "  vmlan:   ip netns exec SW vmlan hub --addr $SERVER_IP/16 --tap vt0 --dhcp-range $POOL_START,$POOL_END --leasefile FILE"
echo "  kea:     ip netns exec SRV kea-dhcp4 -c kea.json (memfile, persist true, lfc-interval 0, interfaces [s0], udp sockets)"
echo "  dnsmasq: ip netns exec SRV dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=s0 --bind-interfaces --no-ping" \
    "--dhcp-range=$POOL_START,$POOL_END,255.255.0.0,1h --dhcp-leasefile=FILE --dhcp-lease-max=100000"
