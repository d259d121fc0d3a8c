#!/usr/bin/env bash
# Side-by-side flow benchmark: the bare libpcap read loop (floor), softflowd -r, vigilctl flows.
# Prints packets/s and peak RSS of each and Vigil's ratios. Usage: Benchmarks/flows/run.sh [PACKETS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
packets="${1:-2000000}"
capture="/tmp/vigil-flows-bench-$packets.pcap"
work="$(mktemp -d /tmp/vigil-flows-bench.XXXXXX)"
trap '[ -n "${FLOWS_BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT

if ! command -v softflowd >/dev/null; then
    echo "== installing softflowd (Debian package)"
    apt-get install -y -qq softflowd >/dev/null
fi
[ -f "$capture" ] || python3 "$here/generate.py" "$capture" "$packets"
cc -O2 -o "$work/readloop" "$here/readloop.c" $(pkg-config --cflags --libs libpcap)
(cd "$repo" && swift build -c release --product vigilctl >/dev/null)
vigilctl="$repo/.build/release/vigilctl"

# The machine's speed drifts from one second to the next, so the three programs run in turns,
# ROUNDS times (FLOWS_BENCH_ROUNDS, default 7), and each ratio is the median of the ratios of
# the same round; each program's time is its median (range in brackets).
rounds="${FLOWS_BENCH_ROUNDS:-7}"

# run_once NAME COMMAND...: wall seconds (bash's clock, microseconds) to $work/NAME.times, peak
# RSS (GNU time, KiB) to $work/NAME.rss.
run_once() {
    local name="$1"; shift
    local start end
    start=$EPOCHREALTIME
    /usr/bin/time -f "%M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    end=$EPOCHREALTIME
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f\n", b - a }' >> "$work/$name.times"
    cat "$work/time" >> "$work/$name.rss"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f-%.3f", lo, hi }'; }

report() {
    local name="$1" seconds pps rss
    seconds=$(median < "$work/$name.times")
    pps=$(awk -v n="$packets" -v s="$seconds" 'BEGIN { printf "%.0f", n / (s > 0 ? s : 0.001) }')
    rss=$(sort -n "$work/$name.rss" | tail -1)
    printf "%-12s %8.3f s [%s]  %12s packets/s  %8.1f MiB peak RSS\n" "$name" "$seconds" \
        "$(range < "$work/$name.times")" "$pps" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
}

# paired NUMERATOR DENOMINATOR: median and range over the rounds of NUMERATOR's time / DENOMINATOR's.
paired() {
    paste "$work/$1.times" "$work/$2.times" | awk '{ print $1 / $2 }' > "$work/ratio"
    echo "$(median < "$work/ratio") $(range < "$work/ratio")"
}

echo "== $capture ($packets packets), $rounds rounds"
for _ in $(seq "$rounds"); do
    run_once readloop "$work/readloop" "$capture"
    # softflowd exports NetFlow to a loopback port nobody listens on.
    run_once softflowd softflowd -r "$capture" -n 127.0.0.1:9 -v 9
    run_once vigilctl "$vigilctl" flows --pcap "$capture" --json
done
report readloop
report softflowd
report vigilctl
read -r vs_softflowd vs_softflowd_range <<< "$(paired softflowd vigilctl)"
read -r vs_readloop vs_readloop_range <<< "$(paired readloop vigilctl)"
echo "== vigilctl / softflowd: $(awk -v r="$vs_softflowd" 'BEGIN { printf "%.2f", r }')x [$vs_softflowd_range] (goal >= 3)"
echo "== vigilctl / readloop:  $(awk -v r="$vs_readloop" 'BEGIN { printf "%.1f", 100 * r }')% [$(awk -v r="$vs_readloop_range" 'BEGIN { split(r, x, "-"); printf "%.1f-%.1f", 100 * x[1], 100 * x[2] }')%] (goal >= 30%)"
