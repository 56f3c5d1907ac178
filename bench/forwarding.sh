#!/usr/bin/env bash
# Forwarding benchmark: frames/s and Gbit/s delivered from ONE sender to ONE receiver
# (and from 4 senders to 4 receivers at once, see below) through a software switch, at 64-byte and 1514-byte Ethernet frames (header included,
# no FCS), all on this machine in one run, over unix sockets only (no network at all).
#
# Compares, with the same load peer (target/release/vmlan-loadpeer: one write/send
# syscall per frame on the sender; the receiver counts whole frames):
#   socat      2 ports  `socat UNIX-LISTEN:a UNIX-LISTEN:b` (a byte relay, no switching)
#   vde_switch 2 ports  vde2's learning switch; peers through libvdeplug (vde_send/vde_recv)
#   vde_switch 8 ports  the same plus 6 idle connected peers
#   vmlan      2 ports  `vmlan hub --addr 10.0.3.1/24 --stream unix:hub.sock`, QEMU stream framing
#   vmlan      8 ports  the same plus 6 idle connected peers
# An idle peer connects, sends one broadcast frame from its own MAC (so the switch
# learns it) and then only drains. Before its timed run the sender probes the
# receiver until it answers, because vde_switch forgets all learned MACs whenever a
# port connects (the sender connects last) and would otherwise flood every port.
# The "flooded" column (frames the 6 idle peers got, plus test frames a receiver got
# for another receiver's MAC) shows that no switch flooded.
#
# Several senders: 4 senders each send FRAMES/4 frames to a receiver of their own, all
# at once, through one switch of 8 ports (vde_switch, vmlan: socat4/vde4/vmlan4). socat
# only joins two endpoints, so its comparable figure is 4 socat relays, one per pair,
# their CPU times summed: the same 4 flows carried with no switching at all. The
# senders all connect before any starts (vde_switch forgets its MACs when a port
# connects). Delivered frames/s is all 4 receivers' frames over the span from the first
# receiver's first frame to the last one's last frame; CPU ns/frame is the switch's (or
# the 4 relays') CPU over all delivered frames.
# The script prints the ratios vmlan/socat (vmlan's 8-port figure is also compared
# with socat's 2-port one: socat has 2 ports only) and vmlan/vde_switch; the
# project's goal is vmlan >= 1.0x socat and >= 1.5x vde_switch.
#
# Each configuration runs REPEAT times, interleaved round by round (the machine's
# speed drifts); the table shows the run with the median delivered frames/s. "Mframes/s" and "Gbit/s" are what the receiver got, timed from
# its first to its last frame; "lost" is frames the switch dropped (vde_switch drops
# when the receiver falls behind; socat never drops, it pushes back on the sender);
# "offered" is the sender's own rate. "CPU ns/frame" is the switch process's CPU time
# over its whole run (user + system, all its threads: `vmlan-loadpeer run` starts it and
# reads wait4(2)'s rusage when it ends) divided by the frames the receiver got: what
# one forwarded frame costs the switch.
#
# Run (as root if socat/vde2/libvdeplug-dev must be installed), from anywhere:
#   bench/forwarding.sh
#   FRAMES_64=2000000 FRAMES_1514=500000 REPEAT=3 bench/forwarding.sh
# Env: FRAMES_64, FRAMES_1514 (frames per run), REPEAT (runs per configuration, median
# kept), LIMIT (seconds a sender/receiver may take per run, default 60), ONLY (a
# space-separated subset of: socat vde2 vde8 vmlan2 vmlan8 socat4 vde4 vmlan4), VMLAN_BIN (the vmlan
# binary to measure, default target/release/vmlan).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FRAMES_64=${FRAMES_64:-2000000}
FRAMES_1514=${FRAMES_1514:-500000}
REPEAT=${REPEAT:-3}
LIMIT=${LIMIT:-60}
ONLY=${ONLY:-socat vde2 vde8 vmlan2 vmlan8 socat4 vde4 vmlan4}
SIZES=(64 1514)
LINE=
TX_MAC=02:00:00:00:00:01
RX_MAC=02:00:00:00:00:02
# Bound on every process of one run: the peers give up after LIMIT seconds by themselves.
PROC_TIMEOUT=$((LIMIT + 30))

log() { echo "forwarding.sh: $*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- what it needs ----------------------------------------------------------
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
need=()
command -v socat >/dev/null || need+=(socat)
command -v vde_switch >/dev/null || need+=(vde2)
have_pkg libvdeplug-dev || need+=(libvdeplug-dev)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    if [[ $(id -u) != 0 ]]; then
        log "missing ${need[*]} and not root: apt-get install -y ${need[*]}"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${need[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi

cd "$ROOT"
VMLAN_STATE=ok
if ! cargo build --release -p vmlan -p vmlan-bench; then
    log "building vmlan failed; measuring the others only"
    cargo build --release -p vmlan-bench
    VMLAN_STATE="vmlan: build failed"
fi
LP=$ROOT/target/release/vmlan-loadpeer
VMLAN=${VMLAN_BIN:-$ROOT/target/release/vmlan}
if [[ $VMLAN_STATE == ok ]] && ! "$VMLAN" hub --help 2>/dev/null | grep -q -- --stream; then
    VMLAN_STATE="vmlan: --stream not available yet"
fi

# ---- processes --------------------------------------------------------------
WORK=$(mktemp -d /tmp/vmlan-fwd.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



# pair_macs K: the sender's and the receiver's MAC of pair K (1-based); pair 1 is
# TX_MAC and RX_MAC. Idle peers use 02:00:00:00:01:NN, so nothing collides.
pair_macs() { printf '02:00:00:00:00:%02x 02:00:00:00:00:%02x' $((2 * $1 - 1)) $((2 * $1)); }

# start_switch KIND DIR K: starts one switch (for socat: the relay of pair K) under
# `vmlan-loadpeer run`, writing its CPU time to DIR/cpuK; sets SW (its pid), RX and TX
# (the endpoints of pair K's receiver and sender).
start_switch() {
    local kind=$1 d=$2 k=$3
    case $kind in
    socat)
        # socat only joins two endpoints: each pair gets a relay of its own. It accepts
        # on the first address, and only then listens on the second: the receiver
        # connects to a first, the sender to b afterwards (it retries until b exists).
        timeout -k 2 "$PROC_TIMEOUT" "$LP" run --cpu-file "$d/cpu$k" -- \
            socat "UNIX-LISTEN:$d/a$k" "UNIX-LISTEN:$d/b$k" >"$d/switch$k.log" 2>&1 &
        SW=$!
        RX=stream:$d/a$k TX=stream:$d/b$k
        ;;
    vde)
        # Foreground vde_switch reads commands on stdin and exits on EOF: give it a
        # FIFO opened read-write, which never reaches EOF. No -x: a learning switch.
        mkfifo "$d/vde.stdin"
        timeout -k 2 "$PROC_TIMEOUT" "$LP" run --cpu-file "$d/cpu$k" -- \
            vde_switch -s "$d/vde" -M "$d/vde.mgmt" <>"$d/vde.stdin" >"$d/switch$k.log" 2>&1 &
        SW=$!
        RX=vde:$d/vde TX=vde:$d/vde
        wait_files "$d/vde.mgmt" || return 1
        # Check it is a learning switch, not a hub (vde_switch -x).
        local info
        info=$( (sleep 0.2; echo port/showinfo; sleep 0.3) | timeout 5 socat - "UNIX-CONNECT:$d/vde.mgmt" 2>&1 || true)
        if [[ $info != *HUB=false* ]]; then
            log "vde_switch does not report HUB=false: $info"
            return 1
        fi
        ;;
    vmlan)
        timeout -k 2 "$PROC_TIMEOUT" "$LP" run --cpu-file "$d/cpu$k" -- \
            "$VMLAN" hub --addr 10.0.3.1/24 --stream "unix:$d/hub.sock" >"$d/switch$k.log" 2>&1 &
        SW=$!
        RX=stream:$d/hub.sock TX=stream:$d/hub.sock
        ;;
    esac
}

# run_one KIND PORTS SIZE COUNT PAIRS: one measurement of PAIRS senders, each sending
# COUNT/PAIRS frames to a receiver of its own, through one switch of PORTS ports (the
# ports not taken by a pair get idle peers; socat: one 2-port relay per pair). Sets
# LINE to frames= bytes= seconds= fps= gbps= lost= offered= idle= stray= cpu_ns=,
# summed over the pairs (fps and gbps over the span from the first receiver's first
# frame to the last receiver's last; cpu_ns over every switch process). KIND: socat,
# vde or vmlan. Runs in the main shell (not in $(...)) so that the EXIT trap knows
# every process.
run_one() {
    local kind=$1 ports=$2 size=$3 count=$4 pairs=$5
    local d i k p tx_mac rx_mac per=$(($4 / $5)) nsw=1
    local sws=() rxpids=() txpids=() idle_pids=() ready=() txready=() rxs=() txs=()
    [[ $kind == socat ]] && nsw=$pairs
    d=$(mktemp -d "$WORK/run.XXXXXX")
    for ((k = 1; k <= nsw; k++)); do
        if ! start_switch "$kind" "$d" "$k"; then
            PIDS+=("$SW")
            stop "${PIDS[@]}"
            PIDS=()
            return 1
        fi
        sws+=("$SW")
        PIDS+=("$SW")
        rxs[k]=$RX txs[k]=$TX
    done
    for ((k = 1; k <= pairs; k++)); do
        read -r tx_mac rx_mac <<<"$(pair_macs "$k")"
        timeout -k 2 "$PROC_TIMEOUT" "$LP" recv --from "${rxs[k]:-${rxs[1]}}" --count "$per" --mac "$rx_mac" \
            --seconds "$LIMIT" --idle-ms 1000 --ready-file "$d/rx$k.ready" >"$d/rx$k.out" 2>"$d/rx$k.err" &
        rxpids+=($!)
        PIDS+=($!)
        ready+=("$d/rx$k.ready")
    done
    for ((i = 1; i <= ports - 2 * pairs; i++)); do
        timeout -k 2 "$PROC_TIMEOUT" "$LP" idle --from "${rxs[1]}" --mac "$(printf '02:00:00:00:01:%02x' "$i")" \
            --seconds "$PROC_TIMEOUT" --ready-file "$d/idle$i.ready" >"$d/idle$i.out" 2>"$d/idle$i.err" &
        idle_pids+=($!)
        PIDS+=($!)
        ready+=("$d/idle$i.ready")
    done
    if ! wait_files "${ready[@]}"; then
        cat "$d"/*.err "$d"/switch*.log >&2 || true
        stop "${PIDS[@]}"
        PIDS=()
        return 1
    fi

    # Every sender connects first (vde_switch forgets its MACs whenever a port
    # connects), then all start together: probe their receivers, then send.
    # In the background and waited for, so that a signal to the script acts at once.
    for ((k = 1; k <= pairs; k++)); do
        read -r tx_mac rx_mac <<<"$(pair_macs "$k")"
        timeout -k 2 "$PROC_TIMEOUT" "$LP" send --to "${txs[k]:-${txs[1]}}" --size "$size" --count "$per" \
            --src-mac "$tx_mac" --dst-mac "$rx_mac" --seconds "$LIMIT" --ready-file "$d/tx$k.ready" \
            --wait-file "$d/go" 2>"$d/tx$k.err" &
        txpids+=($!)
        PIDS+=($!)
        txready+=("$d/tx$k.ready")
    done
    wait_files "${txready[@]}" || log "$kind: a sender did not connect"
    touch "$d/go"
    for ((k = 1; k <= pairs; k++)); do
        if ! wait "${txpids[k - 1]}"; then
            log "$kind sender $k failed: $(cat "$d/tx$k.err")"
        fi
    done
    for p in "${rxpids[@]}"; do wait "$p" || true; done
    stop "${idle_pids[@]}" "${sws[@]}"
    PIDS=()
    local cpu=0 c
    for ((k = 1; k <= ${#sws[@]}; k++)); do
        c=$(sed -n 's/^cpu_ns=//p' "$d/cpu$k" 2>/dev/null || true)
        cpu=$((cpu + ${c:-0}))
    done
    for ((k = 1; k <= pairs; k++)); do
        if ! grep -q '^frames=' "$d/rx$k.out"; then
            log "$kind/$ports/$size: no result from receiver $k: $(cat "$d/rx$k.err")"
            tail -5 "$d"/switch*.log >&2 || true
            return 1
        fi
    done
    local offered=0 idle=0 n
    for ((k = 1; k <= pairs; k++)); do
        n=$(sed -n 's/.* fps=\([0-9.]*\).*/\1/p' "$d/tx$k.err")
        offered=$(awk -v a="$offered" -v b="${n:-0}" 'BEGIN { printf "%.0f", a + b }')
    done
    for ((i = 1; i <= ports - 2 * pairs; i++)); do
        n=$(sed -n 's/^idle frames=\([0-9]*\).*/\1/p' "$d/idle$i.out")
        idle=$((idle + ${n:-0}))
    done
    # The receivers' lines, summed; the span runs from the earliest t0 to the latest t1.
    LINE="$(cat "$d"/rx*.out | awk '
        { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
          fr += v["frames"]; by += v["bytes"]; lo += v["lost"]; st += v["stray"]
          if (t0 == "" || v["t0"] < t0) t0 = v["t0"]; if (v["t1"] > t1) t1 = v["t1"] }
        END { s = (t1 - t0) / 1e9
              printf "frames=%d bytes=%d seconds=%.6f fps=%.0f gbps=%.4f lost=%d stray=%d",
                  fr, by, s, (s > 0 ? fr / s : 0), (s > 0 ? by * 8 / s / 1e9 : 0), lo, st }'
    ) offered=$offered idle=$idle cpu_ns=$cpu"
    rm -rf "$d"
}



# kind_ports CFG: the switch, its ports and the sender/receiver pairs of a configuration.
kind_ports() {
    case $1 in
    socat) echo "socat 2 1" ;;
    vde2) echo "vde 2 1" ;;
    vde8) echo "vde 8 1" ;;
    vmlan2) echo "vmlan 2 1" ;;
    vmlan8) echo "vmlan 8 1" ;;
    socat4) echo "socat 2 4" ;;
    vde4) echo "vde 8 4" ;;
    vmlan4) echo "vmlan 8 4" ;;
    *) log "unknown configuration $1 in ONLY"; exit 2 ;;
    esac
}

# The machine's speed drifts over minutes (shared, noisy), so the configurations
# are interleaved: each round runs every configuration once, in the same order, and
# each row reports its median over the REPEAT rounds.
declare -A RES RUNS
for ((r = 1; r <= REPEAT; r++)); do
    for size in "${SIZES[@]}"; do
        count=FRAMES_$size
        count=${!count}
        for cfg in $ONLY; do
            read -r kind ports pairs <<<"$(kind_ports "$cfg")"
            [[ $kind == vmlan && $VMLAN_STATE != ok ]] && continue
            if run_one "$kind" "$ports" "$size" "$count" "$pairs"; then
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
        read -r kind _ _ <<<"$(kind_ports "$cfg")"
        if [[ $kind == vmlan && $VMLAN_STATE != ok ]]; then
            RES[$cfg/$size]=$VMLAN_STATE
        elif [[ -n ${RUNS[$cfg/$size]:-} ]]; then
            mapfile -t lines <<<"${RUNS[$cfg/$size]%$'\n'}"
            median_of "${lines[@]}"
            RES[$cfg/$size]=$LINE
        else
            RES[$cfg/$size]="failed"
        fi
    done
done

# ---- report -----------------------------------------------------------------
name() {
    case $1 in
    socat) echo "socat (2 ports)" ;;
    vde2) echo "vde_switch (2 ports)" ;;
    vde8) echo "vde_switch (8 ports)" ;;
    vmlan2) echo "vmlan hub (2 ports)" ;;
    vmlan8) echo "vmlan hub (8 ports)" ;;
    socat4) echo "socat 4x2 ports, 4 tx" ;;
    vde4) echo "vde_switch 8p, 4 tx" ;;
    vmlan4) echo "vmlan hub 8p, 4 tx" ;;
    esac
}
# ratio_lines OF: per size, vmlan over socat and over vde_switch, by OF; with 4
# senders, vmlan's one hub over socat's 4 relays and over vde_switch's one switch.
ratio_lines() {
    local size
    for size in "${SIZES[@]}"; do
        printf '  %4s B: vmlan/socat 2 ports %s, 8 ports (vs socat 2) %s; vmlan/vde_switch 2 ports %s, 8 ports %s\n' \
            "$size" "$(ratio "$1" vmlan2/"$size" socat/"$size")" "$(ratio "$1" vmlan8/"$size" socat/"$size")" \
            "$(ratio "$1" vmlan2/"$size" vde2/"$size")" "$(ratio "$1" vmlan8/"$size" vde8/"$size")"
        printf '  %4s B, 4 senders: vmlan/socat (4 relays) %s; vmlan/vde_switch %s\n' \
            "$size" "$(ratio "$1" vmlan4/"$size" socat4/"$size")" "$(ratio "$1" vmlan4/"$size" vde4/"$size")"
    done
}

echo
echo "Forwarding benchmark, $(nproc) CPUs, $(uname -r); $(socat -V 2>/dev/null | sed -n 's/^socat version \([^ ]*\).*/socat \1/p'),"\
    "vde_switch $(dpkg-query -W -f='${Version}' vde-switch 2>/dev/null), libvdeplug $(dpkg-query -W -f='${Version}' libvdeplug2 2>/dev/null)"
echo "Frames per run: 64 B: $FRAMES_64, 1514 B: $FRAMES_1514; $REPEAT interleaved round(s), median shown"
echo
printf '%-22s %6s %11s %9s %9s %11s %8s %13s\n' configuration size Mframes/s Gbit/s lost offered flooded 'CPU ns/frame'
for size in "${SIZES[@]}"; do
    for cfg in $ONLY; do
        l=${RES[$cfg/$size]}
        if [[ $l == frames=* ]]; then
            awk -v n="$(name "$cfg")" -v s="$size" -v f="$(field fps "$l")" -v g="$(field gbps "$l")" \
                -v lost="$(field lost "$l")" -v fr="$(field frames "$l")" -v o="$(field offered "$l")" \
                -v i="$(($(field idle "$l") + $(field stray "$l")))" -v c="$(cpu_per_frame "$cfg/$size")" 'BEGIN {
                    printf "%-22s %4s B %11.3f %9.3f %8.2f%% %11.3f %8s %13s\n", n, s, f / 1e6, g,
                        (fr + lost) ? 100 * lost / (fr + lost) : 0, o / 1e6, i, c }'
        else
            printf '%-22s %4s B  %s\n' "$(name "$cfg")" "$size" "$l"
        fi
    done
done
echo
echo "Ratios (delivered frames/s; goal: >= 1.00x socat, >= 1.50x vde_switch):"
ratio_lines fps_of
echo
echo "The switch's CPU per delivered frame (goal: vmlan at most 0.50x socat at 64 B):"
ratio_lines cpu_per_frame
echo
echo "Command: FRAMES_64=$FRAMES_64 FRAMES_1514=$FRAMES_1514 REPEAT=$REPEAT LIMIT=$LIMIT ONLY='$ONLY' bench/forwarding.sh"
echo "  switches: socat UNIX-LISTEN:DIR/a UNIX-LISTEN:DIR/b | vde_switch -s DIR/vde -M DIR/vde.mgmt <>FIFO |" \
    "vmlan hub --addr 10.0.3.1/24 --stream unix:DIR/hub.sock; each as: vmlan-loadpeer run --cpu-file DIR/cpu -- SWITCH"
echo "  receiver: vmlan-loadpeer recv --from stream:DIR/a|vde:DIR/vde|stream:DIR/hub.sock --count N --mac $RX_MAC" \
    "--seconds $LIMIT --idle-ms 1000 --ready-file DIR/rx.ready"
echo "  idle x6:  vmlan-loadpeer idle --from ENDPOINT --mac 02:00:00:00:01:0K --ready-file DIR/idleK.ready"
echo "  sender:   vmlan-loadpeer send --to stream:DIR/b|vde:DIR/vde|stream:DIR/hub.sock --size SIZE --count N" \
    "--src-mac $TX_MAC --dst-mac $RX_MAC --seconds $LIMIT --ready-file DIR/tx.ready --wait-file DIR/go"
echo "  4 senders: the same 4 times over, pair K with MACs 02:00:00:00:00:(2K-1) -> :(2K), N/4 frames each," \
    "one switch of 8 ports (socat: one relay per pair, CPU summed); DIR/go is created once all 4 senders are connected"
