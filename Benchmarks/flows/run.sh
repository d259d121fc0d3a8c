#!/usr/bin/env bash
# Side-by-side flow benchmark: the bare libpcap read loop (floor), softflowd -r, vigilctl flows.
# Prints packets/s and peak RSS of each and Vigil's ratios. Usage: Benchmarks/flows/run.sh [PACKETS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
packets="${1:-2000000}"
capture="/tmp/vigil-flows-bench-$packets.pcap"
work="$(mktemp -d /tmp/vigil-flows-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT

if ! command -v softflowd >/dev/null; then
    echo "== installing softflowd (Debian package)"
    apt-get install -y -qq softflowd >/dev/null
fi
[ -f "$capture" ] || python3 "$here/generate.py" "$capture" "$packets"
cc -O2 -o "$work/readloop" "$here/readloop.c" $(pkg-config --cflags --libs libpcap)
(cd "$repo" && swift build -c release --product vigilctl >/dev/null)
vigilctl="$repo/.build/release/vigilctl"

# measure NAME COMMAND...: best wall time of 3 runs and peak RSS (GNU time).
measure() {
    local name="$1"; shift
    local best="" rss=""
    for _ in 1 2 3; do
        /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        read -r seconds kib <"$work/time"
        if [ -z "$best" ] || awk "BEGIN{exit !($seconds < $best)}"; then best="$seconds"; fi
        rss="$kib"
    done
    local pps
    pps=$(awk "BEGIN{printf \"%.0f\", $packets / ($best > 0 ? $best : 0.001)}")
    printf "%-28s %8.3f s  %12s packets/s  %8.1f MiB peak RSS\n" "$name" "$best" "$pps" "$(awk "BEGIN{print $rss/1024}")"
    eval "pps_${name//[^a-z]/_}=$pps"
}

echo "== $capture ($packets packets)"
measure readloop "$work/readloop" "$capture"
# softflowd exports NetFlow to a loopback port nobody listens on.
measure softflowd softflowd -r "$capture" -n 127.0.0.1:9 -v 9
measure vigilctl "$vigilctl" flows --pcap "$capture" --json
echo "== vigilctl / softflowd: $(awk "BEGIN{printf \"%.2f\", $pps_vigilctl / $pps_softflowd}")x (goal >= 3)"
echo "== vigilctl / readloop:  $(awk "BEGIN{printf \"%.1f\", 100 * $pps_vigilctl / $pps_readloop}")% (goal >= 30%)"
