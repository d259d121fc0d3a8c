#!/usr/bin/env bash
# Side-by-side benchmark: inotifywait -m -r (inotify-tools) and Vigil's FileSensor watch the
# same churn at the same time: FILES files created, written (64 bytes) and deleted across DIRS
# directories (3 inotify events per file). Hashing is off for the comparison; a second churn
# measures our sensor alone with hashing on: FILES files created and written that stay (2 events
# per file, both hashed when the file is still there), then removed.
#
# Prints, per tool: events received, CPU seconds (user+sys from /proc/PID/stat), µs of CPU per
# event, overflows; then the ratio ours / inotifywait.
#
# usage: Benchmarks/file-sensor/run.sh [FILES] [DIRS]      (defaults: 200000 1000)
# needs: inotifywait (Debian inotify-tools), cc, swift; the root package must export a
#        `VigilSensors` library product (Benchmarks/file-sensor/Package.swift depends on it).
set -euo pipefail

FILES=${1:-200000}
DIRS=${2:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/vigil-file-bench.XXXXXX)
ROOT="$WORK/tree"
IW_PID=""
OURS_PID=""

cleanup() {
    [ -n "$IW_PID" ] && kill "$IW_PID" 2>/dev/null || true
    [ -n "$OURS_PID" ] && kill "$OURS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v inotifywait >/dev/null || { echo "inotifywait not found (apt-get install inotify-tools)" >&2; exit 1; }

echo "building the churn generator and the sensor benchmark (release)..." >&2
cc -O2 -o "$WORK/churn" "$HERE/churn.c"
swift build -c release --package-path "$HERE" --product file-sensor-bench >&2
BENCH="$(swift build -c release --package-path "$HERE" --show-bin-path)/file-sensor-bench"

mkdir -p "$ROOT"
"$WORK/churn" setup "$ROOT" "$DIRS"

# CPU seconds (utime + stime) of a live process.
cpu_of() {
    awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / tck }' "/proc/$1/stat"
}

# Waits until the watcher(s) saw a sentinel file; creates a new one every 0.5 s in case one was
# lost in a kernel queue overflow. $1: a command that succeeds once everyone is done.
await_sentinel() {
    local i=0
    while ! eval "$1"; do
        : > "$ROOT/vigil-bench-done.$i"
        i=$((i + 1))
        [ "$i" -gt 600 ] && { echo "watchers never saw the end of the churn" >&2; exit 1; }
        sleep 0.5
    done
}

# Starts our sensor with hashing limit $1; sets OURS_PID, waits for READY.
start_ours() {
    "$BENCH" "$ROOT" vigil-bench-done "$1" > "$WORK/ours.out" 2> "$WORK/ours.err" &
    OURS_PID=$!
    until grep -q READY "$WORK/ours.out" 2>/dev/null; do
        kill -0 "$OURS_PID" 2>/dev/null || { cat "$WORK/ours.err" >&2; exit 1; }
        sleep 0.05
    done
}

field() { sed -n "s/.*\b$1=\([0-9.e+-]*\).*/\1/p" "$WORK/ours.out"; }

# --- run 1: both watchers, hashing off -------------------------------------------------
inotifywait -m -r -e create,close_write,attrib,delete,moved_from,moved_to \
    --format '%e %w%f' "$ROOT" > "$WORK/iw.out" 2> "$WORK/iw.err" &
IW_PID=$!
until grep -q "Watches established" "$WORK/iw.err" 2>/dev/null; do
    kill -0 "$IW_PID" 2>/dev/null || { cat "$WORK/iw.err" >&2; exit 1; }
    sleep 0.05
done
start_ours 0

echo "churn: $FILES files x (create, write, close, delete) across $DIRS directories" >&2
"$WORK/churn" run "$ROOT" "$FILES" "$DIRS"
await_sentinel 'grep -q vigil-bench-done "$WORK/iw.out" && ! kill -0 "$OURS_PID" 2>/dev/null'
IW_CPU=$(cpu_of "$IW_PID")
kill "$IW_PID"; wait "$IW_PID" 2>/dev/null || true; IW_PID=""
wait "$OURS_PID" 2>/dev/null || true; OURS_PID=""

IW_EVENTS=$(grep -v vigil-bench-done "$WORK/iw.out" | grep -vc Q_OVERFLOW || true)
IW_OVERFLOWS=$(cat "$WORK/iw.out" "$WORK/iw.err" | grep -c Q_OVERFLOW || true)
OURS_EVENTS=$(field events); OURS_CPU=$(field cpu_seconds)
OURS_OVERFLOWS=$(field overflows); OURS_DROPS=$(field queue_drops)
OURS_THREADS=$(sed -n 's/^threads_cpu=//p' "$WORK/ours.out")

# --- run 2: our sensor alone, hashing on (16 MiB limit), on files that stay -------------
rm -f "$ROOT"/vigil-bench-done.*
start_ours $((16 << 20))
"$WORK/churn" keep "$ROOT" "$FILES" "$DIRS"
await_sentinel '! kill -0 "$OURS_PID" 2>/dev/null'
wait "$OURS_PID" 2>/dev/null || true; OURS_PID=""
find "$ROOT" -type f -delete
H_EVENTS=$(field events); H_CPU=$(field cpu_seconds); H_HASHED=$(field hashed)
H_OVERFLOWS=$(field overflows); H_DROPS=$(field queue_drops)
H_THREADS=$(sed -n 's/^threads_cpu=//p' "$WORK/ours.out")

per_event() { awk -v c="$1" -v e="$2" 'BEGIN { if (e > 0) printf "%.2f", c * 1e6 / e; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

IW_US=$(per_event "$IW_CPU" "$IW_EVENTS")
OURS_US=$(per_event "$OURS_CPU" "$OURS_EVENTS")
H_US=$(per_event "$H_CPU" "$H_EVENTS")

echo
echo "churn: $FILES files across $DIRS directories ($((FILES * 3)) inotify events expected)"
printf "%-28s %10s %10s %12s %10s %12s\n" tool events cpu_s us_per_event overflows queue_drops
printf "%-28s %10s %10s %12s %10s %12s\n" "inotifywait -m -r" "$IW_EVENTS" "$IW_CPU" "$IW_US" "$IW_OVERFLOWS" "-"
printf "%-28s %10s %10s %12s %10s %12s\n" "vigil FileSensor (no hash)" "$OURS_EVENTS" "$OURS_CPU" "$OURS_US" "$OURS_OVERFLOWS" "$OURS_DROPS"
echo "ratio ours/inotifywait: cpu $(ratio "$OURS_CPU" "$IW_CPU"), us/event $(ratio "$OURS_US" "$IW_US")"
echo
echo "with hashing, alone: $FILES files created and written that stay ($((FILES * 2)) events)"
printf "%-28s %10s %10s %12s %10s %12s   (hashed: %s)\n" "vigil FileSensor (sha256)" "$H_EVENTS" "$H_CPU" "$H_US" "$H_OVERFLOWS" "$H_DROPS" "$H_HASHED"
echo "vigil CPU by thread (s): no hash: $OURS_THREADS; sha256: $H_THREADS"
