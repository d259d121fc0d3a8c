#!/usr/bin/env bash
# Delivery benchmark, end to end on loopback into SQLite, side by side in one run, same events:
#
# - Vigil: delivery-bench appends the events to the agent's own spool (VigilSpool) while a
#   shipping loop like vigild's seals them (protobuf, zstd, Ed25519, hash chain: BatchSealer)
#   and posts them with the agent's CollectorClient and DeliveryWindow, IN_FLIGHT batches in
#   flight at most (2, vigild's default shipping.batches_in_flight; 1 = one round trip per batch), to a real release
#   vigil-collector storing into SQLite, acknowledging each stored batch in the spool. Timed
#   from the first event spooled to the last batch stored; then the stored count is checked in
#   the collector's database. (See delivery-bench's header for how its loop differs from
#   vigild's: no sensors or policy, 1 ms idle sleep, a larger spool bound.) The collector runs
#   with --max-batch-rate 0: its default per-agent limit (20 batches/s after a burst of 1200)
#   would cap one agent at 40k events/s in 2000-event batches, and this measures the path.
# - Reference: reference.py ships the same events as NDJSON, gzip level 6, one POST per batch
#   of the same sizes Vigil sent, on one keep-alive connection, into a Python receiver that
#   gunzips, parses every line and inserts it into a copy of the collector's `events` table
#   (same DDL and indexes), one transaction per batch. What a Vector / Fluent Bit / Beats HTTP
#   output sends. It does no spooling, signing, chaining or dedup (see reference.py's header),
#   and its JSON lines are encoded before its clock starts.
#
# Prints events/s delivered and HTTP request body bytes per event for each (the bytes compared;
# the reference's request head per batch is printed too, counted exactly, Vigil's is not
# measured), the ratios and the issue's goals (>= 100k events/s, <= 25% of the NDJSON + gzip
# bytes), then the zstd dictionary's gain: a dictionary trained (ZDICT_trainFromBuffer) on the
# first 20% of the events, the later batch bodies compressed with and without it at the same
# level, as sent and sealed again 200 and 20 events to a batch. Measured only: batches do not
# use a dictionary.
#
# The events are wire-bench's (Benchmarks/wire, BenchEvents): one host's activity. Its header
# explains why <= 25% of the bytes is out of reach for a realistic mix. Everything shares the
# machine: the generator, spool, sender, collector and database.
#
# usage: Benchmarks/delivery/run.sh [EVENTS] [BATCH] [IN_FLIGHT]   (defaults: 200000 2000 2, as vigild)
set -euo pipefail
EVENTS=${1:-200000}
BATCH=${2:-2000}
IN_FLIGHT=${3:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/vigil-delivery-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$HERE" && swift build -c release --product vigil-collector >&2 && swift build -c release --product delivery-bench >&2)
BIN=$(cd "$HERE" && swift build -c release --show-bin-path)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 1 600); do
        curl -sS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing answers at $1" >&2
    exit 1
}
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

# Vigil.
port=$(free_port)
"$BIN/vigil-collector" --listen "127.0.0.1:$port" --store "sqlite:$WORK/events.sqlite" --enroll-token bench-token \
    --max-batch-rate 0 --log-level warning >/dev/null 2>>"$WORK/collector.log" &
collector=$!
pids+=($collector)
wait_http "http://127.0.0.1:$port/healthz"
ours=$("$BIN/delivery-bench" --collector "http://127.0.0.1:$port" --enroll-token bench-token --spool "$WORK/spool.sqlite" \
    --events "$EVENTS" --batch "$BATCH" --in-flight "$IN_FLIGHT" --json-out "$WORK/events.jsonl" --batch-sizes-out "$WORK/batch-sizes" --dictionary)
# CPU seconds (user + system) of a process so far, from /proc/PID/stat.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
collector_cpu=$(cpu_of "$collector")
stop_all
agent=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["agent_id"])' "$ours")
stored=$(sqlite3 "$WORK/events.sqlite" "SELECT count(*) FROM events WHERE agent_id = '$agent'")
anomalies=$(sqlite3 "$WORK/events.sqlite" "SELECT count(*) FROM chain_anomalies")
if [ "$stored" != "$EVENTS" ] || [ "$anomalies" != 0 ]; then
    echo "vigil: the collector stored $stored of $EVENTS events, $anomalies chain anomalies" >&2
    cat "$WORK/collector.log" >&2
    exit 1
fi

# Reference.
python3 "$HERE/reference.py" receive --db "$WORK/reference.sqlite" --schema-from "$WORK/events.sqlite" \
    --port-file "$WORK/reference.port" &
receiver=$!
pids+=($receiver)
for _ in $(seq 1 600); do [ -s "$WORK/reference.port" ] && break; sleep 0.05; done
ref=$(python3 "$HERE/reference.py" send --url "http://127.0.0.1:$(cat "$WORK/reference.port")" \
    --events "$WORK/events.jsonl" --batch-sizes "$WORK/batch-sizes")
receiver_cpu=$(cpu_of "$receiver")
stop_all
ref_stored=$(sqlite3 "$WORK/reference.sqlite" "SELECT count(*) FROM events")
if [ "$ref_stored" != "$EVENTS" ]; then
    echo "reference: the receiver stored $ref_stored of $EVENTS events" >&2
    exit 1
fi

python3 - "$ours" "$ref" "$stored" "$collector_cpu" "$receiver_cpu" <<'PY'
import json, sys
o, r, stored = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
collector_cpu, receiver_cpu = float(sys.argv[4]), float(sys.argv[5])
print(f"events: {o['events']:,} delivered in {o['batches']} batches ({o['events_per_batch']:.0f} events each on average);"
      f" the collector stored {stored:,}; vigil sent up to {o['in_flight']} batches ahead of an answer")
print(f"{'':34}{'events/s':>10}{'wall s':>8}{'bytes/event':>13}{'head/batch':>12}{'p50 ms':>8}{'p99 ms':>8}")
print(f"{'vigil (spool, pb+zstd+ed25519)':34}{o['events_per_s']:>10,.0f}{o['wall_s']:>8.2f}{o['bytes_per_event']:>13.1f}"
      f"{'':>12}{o['round_trip_p50_ms']:>8.1f}{o['round_trip_p99_ms']:>8.1f}")
print(f"{'ndjson + gzip -6 (reference.py)':34}{r['events_per_s']:>10,.0f}{r['wall_s']:>8.2f}{r['bytes_per_event']:>13.1f}"
      f"{r['head_bytes_per_request']:>12.0f}{r['round_trip_p50_ms']:>8.1f}{r['round_trip_p99_ms']:>8.1f}")
print(f"vigil: spooling all events took {o['append_s']:.2f} s; shipper found the spool empty {o['idle_waits']} times; "
      f"{o['retries']} retries")
per = 1e6 / o['events']
print(f"CPU µs per event: vigil agent side {o['cpu_s'] * per:.1f} (spooling, sealing, sending) + collector "
      f"{collector_cpu * per:.1f} (whole process) = {(o['cpu_s'] + collector_cpu) * per:.1f}; reference sender "
      f"{r['cpu_s'] * per:.1f} + receiver {receiver_cpu * per:.1f} (whole process, parsing included) = "
      f"{(r['cpu_s'] + receiver_cpu) * per:.1f}")
print(f"ratio vigil/reference: speed x{o['events_per_s'] / r['events_per_s']:.2f}, "
      f"bytes {100 * o['body_bytes'] / r['body_bytes']:.1f}%")
print(f"goals: >= 100k events/s delivered: {'met' if o['events_per_s'] >= 100_000 else 'NOT met'} "
      f"({o['events_per_s']:,.0f}); <= 25% of the NDJSON + gzip bytes: "
      f"{'met' if o['body_bytes'] <= 0.25 * r['body_bytes'] else 'NOT met'} ({100 * o['body_bytes'] / r['body_bytes']:.1f}%)")
d = o["dictionary"]
print(f"zstd dictionary (libzstd {d['zstd_version']}, level {d['zstd_level']}), trained on the first {d['trained_on_events']:,} "
      f"events ({d['training_samples']} bodies of 20 events, {d['training_bytes'] / 1e6:.1f} MB, {d['training_s']:.1f} s), "
      f"applied to the later events' batch bodies:")
sizes = [w["dictionary_bytes"] for w in d["sets"][0]["with_dictionary"]]
print(f"{'batches':>14}{'events/batch':>14}{'no dict B/ev':>14}" + "".join(f"{f'{s // 1024} KiB dict':>22}" for s in sizes))
for s in d["sets"]:
    cells = "".join(f"{w['wire_bytes_per_event']:>10.1f} ({-w['wire_gain_percent']:+5.1f}%)   " for w in s["with_dictionary"])
    print(f"{s['batches']:>14}{s['events_per_batch']:>14.0f}{s['wire_bytes_per_event']:>14.1f}    {cells}")
print("(bytes per event on the wire: body plus header and signature; the gain in brackets)")
PY
