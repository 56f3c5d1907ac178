#!/usr/bin/env bash
# DNS benchmark: queries/s answered from LOCAL records (no forwarding) by `vmlan hub
# --dns-listen` and by dnsmasq, measured with dnsperf over UDP on 127.0.0.1, in one run,
# inside a network namespace made by this script (only its loopback; nothing leaves it).
#
# Both servers hold the same RECORDS (1000) host records, hostN -> 10.1.x.y (A and its
# PTR), given as --host-record flags to both, and neither forwards anything:
#   vmlan    vmlan hub --addr 10.0.3.1/24 --stream unix:DIR/hub.sock (an idle port: the
#            hub wants one) --no-resolv --dns-listen 127.0.0.1:5353 --host-record hostN,IP ...
#   dnsmasq  dnsmasq --no-daemon --conf-file=/dev/null --port=5354 --listen-address=127.0.0.1
#            --bind-interfaces --no-resolv --no-hosts --host-record=hostN,IP ...
# The query file is every name once, type A, in a fixed shuffled order; dnsperf cycles
# through it. Before measuring, one pass over the file (dnsperf -n 1 -q 10) must come back
# NOERROR only, for at least 99% of the names, from each server. Then dnsperf runs LENGTH seconds with at most OUTSTANDING
# queries in flight (-q), dnsperf's own defaults otherwise (one socket, one thread, a query
# unanswered after 5 s is "lost"), against each server in turn, REPEAT rounds interleaved
# (the machine is shared and noisy); the table shows the median queries/s and that run's
# lost queries and latency. A lost query holds one of the OUTSTANDING slots until its
# timeout, so a server that drops queries loses throughput out of proportion to the drops.
# At the end the hub's own counters (kill -USR1: "dns in / answered / malformed /
# failed") are printed: queries the hub dropped show up there as "failed".
#
# Run as root if dnsperf or dnsmasq must be installed (apt-get), from anywhere:
#   bench/dns.sh
#   REPEAT=3 LENGTH=5 bench/dns.sh
# Env: REPEAT (rounds, default 5), LENGTH (dnsperf -l seconds, default 10), OUTSTANDING
# (dnsperf -q, default 100), RECORDS (default 1000), DNSPERF_TIMEOUT (dnsperf -t seconds,
# default 5 = dnsperf's default), DNSPERF_ARGS (more dnsperf flags for the measured runs,
# e.g. "-c 10" for ten client sockets), VMLAN_BIN (default target/release/vmlan, built
# here), SERVERS (subset of: dnsmasq vmlan).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPEAT=${REPEAT:-5}
LENGTH=${LENGTH:-10}
OUTSTANDING=${OUTSTANDING:-100}
RECORDS=${RECORDS:-1000}
DNSPERF_TIMEOUT=${DNSPERF_TIMEOUT:-5}
DNSPERF_ARGS=${DNSPERF_ARGS:-}
SERVERS=${SERVERS:-dnsmasq vmlan}
NS=vmlanb$$-dns
VMLAN_PORT=5353 DNSMASQ_PORT=5354
export PATH=$PATH:/usr/sbin:/sbin

log() { echo "dns.sh: $*" >&2; }

if [[ $(id -u) != 0 ]]; then
    log "must run as root (network namespace, apt-get)"
    exit 1
fi

# ---- what it needs ----------------------------------------------------------
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v ip >/dev/null || need+=(iproute2)
command -v pgrep >/dev/null || need+=(procps)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${need[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi

cd "$ROOT"
VMLAN=${VMLAN_BIN:-$ROOT/target/release/vmlan}
VMLAN_STATE=ok
if [[ " $SERVERS " == *" vmlan "* ]]; then
    if [[ -z ${VMLAN_BIN:-} ]] && ! cargo build --release -p vmlan; then
        VMLAN_STATE="vmlan: build failed"
    elif ! "$VMLAN" hub --help 2>/dev/null | grep -q -- --dns-listen; then
        VMLAN_STATE="vmlan: no --dns-listen"
    fi
fi

# ---- namespace and processes ---------------------------------------------------
WORK=$(mktemp -d /tmp/vmlan-dns.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    # Anything left in our own namespace is ours.
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Measure a copy: others may rebuild target/release/vmlan while this runs.
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
measure_copy

ip netns add "$NS"
ip -n "$NS" link set lo up

# The records and the queries: hostN -> 10.1.(N / 256).(N % 256), N = 1..RECORDS.
vmlan_args=() dnsmasq_args=()
for ((i = 1; i <= RECORDS; i++)); do
    vmlan_args+=(--host-record "host$i,10.1.$((i / 256)).$((i % 256))")
    dnsmasq_args+=("--host-record=host$i,10.1.$((i / 256)).$((i % 256))")
done
awk -v n="$RECORDS" 'BEGIN { srand(7); for (i = 1; i <= n; i++) print rand(), "host" i " A" }' |
    sort -n | cut -d' ' -f2- >"$WORK/queries"

# Both servers run for the whole benchmark (an idle one takes no CPU).
LIMIT=$((REPEAT * 2 * (LENGTH + 15) + 120))
declare -A PORT SRVPID
if [[ " $SERVERS " == *" vmlan "* && $VMLAN_STATE == ok ]]; then
    timeout -k 2 "$LIMIT" ip netns exec "$NS" "$VMLAN" hub --addr 10.0.3.1/24 --stream "unix:$WORK/hub.sock" \
        --no-resolv --dns-listen "127.0.0.1:$VMLAN_PORT" "${vmlan_args[@]}" >"$WORK/vmlan.log" 2>&1 &
    SRVPID[vmlan]=$!
    PIDS+=($!)
    PORT[vmlan]=$VMLAN_PORT
fi
if [[ " $SERVERS " == *" dnsmasq "* ]]; then
    timeout -k 2 "$LIMIT" ip netns exec "$NS" dnsmasq --no-daemon --conf-file=/dev/null --port="$DNSMASQ_PORT" \
        --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --user=root --group=root \
        --pid-file="$WORK/dnsmasq.pid" "${dnsmasq_args[@]}" >"$WORK/dnsmasq.log" 2>&1 &
    SRVPID[dnsmasq]=$!
    PIDS+=($!)
    PORT[dnsmasq]=$DNSMASQ_PORT
fi

# dnsperf_run PORT OUT ARGS...: dnsperf in the namespace, bounded in time.
dnsperf_run() {
    local port=$1 out=$2 rc=0
    shift 2
    timeout -k 2 $((LENGTH + DNSPERF_TIMEOUT + 30)) ip netns exec "$NS" dnsperf -s 127.0.0.1 -p "$port" \
        -d "$WORK/queries" -t "$DNSPERF_TIMEOUT" "$@" >"$out" 2>&1 &
    local p=$!
    PIDS+=("$p")
    wait "$p" || rc=$?
    return "$rc"
}
# dp_stat FILE LABEL: the first number after "LABEL:" in dnsperf's report.
dp_stat() { sed -n "s/^ *$2: *\\([0-9.]*\\).*/\\1/p" "$1" | head -1; }

# Check: both answer every name (one pass, NOERROR for all), once they are up.
ACTIVE=()
for kind in $SERVERS; do
    [[ -n ${PORT[$kind]:-} ]] || continue
    ok=0
    for ((t = 0; t < 50; t++)); do
        dnsperf_run "${PORT[$kind]}" "$WORK/check.$kind" -n 1 -q 10 || true
        done_q=$(dp_stat "$WORK/check.$kind" 'Queries completed')
        if ((${done_q:-0} * 100 >= RECORDS * 99)) && grep -q 'Response codes: *NOERROR [0-9]* (100.00%)$' "$WORK/check.$kind"; then
            ok=1
            break
        fi
        kill -0 "${SRVPID[$kind]}" 2>/dev/null || break
        sleep 0.2
    done
    if ((ok)); then
        ACTIVE+=("$kind")
        log "$kind answers the names: $done_q of $RECORDS answered in one pass, all NOERROR"
    else
        log "$kind does not answer every name: $(grep -E 'Queries (completed|lost)|Response codes' "$WORK/check.$kind" 2>/dev/null | tr -s ' \n' ' ')"
        tail -n 5 "$WORK/$kind.log" >&2 || true
    fi
done
if command -v dig >/dev/null; then
    for kind in "${ACTIVE[@]}"; do
        log "$kind: dig host7 -> $(ip netns exec "$NS" timeout 5 dig +short +tries=1 @127.0.0.1 -p "${PORT[$kind]}" host7 A | tr '\n' ' ')"
    done
fi

# hub_counters: the hub's DNS counters line (kill -USR1).
hub_counters() {
    local pid
    pid=$(pgrep -P "${SRVPID[vmlan]}" | head -1)
    [[ -n $pid ]] || return 0
    kill -USR1 "$pid" 2>/dev/null || return 0
    sleep 0.5
    grep -o 'dns in .*' "$WORK/vmlan.log" | tail -1
}
[[ -n ${SRVPID[vmlan]:-} ]] && log "vmlan counters before: $(hub_counters)"

# ticks PID: CPU time used so far (user + system, all threads) by process PID, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_pct PID: the share of one CPU that PID has used since it started, in percent.
cpu_pct() {
    awk -v hz="$HZ" -v up="$(cut -d' ' -f1 /proc/uptime)" \
        '{ t = up - $22 / hz; if (t > 0) printf "%.0f", ($14 + $15) / hz / t * 100 }' "/proc/$1/stat" 2>/dev/null
}
HZ=$(getconf CLK_TCK)

# ---- rounds ---------------------------------------------------------------------------
declare -A RUNS
for ((r = 1; r <= REPEAT; r++)); do
    for kind in "${ACTIVE[@]}"; do
        out=$WORK/run.$kind.$r
        # The server's CPU time over the run, and dnsperf's share of a CPU near its end:
        # whichever of the two is near 100% is what limits the rate.
        spid=$(pgrep -P "${SRVPID[$kind]}" | head -1)
        t0=$(ticks "$spid")
        # shellcheck disable=SC2086 # DNSPERF_ARGS is a list of flags
        dnsperf_run "${PORT[$kind]}" "$out" -l "$LENGTH" -q "$OUTSTANDING" $DNSPERF_ARGS &
        dp=$!
        sleep "$((LENGTH - 1)).5"
        client_cpu=$(cpu_pct "$(pgrep -x dnsperf | head -1)")
        if ! wait "$dp"; then
            log "$kind round $r: dnsperf failed: $(tail -n 3 "$out" | tr '\n' ' ')"
        fi
        t1=$(ticks "$spid")
        if ! kill -0 "${SRVPID[$kind]}" 2>/dev/null; then
            log "$kind EXITED during round $r; its log ends:"
            tail -n 5 "$WORK/$kind.log" >&2 || true
        fi
        line="qps=$(dp_stat "$out" 'Queries per second') sent=$(dp_stat "$out" 'Queries sent')"
        line+=" lost=$(dp_stat "$out" 'Queries lost') latency_ms=$(awk -v s="$(dp_stat "$out" 'Average Latency (s)')" 'BEGIN { printf "%.3f", s * 1000 }')"
        line+=" noerror=$(sed -n 's/.*NOERROR [0-9]* (\([0-9.]*%\)).*/\1/p' "$out")"
        line+=" server_cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v l="$LENGTH" 'BEGIN { printf "%.0f%%", d / hz / l * 100 }')"
        line+=" us_per_query=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v q="$(dp_stat "$out" 'Queries completed')" \
            'BEGIN { printf "%.2f", (q > 0 ? d / hz / q * 1e6 : 0) }') client_cpu=${client_cpu:-?}%"
        log "$kind round $r: $line"
        RUNS[$kind]+="$line"$'\n'
    done
done
COUNTERS=
[[ -n ${SRVPID[vmlan]:-} ]] && COUNTERS=$(hub_counters)

# ---- report -----------------------------------------------------------------------------
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
declare -A MED
version() {
    case $1 in
    vmlan) echo "$VMLAN_VERSION" ;;
    dnsmasq) dnsmasq --version | sed -n '1s/^Dnsmasq version \([^ ]*\).*/dnsmasq \1/p' ;;
    esac
}
echo
echo "DNS benchmark, $(nproc) CPUs, $(uname -r); $(dnsperf -h 2>&1 | sed -n 's/^Version \(.*\)/dnsperf \1/p' | head -1)"
echo "$RECORDS local A records; dnsperf -l $LENGTH -q $OUTSTANDING -t $DNSPERF_TIMEOUT over UDP on 127.0.0.1;" \
    "$REPEAT interleaved round(s), median shown"
echo
printf '%-22s %10s  %-30s %12s %8s %8s %7s %6s %7s\n' server "queries/s" "rounds (queries/s)" "lost" "lat. ms" NOERROR \
    "srv CPU" "us/q" "dnsperf"
declare -A USQ
for kind in $SERVERS; do
    if [[ $kind == vmlan && $VMLAN_STATE != ok ]]; then
        printf '%-22s %s\n' vmlan "$VMLAN_STATE"
        continue
    fi
    if [[ -z ${RUNS[$kind]:-} ]]; then
        printf '%-22s %s\n' "$(version "$kind")" "failed (see above)"
        continue
    fi
    mapfile -t lines <<<"${RUNS[$kind]%$'\n'}"
    med=$(printf '%s\n' "${lines[@]}" | awk '{ v = $1; sub(/^qps=/, "", v); print v + 0, $0 }' | sort -g |
        awk -v n="${#lines[@]}" '{ l[NR] = $0 } END { print l[int((n + 1) / 2)] }' | cut -d' ' -f2-)
    MED[$kind]=$(field qps "$med")
    all=$(printf '%s\n' "${lines[@]}" | awk '{ v = $1; sub(/^qps=/, "", v); printf "%.0f ", v }')
    USQ[$kind]=$(printf '%s\n' "${lines[@]}" | sed -n 's/.*us_per_query=\([^ ]*\).*/\1/p' | sort -g |
        awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    printf '%-22s %10.0f  %-30s %12s %8s %8s %7s %6s %7s\n' "$(version "$kind")" "${MED[$kind]}" "$all" \
        "$(field lost "$med")/$(field sent "$med")" "$(field latency_ms "$med")" "$(field noerror "$med")" \
        "$(field server_cpu "$med")" "${USQ[$kind]}" "$(field client_cpu "$med")"
done
echo
if [[ -n ${MED[vmlan]:-} && -n ${MED[dnsmasq]:-} ]]; then
    echo "Ratio (goal: vmlan >= 1.5x dnsmasq for local records): vmlan/dnsmasq" \
        "$(awk -v a="${MED[vmlan]}" -v b="${MED[dnsmasq]}" 'BEGIN { printf (b > 0 ? "%.2fx" : "n/a"), (b > 0 ? a / b : 0) }')"
    echo "Server CPU per query (medians): dnsmasq/vmlan" \
        "$(awk -v a="${USQ[vmlan]}" -v b="${USQ[dnsmasq]}" 'BEGIN { printf (a > 0 ? "%.2fx" : "n/a"), (a > 0 ? b / a : 0) }')" \
        "(= the ratio of queries per CPU-second of the server)"
fi
echo "Columns: srv CPU = the server's CPU time over the run, as a share of one CPU; us/q = its CPU"
echo "microseconds per answered query; dnsperf = dnsperf's share of one CPU near the end of the run"
echo "(near 100%: the load generator, not the server, set the rate)"
[[ -n $COUNTERS ]] && echo "vmlan hub counters at the end (kill -USR1): $COUNTERS"
echo
echo "Command: REPEAT=$REPEAT LENGTH=$LENGTH OUTSTANDING=$OUTSTANDING RECORDS=$RECORDS DNSPERF_TIMEOUT=$DNSPERF_TIMEOUT" \
    "${DNSPERF_ARGS:+DNSPERF_ARGS='$DNSPERF_ARGS' }SERVERS='$SERVERS' bench/dns.sh"
echo "  load:    ip netns exec NS dnsperf -s 127.0.0.1 -p 5353|5354 -d QUERIES -t $DNSPERF_TIMEOUT -l $LENGTH -q $OUTSTANDING${DNSPERF_ARGS:+ $DNSPERF_ARGS}" \
    "(QUERIES: 'hostN A' for N = 1..$RECORDS, shuffled)"
echo "  vmlan:   ip netns exec NS vmlan hub --addr 10.0.3.1/24 --stream unix:DIR/hub.sock --no-resolv" \
    "--dns-listen 127.0.0.1:5353 --host-record host1,10.1.0.1 ... (x$RECORDS)"
echo "  dnsmasq: ip netns exec NS dnsmasq --no-daemon --conf-file=/dev/null --port=5354 --listen-address=127.0.0.1" \
    "--bind-interfaces --no-resolv --no-hosts --user=root --group=root --host-record=host1,10.1.0.1 ... (x$RECORDS)"
