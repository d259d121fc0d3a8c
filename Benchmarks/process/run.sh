#!/usr/bin/env bash
# Side-by-side benchmark: forkstat (Debian forkstat, also on the proc connector) and Vigil's
# ProcessSensor watch the same burst of N execs from a tight C fork/exec loop (spawn.c: each
# child runs `/bin/true vigil-bench-NONCE-I`, reaped before the next fork).
#
# Two bursts: forkstat subscribed first, then Vigil first. Each exec message wakes both
# listeners at once and, on a small machine, they race for the same free CPU to read /proc
# before the child exits; the listener that subscribed first wins that race far more often
# (measured: forkstat 94% named right when first, 63% when second). So each tool is scored in
# both positions, on the same bursts.
#
# Prints, per burst and tool: execs seen (%), Image right (%), CommandLine right (%) (exactly
# the child's own argv), context marked complete (ours), CPU seconds per 10,000 execs; then
# the CPU ratio ours / forkstat over both bursts.
#
# usage: Benchmarks/process/run.sh [N]      (default 20000; run as root)
# PROCESS_BENCH_READER_NICE=N|none sets the sensor's reader thread priority (default: the
# sensor's, -10; "none": as the process). PROCESS_BENCH_AS_UNIT=1 runs the sensor as systemd's
# unit runs vigild (SCHED_BATCH, Nice=10; its reader still takes its own priority).
# needs: forkstat (Debian forkstat), cc, swift; the root package must export `VigilSensors`.
set -euo pipefail

N=${1:-20000}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/vigil-process-bench.XXXXXX)
FS_PID=""
OURS_PID=""
cleanup() {
    [ -n "$FS_PID" ] && kill "$FS_PID" 2>/dev/null || true
    [ -n "$OURS_PID" ] && kill "$OURS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "run as root (the proc connector needs CAP_NET_ADMIN)" >&2; exit 1; }
command -v forkstat >/dev/null || { echo "forkstat not found (apt-get install forkstat)" >&2; exit 1; }

echo "building the spawner and the sensor benchmark (release, own build directory)..." >&2
cc -O2 -o "$WORK/spawn" "$HERE/spawn.c"
SCRATCH=${VIGIL_BENCH_SCRATCH:-$HERE/.build}
swift build -c release --package-path "$HERE" --scratch-path "$SCRATCH" --product process-bench >&2
BENCH="$(swift build -c release --package-path "$HERE" --scratch-path "$SCRATCH" --show-bin-path)/process-bench"

cpu_of() {
    awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / tck }' "/proc/$1/stat"
}

start_forkstat() {
    forkstat -l -e exec > "$WORK/forkstat.out" 2> "$WORK/forkstat.err" &
    FS_PID=$!
    until grep -q "Process" "$WORK/forkstat.out" 2>/dev/null; do
        kill -0 "$FS_PID" 2>/dev/null || { cat "$WORK/forkstat.err" >&2; exit 1; }
        sleep 0.05
    done
}

start_ours() {
    local as_unit=()
    [ "${PROCESS_BENCH_AS_UNIT:-0}" = 1 ] && as_unit=(chrt -b 0 nice -n 10)
    "${as_unit[@]}" "$BENCH" "$WORK/spawn" "$WORK/ours.tsv" > "$WORK/ours.out" 2> "$WORK/ours.err" &
    OURS_PID=$!
    until grep -q READY "$WORK/ours.out" 2>/dev/null; do
        kill -0 "$OURS_PID" 2>/dev/null || { cat "$WORK/ours.err" >&2; exit 1; }
        sleep 0.05
    done
}

# burst FIRST: subscribes FIRST (forkstat|vigil) then the other, runs one burst and prints
# its two rows; adds the CPU seconds to FS_CPU_TOTAL and OURS_CPU_TOTAL.
FS_CPU_TOTAL=0
OURS_CPU_TOTAL=0
burst() {
    if [ "$1" = forkstat ]; then start_forkstat; start_ours; else start_ours; start_forkstat; fi
    local fs_cpu0 nonce fs_cpu ours_cpu score_forkstat score_ours
    fs_cpu0=$(cpu_of "$FS_PID")
    nonce=$RANDOM$RANDOM
    echo "burst ($1 subscribed first): $N execs of /bin/true vigil-bench-$nonce-I" >&2
    "$WORK/spawn" "$N" "$nonce" "$WORK/pids"
    /bin/sh -c 'sleep 0.3' vigil-bench-done
    wait "$OURS_PID"; OURS_PID=""
    sleep 1  # let forkstat finish printing
    fs_cpu=$(awk -v a="$(cpu_of "$FS_PID")" -v b="$fs_cpu0" 'BEGIN { print a - b }')
    kill "$FS_PID"; wait "$FS_PID" 2>/dev/null || true; FS_PID=""

    # Scores: child k (line k of pids, from 0) ran exactly `/bin/true vigil-bench-NONCE-k`.
    score_forkstat=$(awk -v nonce="$nonce" '
        FNR == NR { want[$1] = "/bin/true vigil-bench-" nonce "-" (FNR - 1); next }
        $2 == "exec" && ($3 in want) {
            name = $0; sub(/^[^ ]+ +exec +[0-9]+ +/, "", name); sub(/ +$/, "", name)
            seen++
            if (name == want[$3]) right++
            split(name, w, " "); if (w[1] == "/bin/true") image++
        }
        END { printf "%d %d %d", seen, image, right }' "$WORK/pids" "$WORK/forkstat.out")
    score_ours=$(awk -F'\t' -v nonce="$nonce" '
        FNR == NR { want[$1] = "/bin/true vigil-bench-" nonce "-" (FNR - 1); next }
        ($1 in want) {
            seen++
            if ($3 == "/usr/bin/true") image++
            if ($4 == want[$1]) right++
            if ($2 == 0) full++
        }
        END { printf "%d %d %d %d", seen, image, right, full }' "$WORK/pids" "$WORK/ours.tsv")
    read -r fs_seen fs_image fs_right <<< "$score_forkstat"
    read -r o_seen o_image o_right o_full <<< "$score_ours"
    ours_cpu=$(sed -n 's/.*cpu_seconds=\([0-9.e+-]*\).*/\1/p' "$WORK/ours.out")
    FS_CPU_TOTAL=$(awk -v a="$FS_CPU_TOTAL" -v b="$fs_cpu" 'BEGIN { print a + b }')
    OURS_CPU_TOTAL=$(awk -v a="$OURS_CPU_TOTAL" -v b="$ours_cpu" 'BEGIN { print a + b }')
    local fs_label="forkstat" ours_label="vigil ProcessSensor"
    if [ "$1" = forkstat ]; then fs_label+=" (first)"; else ours_label+=" (first)"; fi
    printf "%-28s %9s %11s %17s %14s %14s\n" "$fs_label" "$(pct "$fs_seen")" "$(pct "$fs_image")" "$(pct "$fs_right")" "-" "$(per10k "$fs_cpu")"
    printf "%-28s %9s %11s %17s %14s %14s\n" "$ours_label" "$(pct "$o_seen")" "$(pct "$o_image")" "$(pct "$o_right")" "$(pct "$o_full")" "$(per10k "$ours_cpu")"
    echo "vigil counters: $(tail -1 "$WORK/ours.out")" >&2
}

pct() { awk -v a="$1" -v n="$N" 'BEGIN { printf "%.1f%%", a * 100 / n }'; }
per10k() { awk -v c="$1" -v n="$N" 'BEGIN { printf "%.3f", c * 10000 / n }'; }

echo
echo "bursts of $N execs from a C fork/exec loop, each tool subscribed first in one of them"
printf "%-28s %9s %11s %17s %14s %14s\n" tool seen image_right command_line_right full_context cpu_s_per_10k
burst forkstat
burst vigil
awk -v a="$OURS_CPU_TOTAL" -v b="$FS_CPU_TOTAL" 'BEGIN { if (b > 0) printf "cpu ratio ours/forkstat (both bursts): %.2f\n", a / b }'
