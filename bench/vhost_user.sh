#!/usr/bin/env bash
# vhost-user benchmark: frames/s and Gbit/s that a software switch forwards between two
# vhost-user ports, and the switch's CPU time per forwarded frame, at 64-byte and
# 1514-byte Ethernet frames (header included, no FCS), all on this machine in one run,
# over unix sockets only (no network at all). Compares, in interleaved rounds:
#   testpmd-switch  the reference userspace vhost switch (the VPP/OVS-DPDK class):
#                   `dpdk-testpmd --no-huge --vdev net_vhost0,iface=DIR/a.sock,queues=1
#                   --vdev net_vhost1,iface=DIR/b.sock,queues=1 -- --forward-mode=io`
#                   (a wire between its two ports: no MAC lookup; it busy-polls a core)
#   vmlan-vhost     `vmlan hub --addr 10.0.3.1/24 --vhost-user DIR/a.sock --vhost-user DIR/b.sock`
#   vmlan-stream    vmlan's unix stream path, `vmlan hub --addr 10.0.3.1/24 --stream
#                   unix:DIR/hub.sock`, with the project's load peer (vmlan-loadpeer send and
#                   recv, as bench/forwarding.sh's "vmlan 2 ports" row), so that the stream
#                   figure comes from the same run and machine state
# The project's goal: at 64 B, vmlan-vhost forwards at least 3x the frames/s of
# vmlan-stream and at least 1/1.5 (0.67x) of testpmd-switch's.
#
# The vhost-user peer (QEMU's role) for testpmd-switch and vmlan-vhost is the same DPDK
# process: `dpdk-testpmd` with two `net_virtio_user` ports (path=DIR/a.sock and
# DIR/b.sock, MACs 02:00:00:00:00:01 and :02, split rings of RING descriptors, in_order=0
# so that the driver takes the same path whatever the switch offers), ONE forwarding lcore,
# `--forward-mode=io` started with `start tx_first BURSTS`: each port first sends BURSTS
# bursts of 32 frames of SIZE bytes from its own MAC to the other port's (--eth-peer;
# --txpkts=SIZE+4, as testpmd takes 4 bytes off for an FCS that virtio does not carry),
# then every frame a port receives is sent again, unchanged, from the other port: the
# frames go round the switch (a->b frames stay a->b, b->a stay b->a), BURSTS x 32 of
# them in each direction, fewer than a ring holds, so no ring overflows. So the switch
# carries two flows at once, a->b and b->a, and the table gives their sum (the switch's
# forwarding rate) and each direction. (testpmd's flowgen mode, in DPDK 22.11, sends
# every frame of both ports from one fixed source MAC: a learning switch then sees that
# MAC move between its ports on every frame and floods all of them, to its own host
# too; io keeps each port's own MAC, as a guest's frames do.)
#
# Why not a txonly sender plus an rxonly receiver (two processes): this machine has 2
# cores, and every DPDK peer busy-polls a core. With the switch on one core and the
# two peers time-sliced on the other, the receiver runs only every other scheduler slice
# (milliseconds) while a 256-descriptor ring fills in microseconds: measured here, the
# testpmd switch took 14 Mframes/s from the sender and the receiver got 0.047 Mframes/s,
# the rest dropped on a full ring. That measures the scheduler, not the switch. One peer
# process with one polling lcore that both sends and receives needs one core, leaving the
# other to the switch. Bidirectional traffic also has the learning switch (vmlan) learn
# both MACs from the first frames, so nothing is flooded to its own host during the
# window (virtio has no queue stop, so one direction cannot be turned off anyway).
#
# CPUs: the switch, all its threads, is pinned to SWITCH_CPU (taskset; testpmd's lcores
# with --lcores 0@SWITCH_CPU,1@SWITCH_CPU); the peer, all its threads, to PEER_CPU (its
# lcores likewise). vmlan-stream gets the same: the hub on SWITCH_CPU, its sender and its
# receiver both on PEER_CPU (they block in read/write, so they share the core without
# spinning; the hub still drops frames when the receiver falls behind, see "lost"). The
# machine is shared with other builds and tests, so neither core is ever the switch's
# alone; "switch CPU" shows how much of a core the switch got during the window (well
# under 100% with a low "ring full", or for the stream row: the peers were the limit).
# Figures and what they say: the README, "vhost-user: vmlan vs testpmd's io switch".
#
# One vhost run: start the switch, then the peer (interactive testpmd fed through a FIFO),
# `start`, WARMUP seconds (the links come up, vmlan learns the MACs), `show port stats
# all` and the switch's CPU time (utime + stime of /proc/PID/stat, every thread) at t0,
# WINDOW seconds, the same at t1, then `stop` (its forward statistics give the run's
# totals) and `quit`. Frames/s and Gbit/s: the frames and bytes the peer received on
# both ports between t0 and t1 (testpmd's RX-packets, RX-bytes: frame bytes, no virtio
# header), over t1 - t0. "lost": frames the switch accepted from the peer (TX-packets)
# but never delivered (RX-packets of the other port), over the whole run, as a share of
# those accepted; it includes up to 2 x RING frames still in the rings at `stop`. "ring
# full": the share of the peer's send attempts refused because the switch's ring was
# full: near 0 means the peer was the bottleneck, high means the switch was. "CPU
# ns/frame": the switch's CPU time over the window / frames delivered in it (a polling
# switch burns its core whether frames come or not; that is its cost).
# One vmlan-stream run: as bench/forwarding.sh's 2-port run (the receiver counts
# FRAMES_<size> frames, timed from its first to its last frame; "lost" from the sequence
# numbers), with the hub's CPU time sampled from /proc at the sender's start signal and
# after the receiver ends; no "ring full" (a stream sender blocks instead).
#
# The DPDK processes share no files (--in-memory, or --no-shconf with --no-huge; their
# empty runtime directories, named after the script's pid, are removed on exit). The
# switch always runs without hugepages (--no-huge: its own memory is only its mbufs). The
# peer's memory is what the switch maps: by default 2 MB hugepages (as OVS-DPDK and VPP
# setups usually back guest memory), PEER_MEM MB of them, one file (--single-file-segments)
# shared over the vhost-user socket; the script raises /proc/sys/vm/nr_hugepages by what
# is missing and sets it back on exit. HUGE=0 gives the peer --no-huge instead (DPDK
# 22.11 backs --no-huge memory with a memfd of 4 KB pages, which virtio_user can share
# too, as QEMU's memory-backend-memfd without hugepages; no root needed for that part).
#
# Each configuration runs REPEAT times, interleaved round by round (the machine's speed
# drifts); the table shows the run with the median delivered frames/s.
#
# Run as root (installs dpdk-dev, which ships dpdk-testpmd, with apt-get if missing; and
# for the hugepages), from anywhere:
#   bench/vhost_user.sh
#   REPEAT=5 WINDOW=5 bench/vhost_user.sh
# Env: WINDOW (seconds measured per vhost run, default 5), WARMUP (seconds before it,
# default 1), FRAMES_64, FRAMES_1514 (frames per vmlan-stream run, default 2000000 and
# 500000), REPEAT (rounds, default 3), LIMIT (seconds any one run may take, default 60;
# every process is killed LIMIT+30 s after it started at the latest), ONLY (a
# space-separated subset of: testpmd-switch vmlan-vhost vmlan-stream), RING (virtio ring
# size, default 256, QEMU's default), HUGE (1: peer on hugepages, default; 0: --no-huge),
# PEER_MEM (the peer's memory in MB, default 256), SWITCH_CPU (default 0), PEER_CPU
# (default 1), VMLAN_BIN (the vmlan binary, default target/release/vmlan, built here),
# KEEP=1 (keep the work directory with every process's log).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WINDOW=${WINDOW:-5}
WARMUP=${WARMUP:-1}
FRAMES_64=${FRAMES_64:-2000000}
FRAMES_1514=${FRAMES_1514:-500000}
REPEAT=${REPEAT:-3}
LIMIT=${LIMIT:-60}
ONLY=${ONLY:-testpmd-switch vmlan-vhost vmlan-stream}
RING=${RING:-256}
# Bursts of 32 frames each port sends first (the frames then circulate; below RING/32).
BURSTS=${BURSTS:-4}
HUGE=${HUGE:-1}
PEER_MEM=${PEER_MEM:-256}
SWITCH_CPU=${SWITCH_CPU:-0}
PEER_CPU=${PEER_CPU:-1}
KEEP=${KEEP:-0}
SIZES=(64 1514)
MAC_A=02:00:00:00:00:01
MAC_B=02:00:00:00:00:02
LINE=
# Bound on every process of one run.
PROC_TIMEOUT=$((LIMIT + 30))
# testpmd's mbuf pools: 16384 x 2176 bytes fit both processes' memory.
MBUFS=16384
# DPDK's runtime directories (created even with --no-shconf/--in-memory): named after
# this script's pid, removed on exit.
DPDK_PREFIX=vmlan-bench-$$
if [[ $(id -u) == 0 ]]; then DPDK_RUN=/var/run/dpdk; else DPDK_RUN=${XDG_RUNTIME_DIR:-/tmp}/dpdk; fi

log() { echo "vhost_user.sh: $*" >&2; }

if awk -v w="$WINDOW" -v u="$WARMUP" -v l="$LIMIT" 'BEGIN { exit !(w + u + 10 > l) }'; then
    log "WARMUP + WINDOW + 10 s of setup must fit in LIMIT ($LIMIT s)"
    exit 2
fi
for cfg in $ONLY; do
    case $cfg in
    testpmd-switch | vmlan-vhost | vmlan-stream) ;;
    *) log "unknown configuration $cfg in ONLY"; exit 2 ;;
    esac
done

# ---- what it needs ----------------------------------------------------------
if [[ " $ONLY " == *" testpmd-switch "* || " $ONLY " == *" vmlan-vhost "* ]] && ! command -v dpdk-testpmd >/dev/null; then
    if [[ $(id -u) != 0 ]]; then
        log "dpdk-testpmd missing and not root: apt-get install -y dpdk-dev"
        exit 1
    fi
    log "installing dpdk-dev (dpdk-testpmd)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y dpdk-dev >/dev/null || { apt-get update >/dev/null && apt-get install -y dpdk-dev >/dev/null; }
fi

cd "$ROOT"
VMLAN_STATE=ok
if ! cargo build --release -p vmlan -p vmlan-bench; then
    log "building vmlan failed; measuring testpmd-switch only"
    cargo build --release -p vmlan-bench
    VMLAN_STATE="vmlan: build failed"
fi
LP=$ROOT/target/release/vmlan-loadpeer
VMLAN=${VMLAN_BIN:-$ROOT/target/release/vmlan}
VHOST_STATE=$VMLAN_STATE
if [[ $VMLAN_STATE == ok ]]; then
    help=$("$VMLAN" hub --help 2>/dev/null || true)
    [[ $help == *--stream* ]] || VMLAN_STATE="vmlan: --stream not available"
    [[ $help == *--vhost-user* ]] || VHOST_STATE="vmlan: --vhost-user not available yet"
fi
# state CFG: "ok" when the configuration can run, else why not.
state() {
    case $1 in
    testpmd-switch) echo ok ;;
    vmlan-vhost) echo "$VHOST_STATE" ;;
    vmlan-stream) echo "$VMLAN_STATE" ;;
    esac
}

# ---- processes --------------------------------------------------------------
WORK=$(mktemp -d /tmp/vmlan-vhost.XXXXXX)
PIDS=()
HUGE_OLD=
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -n $HUGE_OLD ]]; then
        echo "$HUGE_OLD" >/proc/sys/vm/nr_hugepages || log "could not set nr_hugepages back to $HUGE_OLD"
    fi
    rm -rf "$DPDK_RUN/$DPDK_PREFIX-switch" "$DPDK_RUN/$DPDK_PREFIX-peer"
    if [[ $KEEP == 1 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# measure_copy (bench/lib.sh) copies vmlan when SERVERS names it.
# shellcheck disable=SC2034
SERVERS=vmlan
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
measure_copy

# The peer's memory: hugepages (reserve what is missing, set back on exit) or --no-huge.
if [[ $HUGE == 1 && " $ONLY " != *" testpmd-switch "* && " $ONLY " != *" vmlan-vhost "* ]]; then
    HUGE=0
fi
if [[ $HUGE == 1 ]]; then
    if [[ $(id -u) != 0 ]]; then
        log "HUGE=1 needs root (for /proc/sys/vm/nr_hugepages); run as root or with HUGE=0"
        exit 1
    fi
    need_pages=$((PEER_MEM / 2 + 16))
    free_pages=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
    if ((free_pages < need_pages)); then
        HUGE_OLD=$(</proc/sys/vm/nr_hugepages)
        echo $((HUGE_OLD + need_pages - free_pages)) >/proc/sys/vm/nr_hugepages
        free_pages=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
        if ((free_pages < need_pages)); then
            log "could reserve only $free_pages of $need_pages 2 MB hugepages; try HUGE=0"
            exit 1
        fi
    fi
    PEER_MEM_ARGS=(--in-memory --single-file-segments -m "$PEER_MEM")
else
    # --no-huge implies --legacy-mem, which --in-memory refuses: --no-shconf instead.
    PEER_MEM_ARGS=(--no-huge --no-shconf -m "$PEER_MEM")
fi



# child_of PID: sets CHILD to the pid of PID's child (what `timeout` runs); fails after 5 s.
child_of() {
    local t=0
    CHILD=
    while [[ -z $CHILD ]]; do
        read -r CHILD _ <"/proc/$1/task/$1/children" 2>/dev/null || true
        [[ -n $CHILD ]] && return 0
        ((t++ < 500)) || { log "no child of $1"; return 1; }
        sleep 0.01
    done
}

# cpu_ticks PID: utime + stime of the process, all its threads, in clock ticks.
cpu_ticks() {
    local s
    read -r s <"/proc/$1/stat" || { echo 0; return; }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}
CLK_TCK=$(getconf CLK_TCK)

# start_switch KIND DIR: starts the switch on SWITCH_CPU; sets SW (its timeout wrapper)
# and SWPID (the switch itself), once its sockets exist.
start_switch() {
    local kind=$1 d=$2 socks
    case $kind in
    testpmd-switch)
        # --stats-period: non-interactive, runs until SIGTERM (stdin is not read).
        timeout -k 2 "$PROC_TIMEOUT" taskset -c "$SWITCH_CPU" dpdk-testpmd --no-huge --no-shconf -m 256 --no-pci \
            --file-prefix "$DPDK_PREFIX-switch" --lcores "0@$SWITCH_CPU,1@$SWITCH_CPU" \
            --vdev "net_vhost0,iface=$d/a.sock,queues=1" --vdev "net_vhost1,iface=$d/b.sock,queues=1" -- \
            --forward-mode=io --nb-cores=1 --total-num-mbufs=$MBUFS --stats-period=3600 \
            </dev/null >"$d/switch.log" 2>&1 &
        socks=("$d/a.sock" "$d/b.sock")
        ;;
    vmlan-vhost)
        timeout -k 2 "$PROC_TIMEOUT" taskset -c "$SWITCH_CPU" "$VMLAN" hub --addr 10.0.3.1/24 \
            --vhost-user "$d/a.sock" --vhost-user "$d/b.sock" </dev/null >"$d/switch.log" 2>&1 &
        socks=("$d/a.sock" "$d/b.sock")
        ;;
    vmlan-stream)
        timeout -k 2 "$PROC_TIMEOUT" taskset -c "$SWITCH_CPU" "$VMLAN" hub --addr 10.0.3.1/24 \
            --stream "unix:$d/hub.sock" </dev/null >"$d/switch.log" 2>&1 &
        socks=("$d/hub.sock")
        ;;
    esac
    SW=$!
    PIDS+=("$SW")
    child_of "$SW" || return 1
    SWPID=$CHILD
    wait_files "${socks[@]}" || return 1
    # The socket exists from bind(2); give listen(2) a moment.
    sleep 0.2
}

# testpmd_stats LOG: parses the peer's log: the two `show port stats all` (t0, t1) and
# the forward statistics that `stop` printed. Prints rx_ab= rx_ba= bytes= sent= lost=
# full=, or nothing when a part is missing.
testpmd_stats() {
    awk '
        /NIC statistics for port/ { mode = "nic"; p = $(NF - 1) + 0; k = ++n[p]; next }
        /Forward statistics for port/ { mode = "fwd"; p = $(NF - 1) + 0; f[p] = 1; next }
        /Accumulated forward statistics/ { mode = ""; next }
        mode == "nic" && $1 == "RX-packets:" { rxp[k, p] = $2; rxb[k, p] = $6 }
        mode == "fwd" && $1 == "RX-packets:" { frx[p] = $2 }
        mode == "fwd" && $1 == "TX-packets:" { ftx[p] = $2; fdrop[p] = $4; ftot[p] = $6; mode = "" }
        END {
            if (n[0] < 2 || n[1] < 2 || !f[0] || !f[1]) exit
            sent = ftx[0] + ftx[1]
            printf "rx_ab=%.0f rx_ba=%.0f bytes=%.0f sent=%.0f lost=%.0f full=%.4f\n",
                rxp[2, 1] - rxp[1, 1], rxp[2, 0] - rxp[1, 0],
                rxb[2, 0] - rxb[1, 0] + rxb[2, 1] - rxb[1, 1], sent,
                (ftx[0] - frx[1]) + (ftx[1] - frx[0]),
                (ftot[0] + ftot[1]) ? 100 * (fdrop[0] + fdrop[1]) / (ftot[0] + ftot[1]) : 0
        }' "$1"
}

# run_vhost KIND SIZE: one timed run of the testpmd peer through switch KIND
# (testpmd-switch or vmlan-vhost). Sets LINE to frames= bytes= seconds= fps= gbps=
# fps_ab= fps_ba= lost= sent= full= cpu_ns=. Runs in the main shell (not in $(...)) so
# that the EXIT trap knows every process.
run_vhost() {
    local kind=$1 size=$2 d cmd peer t c0 c1 t0 t1 st
    d=$(mktemp -d "$WORK/$kind-$size.XXXXXX")
    if ! start_switch "$kind" "$d"; then
        tail -5 "$d/switch.log" >&2 || true
        stop "${PIDS[@]}"
        PIDS=()
        return 1
    fi
    mkfifo "$d/peer.cmd"
    # stdin: the FIFO opened read-write, which never reaches EOF; the script writes
    # the commands to it.
    timeout -k 2 "$PROC_TIMEOUT" taskset -c "$PEER_CPU" dpdk-testpmd "${PEER_MEM_ARGS[@]}" --no-pci \
        --file-prefix "$DPDK_PREFIX-peer" --lcores "0@$PEER_CPU,1@$PEER_CPU" \
        --vdev "net_virtio_user0,path=$d/a.sock,queues=1,queue_size=$RING,mac=$MAC_A,in_order=0" \
        --vdev "net_virtio_user1,path=$d/b.sock,queues=1,queue_size=$RING,mac=$MAC_B,in_order=0" -- \
        -i --forward-mode=io --nb-cores=1 --total-num-mbufs=$MBUFS --txpkts=$((size + 4)) \
        --eth-peer=0,$MAC_B --eth-peer=1,$MAC_A <>"$d/peer.cmd" >"$d/peer.log" 2>&1 &
    peer=$!
    PIDS+=("$peer")
    exec {cmd}<>"$d/peer.cmd"
    t=0
    until grep -q 'testpmd> ' "$d/peer.log" 2>/dev/null; do
        if ((t++ > 3000)) || ! kill -0 "$peer" 2>/dev/null; then
            log "$kind/$size: the peer did not start"
            tail -5 "$d/peer.log" >&2 || true
            exec {cmd}>&-
            stop "${PIDS[@]}"
            PIDS=()
            return 1
        fi
        sleep 0.01
    done
    echo "start tx_first $BURSTS" >&"$cmd"
    sleep "$WARMUP"
    echo "show port stats all" >&"$cmd"
    t0=$EPOCHREALTIME
    c0=$(cpu_ticks "$SWPID")
    sleep "$WINDOW"
    echo "show port stats all" >&"$cmd"
    t1=$EPOCHREALTIME
    c1=$(cpu_ticks "$SWPID")
    echo stop >&"$cmd"
    echo quit >&"$cmd"
    wait "$peer" || log "$kind/$size: the peer exited with status $?"
    exec {cmd}>&-
    stop "$SW"
    PIDS=()
    st=$(testpmd_stats "$d/peer.log")
    if [[ -z $st ]]; then
        log "$kind/$size: no statistics from the peer"
        grep -v '^VHOST_CONFIG' "$d/peer.log" | tail -15 >&2 || true
        tail -5 "$d/switch.log" >&2 || true
        return 1
    fi
    LINE=$(awk -v st="$st" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$CLK_TCK" 'BEGIN {
        n = split(st, kv, /[ =]/); for (i = 1; i < n; i += 2) v[kv[i]] = kv[i + 1]
        s = t1 - t0; fr = v["rx_ab"] + v["rx_ba"]
        printf "frames=%.0f bytes=%.0f seconds=%.6f fps=%.0f gbps=%.4f fps_ab=%.0f fps_ba=%.0f lost=%.0f sent=%.0f full=%s cpu_ns=%.0f",
            fr, v["bytes"], s, fr / s, v["bytes"] * 8 / s / 1e9, v["rx_ab"] / s, v["rx_ba"] / s,
            v["lost"], v["sent"], v["full"], c * 1e9 / hz }')
    if [[ $(field frames "$LINE") == 0 || $(field fps_ab "$LINE") == 0 || $(field fps_ba "$LINE") == 0 ]]; then
        log "$kind/$size: nothing delivered in one direction at least: $LINE"
        tail -5 "$d/switch.log" >&2 || true
        return 1
    fi
    [[ $KEEP == 1 ]] || rm -rf "$d"
}

# run_stream SIZE: one vmlan-stream run (bench/forwarding.sh's vmlan 2-port run, pinned
# like the vhost runs). Sets LINE like run_vhost (fps_ab: the one direction; no full=).
run_stream() {
    local size=$1 d count rxp txp c0 c1 t0 t1
    count=FRAMES_$size
    count=${!count}
    d=$(mktemp -d "$WORK/vmlan-stream-$size.XXXXXX")
    if ! start_switch vmlan-stream "$d"; then
        tail -5 "$d/switch.log" >&2 || true
        stop "${PIDS[@]}"
        PIDS=()
        return 1
    fi
    timeout -k 2 "$PROC_TIMEOUT" taskset -c "$PEER_CPU" "$LP" recv --from "stream:$d/hub.sock" --count "$count" \
        --mac "$MAC_B" --seconds "$LIMIT" --idle-ms 1000 --ready-file "$d/rx.ready" >"$d/rx.out" 2>"$d/rx.err" &
    rxp=$!
    PIDS+=("$rxp")
    timeout -k 2 "$PROC_TIMEOUT" taskset -c "$PEER_CPU" "$LP" send --to "stream:$d/hub.sock" --size "$size" \
        --count "$count" --src-mac "$MAC_A" --dst-mac "$MAC_B" --seconds "$LIMIT" \
        --ready-file "$d/tx.ready" --wait-file "$d/go" 2>"$d/tx.err" &
    txp=$!
    PIDS+=("$txp")
    if ! wait_files "$d/rx.ready" "$d/tx.ready"; then
        cat "$d/rx.err" "$d/tx.err" "$d/switch.log" >&2 || true
        stop "${PIDS[@]}"
        PIDS=()
        return 1
    fi
    c0=$(cpu_ticks "$SWPID")
    t0=$EPOCHREALTIME
    touch "$d/go"
    wait "$txp" || log "vmlan-stream/$size: the sender failed: $(cat "$d/tx.err")"
    wait "$rxp" || true
    c1=$(cpu_ticks "$SWPID")
    t1=$EPOCHREALTIME
    stop "$SW"
    PIDS=()
    if ! grep -q '^frames=' "$d/rx.out"; then
        log "vmlan-stream/$size: no result from the receiver: $(cat "$d/rx.err")"
        tail -5 "$d/switch.log" >&2 || true
        return 1
    fi
    LINE="$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "frames=%.0f bytes=%.0f seconds=%s fps=%s gbps=%s fps_ab=%s fps_ba=0 lost=%.0f",
            v["frames"], v["bytes"], v["seconds"], v["fps"], v["gbps"], v["fps"], v["lost"] }' "$d/rx.out"
    ) sent=$count full=- cpu_ns=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", c * 1e9 / hz }') span=$(
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')"
    [[ $KEEP == 1 ]] || rm -rf "$d"
}



# The machine's speed drifts over minutes (shared, noisy), so the configurations are
# interleaved: each round runs every configuration once, in the same order, and each
# row reports its median over the REPEAT rounds.
declare -A RES RUNS
for ((r = 1; r <= REPEAT; r++)); do
    for size in "${SIZES[@]}"; do
        for cfg in $ONLY; do
            [[ $(state "$cfg") == ok ]] || continue
            if [[ $cfg == vmlan-stream ]]; then
                run_stream "$size" && ok=1 || ok=0
            else
                run_vhost "$cfg" "$size" && ok=1 || ok=0
            fi
            if ((ok)); then
                log "$cfg ${size} B round $r: $LINE"
                RUNS[$cfg/$size]+="$LINE"$'\n'
            else
                log "$cfg ${size} B round $r: failed"
            fi
        done
    done
done
for size in "${SIZES[@]}"; do
    for cfg in $ONLY; do
        if [[ $(state "$cfg") != ok ]]; then
            RES[$cfg/$size]=$(state "$cfg")
        elif [[ -n ${RUNS[$cfg/$size]:-} ]]; then
            mapfile -t lines <<<"${RUNS[$cfg/$size]%$'\n'}"
            median_of "${lines[@]}"
            RES[$cfg/$size]=$LINE
        else
            RES[$cfg/$size]="failed"
        fi
    done
done


peer_mem_descr() {
    if [[ $HUGE == 1 ]]; then echo "$PEER_MEM MB of 2 MB hugepages"; else echo "$PEER_MEM MB, --no-huge (memfd)"; fi
}
echo
echo "vhost-user benchmark, $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg);" \
    "$VMLAN_VERSION; DPDK $(dpkg-query -W -f='${Version}' dpdk-dev 2>/dev/null) dpdk-testpmd"
echo "vhost runs: $WARMUP s warm-up, $WINDOW s measured, peer: testpmd io both ways (tx_first $BURSTS), rings of $RING," \
    "$(peer_mem_descr); stream runs: 64 B: $FRAMES_64, 1514 B: $FRAMES_1514 frames one way;" \
    "switch on CPU $SWITCH_CPU, peers on CPU $PEER_CPU; $REPEAT interleaved round(s), median shown"
echo
echo "| configuration | size | Mframes/s | a->b / b->a Mframes/s | Gbit/s | lost | ring full | switch CPU | CPU ns/frame |"
echo "|---|---|---|---|---|---|---|---|---|"
for size in "${SIZES[@]}"; do
    for cfg in $ONLY; do
        l=${RES[$cfg/$size]}
        if [[ $l == frames=* ]]; then
            awk -v n="$cfg" -v s="$size" -v f="$(field fps "$l")" -v g="$(field gbps "$l")" \
                -v ab="$(field fps_ab "$l")" -v ba="$(field fps_ba "$l")" -v lost="$(field lost "$l")" \
                -v sent="$(field sent "$l")" -v full="$(field full "$l")" -v c="$(field cpu_ns "$l")" \
                -v sec="$(field seconds "$l")" -v span="$(field span "$l")" -v fr="$(field frames "$l")" 'BEGIN {
                    dirs = (ba > 0) ? sprintf("%.3f / %.3f", ab / 1e6, ba / 1e6) : sprintf("%.3f / -", ab / 1e6)
                    fullc = (full == "-") ? "-" : sprintf("%.1f%%", full)
                    # CPU share: over the measured window (vhost), or over the sender start
                    # to the receiver end (stream).
                    w = (span != "") ? span : sec
                    printf "| %s | %d B | %.3f | %s | %.3f | %.3f%% | %s | %.0f%% | %.0f |\n", n, s, f / 1e6, dirs, g,
                        (sent > 0) ? 100 * lost / sent : 0, fullc, (w > 0) ? 100 * c / 1e9 / w : 0,
                        (fr > 0) ? c / fr : 0 }'
        else
            echo "| $cfg | $size B | $l | | | | | | |"
        fi
    done
done
echo
echo "Ratios of delivered frames/s (goals at 64 B: vmlan-vhost >= 3.00x vmlan-stream, >= 0.67x testpmd-switch):"
for size in "${SIZES[@]}"; do
    printf '  %4s B: vmlan-vhost/vmlan-stream %s; vmlan-vhost/testpmd-switch %s; vmlan-stream/testpmd-switch %s\n' "$size" \
        "$(ratio fps_of vmlan-vhost/"$size" vmlan-stream/"$size")" "$(ratio fps_of vmlan-vhost/"$size" testpmd-switch/"$size")" \
        "$(ratio fps_of vmlan-stream/"$size" testpmd-switch/"$size")"
done
echo "The switch's CPU per delivered frame:"
for size in "${SIZES[@]}"; do
    printf '  %4s B: vmlan-vhost/vmlan-stream %s; vmlan-vhost/testpmd-switch %s\n' "$size" \
        "$(ratio cpu_per_frame vmlan-vhost/"$size" vmlan-stream/"$size")" \
        "$(ratio cpu_per_frame vmlan-vhost/"$size" testpmd-switch/"$size")"
done
echo
echo "Command: WINDOW=$WINDOW WARMUP=$WARMUP FRAMES_64=$FRAMES_64 FRAMES_1514=$FRAMES_1514 REPEAT=$REPEAT LIMIT=$LIMIT" \
    "RING=$RING HUGE=$HUGE PEER_MEM=$PEER_MEM ONLY='$ONLY' bench/vhost_user.sh"
echo "  switches (taskset -c $SWITCH_CPU):"
echo "    dpdk-testpmd --no-huge --no-shconf -m 256 --no-pci --file-prefix P --lcores 0@$SWITCH_CPU,1@$SWITCH_CPU" \
    "--vdev net_vhost0,iface=DIR/a.sock,queues=1 --vdev net_vhost1,iface=DIR/b.sock,queues=1 --" \
    "--forward-mode=io --nb-cores=1 --total-num-mbufs=$MBUFS --stats-period=3600"
echo "    vmlan hub --addr 10.0.3.1/24 --vhost-user DIR/a.sock --vhost-user DIR/b.sock"
echo "    vmlan hub --addr 10.0.3.1/24 --stream unix:DIR/hub.sock"
echo "  vhost peer (taskset -c $PEER_CPU): dpdk-testpmd ${PEER_MEM_ARGS[*]} --no-pci --file-prefix P --lcores 0@$PEER_CPU,1@$PEER_CPU" \
    "--vdev net_virtio_user0,path=DIR/a.sock,queues=1,queue_size=$RING,mac=$MAC_A,in_order=0" \
    "--vdev net_virtio_user1,path=DIR/b.sock,queues=1,queue_size=$RING,mac=$MAC_B,in_order=0 --" \
    "-i --forward-mode=io --nb-cores=1 --total-num-mbufs=$MBUFS --txpkts=SIZE+4 --eth-peer=0,$MAC_B --eth-peer=1,$MAC_A;" \
    "commands: start tx_first $BURSTS, (WARMUP) show port stats all, (WINDOW) show port stats all, stop, quit"
echo "  stream peers (taskset -c $PEER_CPU): vmlan-loadpeer recv --from stream:DIR/hub.sock --count N --mac $MAC_B" \
    "--seconds $LIMIT --idle-ms 1000; vmlan-loadpeer send --to stream:DIR/hub.sock --size SIZE --count N" \
    "--src-mac $MAC_A --dst-mac $MAC_B --seconds $LIMIT --wait-file DIR/go"
