#!/usr/bin/env bash
# Wire benchmark, side by side in one run: Vigil's batches (protobuf, zstd, Ed25519, hash chain)
# against the same events as JSON lines + gzip per batch. Prints events/s (one core) and wire
# bytes per event for each, and the ratios.
#
# usage: Benchmarks/wire/run.sh [EVENTS] [BATCH]      (defaults: 1000000 2000)
set -euo pipefail
EVENTS=${1:-1000000}
BATCH=${2:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/vigil-wire-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
(cd "$HERE" && swift build -c release --product wire-bench >&2)
BIN=$(cd "$HERE" && swift build -c release --show-bin-path)/wire-bench
ours=$("$BIN" --events "$EVENTS" --batch "$BATCH" --json-out "$WORK/events.jsonl")
ref=$(python3 "$HERE/reference.py" "$WORK/events.jsonl" "$BATCH")
python3 - "$ours" "$ref" <<'PY'
import json, sys
o, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"events: {o['events']:,} in batches of {o['batch_size']}")
print(f"{'':24}{'events/s (1 core)':>20}{'bytes/event':>14}")
print(f"{'vigil (pb+zstd+ed25519)':24}{o['events_per_cpu_s']:>20,.0f}{o['bytes_per_event']:>14.1f}")
print(f"{'json lines + gzip -6':24}{r['events_per_cpu_s']:>20,.0f}{r['bytes_per_event']:>14.1f}")
print(f"ratio vigil/reference: speed x{o['events_per_cpu_s'] / r['events_per_cpu_s']:.2f}, "
      f"bytes {100 * o['wire_bytes'] / r['gzip_bytes']:.1f}% (goal: >= 500k events/s, <= 25% of the bytes)")
PY
