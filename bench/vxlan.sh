#!/usr/bin/env bash
# VXLAN benchmark (issue 14): frames/s and CPU per frame across one VXLAN hop (RFC 7348)
# between two network namespaces joined by one veth pair, at 64-byte and 1514-byte inner
# Ethernet frames (header included, no FCS), the two paths side by side in one run:
#   vmlan   sender -> unix stream -> `vmlan hub --vxlan ...` in namespace A -> VXLAN/UDP
#           over the veth -> `vmlan hub --vxlan ...` in namespace B -> unix stream -> receiver
#   kernel  sender -> AF_PACKET on a veth whose peer is in a Linux bridge with vx0
#           (`ip link add vx0 type vxlan id 42 dstport 4789 ...`) in A -> VXLAN/UDP over the
#           same veth -> vx0 in a bridge in B -> a veth -> AF_PACKET receiver
# Both use the same load peer (target/release/vmlan-loadpeer: one write/send syscall per
# frame on the sender; the receiver counts whole frames; stream:PATH for the hubs,
# packet:IFNAME for the kernel's bridges), the same frame sizes and counts. The
# underlay veth has MTU 1600 so that a 1514-byte frame plus VXLAN's 50 bytes fits
# (VTEPs do not fragment).
#
# Before its timed run the sender probes the receiver until it answers, so both
# switches on the path (hubs or bridges) have learned both MACs and nothing floods.
#
# Reported per path and size: delivered frames/s (the receiver's, from its first to its
# last frame), lost (frames sent but not delivered), offered (the sender's own rate),
# the hubs' CPU per delivered frame (both hubs, user + system, every thread: wait4(2)'s
# rusage through `vmlan-loadpeer run`; the kernel path has no switch process) and the
# CPU per delivered frame of every process of the path (sender + receiver + hubs). The
# kernel's own switching runs in the sender's and receiver's system time (a veth hands
# a frame to the peer's receive path in the sender's context) or in ksoftirqd, which
# no process of the path is charged for: the last column is ksoftirqd's CPU over the
# run per delivered frame (machine-wide, so other work on the machine adds to it).
# Then the ratios vmlan / kernel of both.
#
# Each configuration runs REPEAT times, interleaved round by round (the machine's speed
# drifts); the table shows the run with the median delivered frames/s.
#
# Run as root (it makes network namespaces, veths, bridges and vxlan devices; all in
# two namespaces it creates and deletes), from anywhere:
#   bench/vxlan.sh
#   FRAMES_64=1000000 FRAMES_1514=300000 REPEAT=5 bench/vxlan.sh
# Env: FRAMES_64, FRAMES_1514 (frames per run), REPEAT (runs per path and size, median
# kept), LIMIT (seconds a sender/receiver may take per run, default 60), ONLY (a subset
# of: vmlan kernel), VMLAN_BIN (the vmlan binary to measure, default target/release/vmlan).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FRAMES_64=${FRAMES_64:-500000}
FRAMES_1514=${FRAMES_1514:-200000}
REPEAT=${REPEAT:-3}
LIMIT=${LIMIT:-60}
ONLY=${ONLY:-vmlan kernel}
SIZES=(64 1514)
LINE=
TX_MAC=02:00:00:00:00:01
RX_MAC=02:00:00:00:00:02
VNI=42
ADDR_A=10.99.0.1
ADDR_B=10.99.0.2
UNDERLAY_MTU=1600
PROC_TIMEOUT=$((LIMIT + 30))
NS_A=vmlan-vxbench-a-$$
NS_B=vmlan-vxbench-b-$$

log() { echo "vxlan.sh: $*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ $(id -u) == 0 ]] || { log "run as root: it creates network namespaces"; exit 1; }
for c in ip bridge; do
    command -v "$c" >/dev/null || { log "missing $c (apt-get install iproute2)"; exit 1; }
done

cd "$ROOT"
VMLAN_STATE=ok
SERVERS="vmlan"
if ! cargo build --release -p vmlan -p vmlan-bench; then
    log "building vmlan failed; measuring the kernel only"
    cargo build --release -p vmlan-bench
    VMLAN_STATE="vmlan: build failed"
fi
LP=$ROOT/target/release/vmlan-loadpeer
VMLAN=${VMLAN_BIN:-$ROOT/target/release/vmlan}
if [[ $VMLAN_STATE == ok ]] && ! "$VMLAN" hub --help 2>/dev/null | grep -q -- --vxlan; then
    VMLAN_STATE="vmlan: --vxlan not available yet"
fi

# ---- namespaces and processes ------------------------------------------------
WORK=$(mktemp -d /tmp/vmlan-vxbench.XXXXXX)
measure_copy
PIDS=()
cleanup() {
    local p n
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for n in "$NS_A" "$NS_B"; do
        for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# In a namespace; `ip netns exec` execs the command, so a background one's $! is its pid.
INA=(ip netns exec "$NS_A")
INB=(ip netns exec "$NS_B")

# The two namespaces and the underlay veth between them (A: uA 10.99.0.1, B: uB 10.99.0.2).
for n in "$NS_A" "$NS_B"; do
    ip netns add "$n"
    ip -n "$n" link set lo up
done
ip link add uA netns "$NS_A" mtu "$UNDERLAY_MTU" type veth peer name uB netns "$NS_B" mtu "$UNDERLAY_MTU"
ip -n "$NS_A" addr add "$ADDR_A/24" dev uA
ip -n "$NS_B" addr add "$ADDR_B/24" dev uB
ip -n "$NS_A" link set uA up
ip -n "$NS_B" link set uB up
"${INA[@]}" ping -c 1 -W 2 "$ADDR_B" >/dev/null || { log "the underlay veth does not work"; exit 1; }

# kernel_up / kernel_down: in each namespace, vx0 (VNI 42, UDP 4789, the other
# namespace as its one remote) and a veth pair s0 (the load peer's) / s1 in bridge br0.
kernel_up() {
    local n l r
    for n in A B; do
        if [[ $n == A ]]; then l=$ADDR_A r=$ADDR_B; else l=$ADDR_B r=$ADDR_A; fi
        local ns=NS_$n
        ns=${!ns}
        ip -n "$ns" link add vx0 type vxlan id "$VNI" dstport 4789 local "$l" remote "$r" dev "u$n"
        ip -n "$ns" link add br0 type bridge
        ip -n "$ns" link add s0 type veth peer name s1
        ip -n "$ns" link set vx0 master br0
        ip -n "$ns" link set s1 master br0
        for d in vx0 br0 s0 s1; do ip -n "$ns" link set "$d" up; done
    done
}
kernel_down() {
    local ns
    for ns in "$NS_A" "$NS_B"; do
        ip -n "$ns" link del s0 2>/dev/null || true
        ip -n "$ns" link del br0 2>/dev/null || true
        ip -n "$ns" link del vx0 2>/dev/null || true
    done
}

# start_path KIND DIR: starts what switches KIND's frames (vmlan: the two hubs under
# `vmlan-loadpeer run`, CPU to DIR/cpuA and DIR/cpuB; kernel: the bridges and vx0s);
# sets TX and RX (the sender's and the receiver's endpoints) and SWS (switch pids).
start_path() {
    local kind=$1 d=$2
    SWS=()
    case $kind in
    vmlan)
        chmod 755 "$d"
        "${INA[@]}" timeout -k 2 "$PROC_TIMEOUT" "$LP" run --cpu-file "$d/cpuA" -- \
            env RUST_LOG=info "$VMLAN" hub --no-host --stream "unix:$d/a.sock" \
            --vxlan "vni=$VNI,local=$ADDR_A,peer=$ADDR_B,mtu=$UNDERLAY_MTU" >"$d/hubA.log" 2>&1 &
        SWS+=($!)
        "${INB[@]}" timeout -k 2 "$PROC_TIMEOUT" "$LP" run --cpu-file "$d/cpuB" -- \
            env RUST_LOG=info "$VMLAN" hub --no-host --stream "unix:$d/b.sock" \
            --vxlan "vni=$VNI,local=$ADDR_B,peer=$ADDR_A,mtu=$UNDERLAY_MTU" >"$d/hubB.log" 2>&1 &
        SWS+=($!)
        TX=stream:$d/a.sock RX=stream:$d/b.sock
        ;;
    kernel)
        kernel_up
        TX=packet:s0 RX=packet:s0
        ;;
    esac
}

# ksoftirqd_ns: the CPU time (ns) all ksoftirqd threads have used so far: the kernel's
# deferred packet processing, which no process of a path is charged for (machine-wide:
# other work on the machine adds to it).
ksoftirqd_ns() {
    local f t=0 hz line w
    hz=$(getconf CLK_TCK)
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue # the process may have ended
        [[ $line == *"(ksoftirqd/"* ]] || continue
        read -r -a w <<<"${line##*) }"
        t=$((t + w[11] + w[12]))
    done
    echo $((t * 1000000000 / hz))
}

# run_one KIND SIZE COUNT: one measurement; sets LINE to frames= bytes= seconds= fps=
# gbps= lost= stray= offered= cpu_sw= cpu_all= cpu_irq= (cpu in ns: the hubs', every process's
# of the path, ksoftirqd's over the run). Runs in the main shell
# (not in $(...)) so that the EXIT trap knows every process.
run_one() {
    local kind=$1 size=$2 count=$3 d rx tx irq0
    d=$(mktemp -d "$WORK/run.XXXXXX")
    irq0=$(ksoftirqd_ns)
    start_path "$kind" "$d"
    PIDS+=("${SWS[@]}")
    "${INB[@]}" timeout -k 2 "$PROC_TIMEOUT" "$LP" run --cpu-file "$d/cpurx" -- \
        "$LP" recv --from "$RX" --count "$count" --mac "$RX_MAC" --seconds "$LIMIT" --idle-ms 1000 \
        --ready-file "$d/rx.ready" >"$d/rx.out" 2>"$d/rx.err" &
    rx=$!
    PIDS+=("$rx")
    local ok=1
    wait_files "$d/rx.ready" || ok=0
    if ((ok)); then
        "${INA[@]}" timeout -k 2 "$PROC_TIMEOUT" "$LP" run --cpu-file "$d/cputx" -- \
            "$LP" send --to "$TX" --size "$size" --count "$count" --src-mac "$TX_MAC" --dst-mac "$RX_MAC" \
            --seconds "$LIMIT" --wait-file "$d/rx.ready" 2>"$d/tx.err" &
        tx=$!
        PIDS+=("$tx")
        wait "$tx" || log "$kind sender failed: $(cat "$d/tx.err")"
    fi
    wait "$rx" || true
    local cpu_irq=$(($(ksoftirqd_ns) - irq0))
    stop "${SWS[@]}"
    PIDS=()
    [[ $kind == kernel ]] && kernel_down
    if ! grep -q '^frames=[1-9]' "$d/rx.out"; then
        log "$kind/$size: no result from the receiver: $(cat "$d/rx.err" "$d/tx.err" 2>/dev/null)"
        tail -5 "$d"/hub*.log >&2 2>/dev/null || true
        return 1
    fi
    local c f cpu_sw=0 cpu_all=0
    for f in cpuA cpuB; do
        c=$(sed -n 's/^cpu_ns=//p' "$d/$f" 2>/dev/null || true)
        cpu_sw=$((cpu_sw + ${c:-0}))
    done
    cpu_all=$cpu_sw
    for f in cputx cpurx; do
        c=$(sed -n 's/^cpu_ns=//p' "$d/$f" 2>/dev/null || true)
        cpu_all=$((cpu_all + ${c:-0}))
    done
    local offered
    offered=$(sed -n 's/.* fps=\([0-9.]*\).*/\1/p' "$d/tx.err")
    LINE="$(cut -d' ' -f1-7 "$d/rx.out") offered=${offered:-0} cpu_sw=$cpu_sw cpu_all=$cpu_all cpu_irq=$cpu_irq"
    rm -rf "$d"
}

declare -A RES RUNS
for ((r = 1; r <= REPEAT; r++)); do
    for size in "${SIZES[@]}"; do
        count=FRAMES_$size
        count=${!count}
        for kind in $ONLY; do
            [[ $kind == vmlan && $VMLAN_STATE != ok ]] && continue
            if run_one "$kind" "$size" "$count"; then
                log "$kind ${size} B round $r: $LINE"
                RUNS[$kind/$size]+="$LINE"$'\n'
            else
                log "$kind ${size} B round $r: failed"
            fi
        done
    done
done
for size in "${SIZES[@]}"; do
    for kind in $ONLY; do
        if [[ $kind == vmlan && $VMLAN_STATE != ok ]]; then
            RES[$kind/$size]=$VMLAN_STATE
        elif [[ -n ${RUNS[$kind/$size]:-} ]]; then
            mapfile -t lines <<<"${RUNS[$kind/$size]%$'\n'}"
            median_of "${lines[@]}"
            RES[$kind/$size]=$LINE
        else
            RES[$kind/$size]="failed"
        fi
    done
done

# ---- report -----------------------------------------------------------------
# per_frame FIELD CFG/SIZE: that CPU field per delivered frame (ns), or nothing.
per_frame() {
    local l=${RES[$2]:-}
    [[ $l == frames=* ]] || return 0
    awk -v c="$(field "$1" "$l")" -v f="$(field frames "$l")" 'BEGIN { if (f > 0 && c > 0) printf "%.0f", c / f }'
}
all_per_frame() { per_frame cpu_all "$1"; }
irq_per_frame() { per_frame cpu_irq "$1"; }
name() {
    case $1 in
    vmlan) echo "vmlan hub -> hub" ;;
    kernel) echo "kernel vxlan+bridge" ;;
    esac
}

echo
echo "VXLAN benchmark, $(nproc) CPUs, $(uname -r), $VMLAN_VERSION; underlay: one veth pair, MTU $UNDERLAY_MTU"
echo "Frames per run: 64 B: $FRAMES_64, 1514 B: $FRAMES_1514; $REPEAT interleaved round(s), median shown"
echo
printf '%-22s %6s %11s %9s %9s %11s %15s %15s %15s\n' path size Mframes/s Gbit/s lost offered 'hubs CPU ns/f' 'all CPU ns/f' 'ksoftirqd ns/f'
for size in "${SIZES[@]}"; do
    for kind in $ONLY; do
        l=${RES[$kind/$size]}
        if [[ $l == frames=* ]]; then
            sw=$(per_frame cpu_sw "$kind/$size")
            awk -v n="$(name "$kind")" -v s="$size" -v f="$(field fps "$l")" -v g="$(field gbps "$l")" \
                -v lost="$(field lost "$l")" -v fr="$(field frames "$l")" -v o="$(field offered "$l")" \
                -v c="${sw:--}" -v a="$(all_per_frame "$kind/$size")" -v q="$(irq_per_frame "$kind/$size")" 'BEGIN {
                    printf "%-22s %4s B %11.3f %9.3f %8.2f%% %11.3f %15s %15s %15s\n", n, s, f / 1e6, g,
                        (fr + lost) ? 100 * lost / (fr + lost) : 0, o / 1e6, c, a, (q == "" ? 0 : q) }'
        else
            printf '%-22s %4s B  %s\n' "$(name "$kind")" "$size" "$l"
        fi
    done
done
echo
echo "Ratios vmlan / kernel:"
for size in "${SIZES[@]}"; do
    printf '  %4s B: delivered frames/s %s; all processes'"'"' CPU per frame %s\n' "$size" \
        "$(ratio fps_of vmlan/"$size" kernel/"$size")" "$(ratio all_per_frame vmlan/"$size" kernel/"$size")"
done
echo
echo "Command: FRAMES_64=$FRAMES_64 FRAMES_1514=$FRAMES_1514 REPEAT=$REPEAT LIMIT=$LIMIT ONLY='$ONLY' bench/vxlan.sh"
echo "  vmlan:  vmlan hub --no-host --stream unix:DIR/a.sock --vxlan vni=$VNI,local=$ADDR_A,peer=$ADDR_B,mtu=$UNDERLAY_MTU (ns A)," \
    "the same with b.sock, local=$ADDR_B,peer=$ADDR_A (ns B); sender --to stream:DIR/a.sock, receiver --from stream:DIR/b.sock"
echo "  kernel: ip link add vx0 type vxlan id $VNI dstport 4789 local $ADDR_A remote $ADDR_B dev uA; vx0 and veth s1 in bridge br0;" \
    "sender --to packet:s0 (ns A); the same in ns B with the addresses swapped, receiver --from packet:s0"
echo "  sender: vmlan-loadpeer send --size SIZE --count N --src-mac $TX_MAC --dst-mac $RX_MAC --seconds $LIMIT;" \
    "receiver: vmlan-loadpeer recv --count N --mac $RX_MAC --idle-ms 1000; each process under vmlan-loadpeer run --cpu-file"
