#!/usr/bin/env bash
# DHCPv6 benchmark (issue 12): the highest rate of DHCPv6 4-way exchanges
# (SOLICIT/ADVERTISE/REQUEST/REPLY, RFC 8415 section 18) per second that a server
# sustains with ZERO drops, for `vmlan hub` and Kea (kea-dhcp6), each persisting its
# leases to a file on disk, measured with ISC's perfdhcp -6 on the same network path in
# one run; once with an empty lease table and once with FILL (40,000) leases already in
# it (a pool of 65,536 addresses). The DHCPv4 one is bench/dhcp.sh; this one works the
# same way (steps, search, rounds, report), with these differences:
#
# - perfdhcp -6 talks to the servers directly on the link, not as a relay: it sends from
#   the link-local address of its interface (`-l c0`), port 546, to ff02::1:2 port 547,
#   and the servers answer to that address, port 546. (perfdhcp's relay mode, `-A 1`,
#   needs RELAY-FORW/RELAY-REPL, which vmlan's DHCPv6 server does not handle: it serves
#   its own link only, README "IPv6".) Both servers are asked the same way.
# - The clients are DUIDs: perfdhcp's default DUID-LLT, its MAC part counting through
#   CLIENTS values (`-R`), one IA_NA each.
# - perfdhcp's one socket receives every reply; it gets a 4 MiB receive buffer
#   (CLIENT_RCVBUF, set by an LD_PRELOAD shim, bench/rcvbuf_preload.c, for both
#   servers alike), because with the default 208 KiB a burst of replies after a few ms in
#   which perfdhcp was not scheduled (the machine is shared) overflowed it, and the step
#   failed for perfdhcp's sake, not the server's.
# - The script also reads each server's CPU time (utime + stime from /proc) over the
#   load of a step, and reports the server's CPU microseconds per completed exchange.
#   Each step line also says where losses were: client_rcvbuf_drops (perfdhcp's socket
#   full), server_if_drops (vmlan: frames vt0 could not queue to the hub; Kea: frames s0
#   dropped plus Kea's socket full), path_drops (the kernel's per-CPU backlog and c0), and
#   for vmlan its own DHCPv6 counters (SIGUSR1 report: in, out, malformed, foreign,
#   ignored, NoAddrsAvail).
#
# Setup: three network namespaces made by this script (nothing leaves them; duplicate
# address detection off in them, so link-local addresses are usable at once):
#   $NS-cli  veth c0 (link-local address only): perfdhcp -6 -l c0
#   $NS-sw   Linux bridge br0 (multicast snooping off: ff02::1:2 is flooded to every
#            port) joining c0p (peer of c0), s0p (peer of s0) and tap vt0;
#            `vmlan hub --tap vt0` runs here (MAC 02:76:6d:00:00:01, link-local
#            fe80::76:6dff:fe00:1, answering NDP and DHCPv6 itself)
#   $NS-srv  veth s0 (link-local, and 1234::1/64): kea-dhcp6, bound to s0
# Path: perfdhcp -> c0 -> br0 -> vt0 -> vmlan, or perfdhcp -> c0 -> br0 -> s0 -> Kea.
# Only one server runs at a time; s0p is set down while vmlan runs, and a stopped vmlan
# leaves no reader on vt0 (no carrier), so each SOLICIT reaches one server.
#
# The servers, both with a 1 h lease (preferred and valid lifetimes; T1 30 min, T2 48
# min) and the pool 1234::1:0 - 1234::1:ffff (65,536 addresses) of 1234::/64:
#   vmlan  vmlan hub --addr 10.0.0.1/16 --tap vt0 --dhcp-range 1234::1:0,1234::1:ffff,64,1h
#          --leasefile FILE   (log to a file: one info line per lease)
#   kea    kea-dhcp6 -c kea6.json: memfile lease database, persist true (CSV appended on
#          every change), lfc-interval 0 (no cleanup during a step), the subnet on
#          interface s0, server DUID not persisted, log severity INFO to a file (one line
#          per lease), multi-threading off as Kea 2.2's default (KEA_MT=1: 2 threads)
# Lease files live in WORKDIR (default under /var/tmp, on disk, not tmpfs), so each
# server pays for its own way of persisting (see bench/dhcp.sh).
#
# One step = a fresh server with a fresh lease file (empty, or the FILL leases written in
# its own format before it starts: DUID-LLs 00:03:00:01:02:fe:00:xx:xx:xx, IAID 1, on FILL
# addresses of the pool drawn at random with a fixed seed, the same for both servers,
# expiring in 1 day), a readiness probe (exchanges by another DUID until one
# completes), then `perfdhcp -6 -l c0 -r RATE -p PERIOD -R CLIENTS -W 1000000 all`: a
# reply later than 1 s is a drop, replies still in flight at the end are waited for 1 s.
# A step passes when both exchanges (SOLICIT-ADVERTISE, REQUEST-REPLY) had 0 drops and
# all RATE*PERIOD exchanges were started. The search per server: START_RATE, doubled while
# steps pass (up to MAX_RATE), then bisected to within PRECISION percent. Every (server,
# table) search runs REPEAT times, interleaved round by round; the table shows the median.
#
# Run as root (it creates namespaces; installs kea-dhcp6-server, kea-admin (perfdhcp) and
# gcc with apt-get if missing: bench-only, not in tests/setup.sh), from anywhere:
#   bench/dhcp6.sh
#   REPEAT=1 PERIOD=3 SERVERS='kea vmlan' TABLES=empty bench/dhcp6.sh
# Env: REPEAT (rounds, default 3), PERIOD (seconds of load per step, default 4), CLIENTS
# (perfdhcp -R, default 15000), CLIENT_RCVBUF (bytes, default 4194304; 0: the default), FILL (leases in the full table, default 40000), START_RATE
# (default 1000), MAX_RATE (default 32000), PRECISION (percent, default 10), SERVERS
# (subset of: kea vmlan), TABLES (subset of: empty full), KEA_MT (1: Kea multi-threaded),
# PROBE_LIMIT (seconds a server may take to answer, default 60), VMLAN_BIN (default
# target/release/vmlan, built here), WORKDIR (parent of the work directory, default
# /var/tmp), KEEP=1 (keep the work directory: every step's server log and perfdhcp output),
# PERF=1 (with KEEP=1: `perf record -g` of the server over each step's load, perf.data in
# the step's directory).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPEAT=${REPEAT:-3}
PERIOD=${PERIOD:-4}
CLIENTS=${CLIENTS:-15000}
FILL=${FILL:-40000}
START_RATE=${START_RATE:-1000}
MAX_RATE=${MAX_RATE:-32000}
PRECISION=${PRECISION:-10}
SERVERS=${SERVERS:-kea vmlan}
TABLES=${TABLES:-empty full}
KEA_MT=${KEA_MT:-0}
WORKDIR=${WORKDIR:-/var/tmp}
PROBE_LIMIT=${PROBE_LIMIT:-60}
KEEP=${KEEP:-0}
CLIENT_RCVBUF=${CLIENT_RCVBUF:-4194304}
PERF=${PERF:-0}
NS=vmlan6b$$
CLI=$NS-cli SW=$NS-sw SRV=$NS-srv
PREFIX=1234:: SERVER_GLOBAL=1234::1
POOL_START=1234::1:0 POOL_END=1234::1:ffff
POOL_SIZE=65536
export PATH=$PATH:/usr/sbin:/sbin

log() { echo "dhcp6.sh: $*" >&2; }

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
command -v kea-dhcp6 >/dev/null || need+=(kea-dhcp6-server)
command -v perfdhcp >/dev/null || need+=(kea-admin)
command -v ip >/dev/null || need+=(iproute2)
command -v gcc >/dev/null || need+=(gcc)
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
WORK=$(mktemp -d "$WORKDIR/vmlan-dhcp6.XXXXXX")
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

# perfdhcp's receive buffer (bench/rcvbuf_preload.c): the same for both servers.
PD=(perfdhcp)
if ((CLIENT_RCVBUF > 0)); then
    gcc -shared -fPIC -O2 -o "$WORK/rcvbuf.so" "$ROOT/bench/rcvbuf_preload.c" -ldl
    PD=(env LD_PRELOAD="$WORK/rcvbuf.so" RCVBUF_BYTES="$CLIENT_RCVBUF" perfdhcp)
fi

for n in "$CLI" "$SW" "$SRV"; do
    ip netns add "$n"
    ip -n "$n" link set lo up
    # Before the interfaces exist: theirs inherit "default".
    ip netns exec "$n" sysctl -q -w net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
done
ip -n "$SW" link add br0 type bridge forward_delay 0 stp_state 0 mcast_snooping 0
ip -n "$SW" link set br0 up
ip -n "$SW" link add c0p type veth peer name c0 netns "$CLI"
ip -n "$SW" link add s0p type veth peer name s0 netns "$SRV"
ip -n "$SW" link set c0p master br0 up
ip -n "$SW" link set s0p master br0 up
ip -n "$CLI" link set c0 up
ip -n "$SRV" addr add "$SERVER_GLOBAL/64" dev s0 nodad
ip -n "$SRV" link set s0 up
ip -n "$SW" tuntap add dev vt0 mode tap
ip -n "$SW" link set vt0 master br0 up

# ---- lease files --------------------------------------------------------------
# The FILL leases: client i (DUID-LL 00:03:00:01:02:fe:00:xx:xx:xx, IAID 1) holds pool
# address number idx(i) (a random sample of the pool, fixed seed), expiring in 1 day.
EXPIRY=$(($(date +%s) + 86400))
gen_fill_index() {
    awk -v n="$FILL" -v p="$POOL_SIZE" 'BEGIN {
        srand(4)
        for (j = 0; j < p; j++) a[j] = j
        for (i = 0; i < n; i++) { k = i + int(rand() * (p - i)); t = a[i]; a[i] = a[k]; a[k] = t; print a[i] }
    }' >"$WORK/fill.idx"
}
# vmlan's lease file (dnsmasq's format): the `duid` line this vmlan writes itself (learnt
# from an empty run), then `EXPIRY IAID ADDR * CLIENT-DUID` lines.
gen_vmlan_fill() {
    awk -v expiry="$EXPIRY" -v duidline="$1" '
        BEGIN { print duidline }
        {
            i = NR - 1
            printf "%d 1 1234::1:%x * 00:03:00:01:02:fe:00:%02x:%02x:%02x\n", expiry, $1,
                int(i / 65536) % 256, int(i / 256) % 256, i % 256
        }' "$WORK/fill.idx" >"$WORK/fill.vmlan"
}
# Kea's memfile CSV (lease6), with the columns of the header this Kea writes itself.
gen_kea_fill() {
    awk -v expiry="$EXPIRY" -v header="$1" '
        BEGIN { print header; nc = split(header, cols, ",") }
        {
            i = NR - 1
            v["address"] = sprintf("1234::1:%x", $1)
            v["duid"] = sprintf("00:03:00:01:02:fe:00:%02x:%02x:%02x", int(i / 65536) % 256, int(i / 256) % 256, i % 256)
            v["valid_lifetime"] = 86400; v["expire"] = expiry; v["subnet_id"] = 1
            v["pref_lifetime"] = 86400; v["lease_type"] = 0; v["iaid"] = 1; v["prefix_len"] = 128
            v["fqdn_fwd"] = 0; v["fqdn_rev"] = 0; v["hostname"] = ""; v["hwaddr"] = ""
            v["state"] = 0; v["user_context"] = ""; v["hwtype"] = 1; v["hwaddr_source"] = 0
            v["pool_id"] = 0
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
    cat >"$d/kea6.json" <<EOF
{ "Dhcp6": {
  $mt
  "interfaces-config": { "interfaces": [ "s0" ] },
  "data-directory": "$d",
  "server-id": { "type": "LL", "persist": false },
  "lease-database": { "type": "memfile", "persist": true, "name": "$d/leases6.csv", "lfc-interval": 0 },
  "preferred-lifetime": 3600, "valid-lifetime": 3600, "renew-timer": 1800, "rebind-timer": 2880,
  "subnet6": [ { "id": 1, "subnet": "$PREFIX/64", "interface": "s0", "pools": [ { "pool": "$POOL_START - $POOL_END" } ] } ],
  "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "$d/server.log" } ], "severity": "INFO" } ]
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
    ip -n "$SRV" neigh flush all
    case $kind in
    vmlan)
        ip -n "$SW" link set s0p down
        if [[ $table == full ]]; then cp "$WORK/fill.vmlan" "$d/leases"; else : >"$d/leases"; fi
        timeout -k 2 "$limit" ip netns exec "$SW" "$VMLAN" hub --addr 10.0.0.1/16 --tap vt0 \
            --dhcp-range "$POOL_START,$POOL_END,64,1h" --leasefile "$d/leases" >"$d/server.log" 2>&1 &
        ;;
    kea)
        ip -n "$SW" link set s0p up
        kea_config "$d"
        if [[ $table == full ]]; then cp "$WORK/fill.kea" "$d/leases6.csv"; fi
        KEA_LOCKFILE_DIR=$d KEA_PIDFILE_DIR=$d timeout -k 2 "$limit" ip netns exec "$SRV" \
            kea-dhcp6 -c "$d/kea6.json" >"$d/server.out" 2>&1 &
        ;;
    esac
    SRV_PID=$!
    PIDS+=("$SRV_PID")
}

# pd_stat FILE SECTION FIELD: a number from perfdhcp's report (SECTION: SOLICIT-ADVERTISE
# or REQUEST-REPLY; FIELD e.g. "drops", "sent packets", "avg delay").
pd_stat() {
    awk -v sec="$2" -v f="$3" '
        /^\*\*\*Statistics for: / { in_sec = index($0, sec) > 0; next }
        in_sec && index($0, f ": ") == 1 { v = substr($0, length(f) + 3); sub(/ .*/, "", v); print v; exit }' "$1"
}

# probe DIR: a few exchanges by a DUID outside the benchmark's clients until one
# completes; gives up after PROBE_LIMIT seconds.
probe() {
    local d=$1 got end=$((SECONDS + PROBE_LIMIT))
    while ((SECONDS < end)); do
        kill -0 "$SRV_PID" 2>/dev/null || return 1
        timeout -k 1 8 ip netns exec "$CLI" "${PD[@]}" -6 -l c0 -r 5 -n 3 -d 1 -W 1000000 \
            -b duid=0003000102fd00000001 all >"$d/probe.out" 2>&1 || true
        got=$(pd_stat "$d/probe.out" REQUEST-REPLY "received packets")
        if ((${got:-0} > 0)); then
            return 0
        fi
        sleep 1
    done
    return 1
}

# server_cpu_ticks: utime + stime (clock ticks, all threads) of the server process, the
# child of its `timeout` (SRV_PID) (`ip netns exec` execs the server in place).
server_cpu_ticks() {
    local p
    p=$(pgrep -P "$SRV_PID" | head -1)
    [[ -n $p ]] && awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0
}
TCK=$(getconf CLK_TCK)

# if_drops: what the server's side dropped so far: for vmlan, the frames the kernel could
# not queue to the hub on vt0 (TX dropped: the hub did not read them in time); for Kea,
# the frames s0 dropped on receive plus the UDP/IPv6 datagrams its namespace dropped for a
# full socket receive buffer (Kea's socket).
if_drops() {
    case $1 in
    vmlan) ip netns exec "$SW" cat /sys/class/net/vt0/statistics/tx_dropped ;;
    kea)
        echo $(($(ip netns exec "$SRV" cat /sys/class/net/s0/statistics/rx_dropped) +
            $(ip netns exec "$SRV" awk '$1 == "Udp6RcvbufErrors" { print $2 }' /proc/net/snmp6)))
        ;;
    esac
}

# path_drops: frames lost on the way out of the client: the kernel's per-CPU backlog
# (softnet_stat's second column, all CPUs: a veth hands its frames to it) plus c0's TX drops.
path_drops() {
    local sn=0 c0 a b rest
    while read -r a b rest; do sn=$((sn + 16#$b)); done </proc/net/softnet_stat
    c0=$(ip netns exec "$CLI" cat /sys/class/net/c0/statistics/tx_dropped)
    echo $((sn + c0))
}

# rcvbuf_errors: UDP/IPv6 datagrams the client's namespace dropped for a full socket
# receive buffer (perfdhcp's socket): where replies sent in a burst are lost when perfdhcp
# does not read them in time.
rcvbuf_errors() {
    ip netns exec "$CLI" awk '$1 == "Udp6RcvbufErrors" { print $2 }' /proc/net/snmp6
}

STEP=0
STEP_LINE=
# step KIND TABLE RATE: one measurement; returns 0 if it passed. Sets STEP_LINE.
step() {
    local kind=$1 table=$2 rate=$3
    local d rc=0 pdpid want sa_drops rr_drops sa_sent rr_recv note='' rb0 c0 c1 cpu_us id0 id1 pd0 pd1
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
    id0=$(if_drops "$kind")
    pd0=$(path_drops)
    c0=$(server_cpu_ticks)
    timeout -k 2 $((PERIOD + 30)) ip netns exec "$CLI" "${PD[@]}" -6 -l c0 -r "$rate" -p "$PERIOD" \
        -R "$CLIENTS" -W 1000000 all >"$d/perfdhcp.out" 2>&1 &
    pdpid=$!
    PIDS+=("$pdpid")
    local perfpid=
    if [[ $PERF == 1 ]]; then
        perf record -q -g -o "$d/perf.data" -p "$(pgrep -P "$SRV_PID" | head -1)" -- sleep "$PERIOD" >/dev/null 2>&1 &
        perfpid=$!
    fi
    wait "$pdpid" || rc=$?
    [[ -z $perfpid ]] || wait "$perfpid" || true
    c1=$(server_cpu_ticks)
    id1=$(if_drops "$kind")
    pd1=$(path_drops)
    local h6=
    if [[ $kind == vmlan ]]; then
        # The hub's counters (SIGUSR1 prints its report to stderr): DHCPv6 messages in
        # and out, and why any went unanswered.
        kill -USR1 "$(pgrep -P "$SRV_PID" | head -1)" 2>/dev/null || true
        sleep 0.3
        h6=$(grep -o 'dhcp6 leases [0-9]* in [0-9]* out [0-9]* malformed [0-9]* foreign [0-9]* ignored [0-9]* noaddrs [0-9]*' "$d/server.log" |
            tail -1 | awk '{ printf "hub_in_out_malformed_foreign_ignored_noaddrs=%s/%s/%s/%s/%s/%s", $5, $7, $9, $11, $13, $15 }')
    fi
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
        note=server-exited
        log "$kind/$table at $rate/s: the server EXITED during the step; its log ends:"
        tail -n 5 "$d/server.log" "$d/server.out" 2>/dev/null >&2 || true
    fi
    stop "$SRV_PID"
    PIDS=()
    # (Case matters: vmlan's report counts "errors" and "malformed" messages.)
    if grep -Eq 'panicked|\bERROR\b' "$d/server.log" 2>/dev/null; then
        log "$kind/$table at $rate/s: errors in the server log: $(grep -E 'panicked|\bERROR\b' "$d/server.log" | head -3 | tr '\n' ' ')"
        note=${note:+$note,}log-errors
    fi
    sa_drops=$(pd_stat "$d/perfdhcp.out" SOLICIT-ADVERTISE drops)
    rr_drops=$(pd_stat "$d/perfdhcp.out" REQUEST-REPLY drops)
    sa_sent=$(pd_stat "$d/perfdhcp.out" SOLICIT-ADVERTISE "sent packets")
    rr_recv=$(pd_stat "$d/perfdhcp.out" REQUEST-REPLY "received packets")
    # perfdhcp -r R -p P starts R*P - 1 exchanges.
    want=$((rate * PERIOD - 1))
    local pass=0
    if [[ -z $sa_drops || -z $rr_drops ]]; then
        note=${note:+$note,}no-report
        log "$kind/$table at $rate/s: perfdhcp (exit $rc) gave no report: $(tail -n 3 "$d/perfdhcp.out" | tr '\n' ' ')"
    elif ((sa_drops == 0 && rr_drops == 0 && sa_sent * 100 >= want * 97)) && [[ -z $note ]]; then
        pass=1
    elif ((sa_sent * 100 < want * 97)); then
        note=${note:+$note,}client-limited
    fi
    cpu_us=$(awk -v t=$((c1 - c0)) -v h="$TCK" -v n="${rr_recv:-0}" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / h / n; else print "?" }')
    STEP_LINE="rate=$rate pass=$pass done=${rr_recv:-0} drops=${sa_drops:-?}/${rr_drops:-?} sent=${sa_sent:-0}"
    STEP_LINE+=" delay_ms=$(pd_stat "$d/perfdhcp.out" SOLICIT-ADVERTISE "avg delay")/$(pd_stat "$d/perfdhcp.out" REQUEST-REPLY "avg delay")"
    STEP_LINE+=" max_ms=$(pd_stat "$d/perfdhcp.out" SOLICIT-ADVERTISE "max delay")/$(pd_stat "$d/perfdhcp.out" REQUEST-REPLY "max delay")"
    STEP_LINE+=" cpu_us=$cpu_us client_rcvbuf_drops=$(($(rcvbuf_errors) - rb0)) server_if_drops=$((id1 - id0)) path_drops=$((pd1 - pd0))"
    STEP_LINE+=" leases=$(lease_count "$kind" "$d")${h6:+ $h6}${note:+ note=$note}"
    log "$kind/$table r=$rate: $STEP_LINE"
    [[ $KEEP == 1 ]] || [[ -n $note && $note != client-limited ]] || rm -rf "$d"
    ((pass))
}

# lease_count KIND DIR: leases on disk after the step (Kea: distinct addresses in its CSV;
# vmlan: the IPv6 lines `vmlan leases` prints from its file and journal).
lease_count() {
    case $1 in
    kea) tail -n +2 "$2/leases6.csv" 2>/dev/null | cut -d, -f1 | sort -u | wc -l ;;
    vmlan) "$VMLAN" leases --leasefile "$2/leases" 2>/dev/null | grep -c '1234::' || true ;;
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
        ((good > 0 || bad > 5)) || break
    done
    BEST=$good
}

# ---- the fill files ----------------------------------------------------------------
# learn_header KIND FILE: starts KIND with an empty table, lets the probe's exchange
# through and sets HEADER to the first line of the lease file FILE it wrote (vmlan: its
# `duid` line; Kea: its CSV header).
HEADER=
learn_header() {
    local d=$WORK/$1-header
    mkdir -p "$d"
    start_server "$1" empty "$d"
    probe "$d" || { log "$1 does not answer: $(tail -n 3 "$d/server.out" "$d/server.log" 2>/dev/null | tr '\n' ' ')"; exit 1; }
    stop "$SRV_PID"
    PIDS=()
    HEADER=$(head -1 "$d/$2")
    log "$1 lease file, first line: $HEADER"
}
if [[ " $TABLES " == *" full "* ]]; then
    gen_fill_index
    if [[ " $SERVERS " == *" kea "* ]]; then
        learn_header kea leases6.csv
        [[ $HEADER == address,duid,* ]] || { log "kea wrote no lease6 CSV header"; exit 1; }
        gen_kea_fill "$HEADER"
    fi
    if [[ " $SERVERS " == *" vmlan "* && $VMLAN_STATE == ok ]]; then
        learn_header vmlan leases
        [[ $HEADER == duid\ * ]] || { log "vmlan wrote no duid line first"; exit 1; }
        gen_vmlan_fill "$HEADER"
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
    kea) echo "Kea $(kea-dhcp6 -v 2>/dev/null)$([[ $KEA_MT == 1 ]] && echo ', multi-threaded')" ;;
    esac
}

echo
echo "DHCPv6 benchmark, $(nproc) CPUs, $(uname -r); perfdhcp $(perfdhcp -v 2>&1 | head -1); $REPEAT round(s), median shown"
echo "Highest rate of 4-way exchanges/s with zero drops (SOLICIT-ADVERTISE and REQUEST-REPLY), ${PERIOD} s per step,"
echo "$CLIENTS clients; table 'full' = $FILL leases before the step; lease files on $(df -PT "$WORK" | awk 'NR == 2 { print $2 }')"
echo
printf '%-34s %-6s %11s  %-22s %-14s %-12s %s\n' server table "exch/s" "rounds" "delay ms SA/RR" "CPU us/exch" "leases after"
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
        printf '%-34s %-6s %11s  %-22s %-14s %-12s %s\n' "$(version "$kind")" "$table" "$m" "${rs[*]}" \
            "$(field delay_ms "$l")" "$(field cpu_us "$l")" "$(field leases "$l")"
    done
done
ratio6() {
    local a=${MED[$1]:-} b=${MED[$2]:-}
    if [[ -n $a && -n $b && $b != 0 ]]; then awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }'; else echo n/a; fi
}
echo
echo "Ratios (goal: vmlan >= 1.5x Kea with leases persisted):"
for table in $TABLES; do
    # Rounds are interleaved, so each round's pair ran under the same load of the machine.
    read -ra rv <<<"${RATES[vmlan/$table]:-}"
    read -ra rk <<<"${RATES[kea/$table]:-}"
    per=
    for ((i = 0; i < ${#rv[@]} && i < ${#rk[@]}; i++)); do
        per+=" $(awk -v a="${rv[i]}" -v b="${rk[i]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "n/a" }')"
    done
    echo "  $table table: vmlan/kea $(ratio6 vmlan/"$table" kea/"$table") (medians); round by round:${per:- n/a}"
done
if [[ " $TABLES " == *" empty "* && " $TABLES " == *" full "* ]]; then
    for kind in $SERVERS; do echo "  $kind full/empty: $(ratio6 "$kind"/full "$kind"/empty)"; done
fi
echo
echo "Command: REPEAT=$REPEAT PERIOD=$PERIOD CLIENTS=$CLIENTS CLIENT_RCVBUF=$CLIENT_RCVBUF FILL=$FILL START_RATE=$START_RATE" \
    "MAX_RATE=$MAX_RATE PRECISION=$PRECISION SERVERS='$SERVERS' TABLES='$TABLES' KEA_MT=$KEA_MT bench/dhcp6.sh"
echo "  load:  ip netns exec CLI perfdhcp -6 -l c0 -r RATE -p $PERIOD -R $CLIENTS -W 1000000 all (socket receive buffer: CLIENT_RCVBUF=$CLIENT_RCVBUF bytes, 0: the default)"
echo "  vmlan: ip netns exec SW vmlan hub --addr 10.0.0.1/16 --tap vt0 --dhcp-range $POOL_START,$POOL_END,64,1h --leasefile FILE"
echo "  kea:   ip netns exec SRV kea-dhcp6 -c kea6.json (memfile, persist true, lfc-interval 0, interfaces [s0], subnet $PREFIX/64 on s0)"
