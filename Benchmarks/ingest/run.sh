#!/usr/bin/env bash
# Ingest benchmark, side by side in one run: signed batches posted to real vigil-collector
# processes (release build) — into SQLite, into PostgreSQL with one collector and with two on one
# database — against the engine's own ceiling for the same rows: the events the collector stored,
# inserted again into a fresh copy of its `events` table, one transaction per batch, by the
# engine's plainest bulk path (Python's sqlite3 executemany; psql COPY). The reference does no
# HTTP, no signature or hash checks, no decompression, no decoding, no chain or dedup accounting:
# the ratio says what all of that costs on top of the storage engine.
#
# Prints events/s and the p50/p99 round trip of a batch (POST /v1/batches until stored) for each
# case, the ratios, and the issue's goals (>= 150k events/s into SQLite, >= 80k into PostgreSQL
# with one collector, a second collector adding >= 50%).
#
# The load generator (ingest-bench) seals every batch before the clock starts; it shares the
# machine with the collectors and the database, as a real fleet's senders would not.
#
# usage: Benchmarks/ingest/run.sh [AGENTS] [BATCHES_PER_AGENT] [EVENTS_PER_BATCH]   (defaults 8 40 1000)
# PostgreSQL: VIGIL_TEST_POSTGRES_URL (default postgres://vigil:vigil@127.0.0.1:5432/vigil_test; the role
# needs CREATEDB; `.ci/postgres` makes it). Set SKIP_POSTGRES=1 to run the SQLite cases only.
set -euo pipefail
AGENTS=${1:-8}
BATCHES=${2:-40}
EVENTS=${3:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/vigil-ingest-bench.XXXXXX)
PG_URL=${VIGIL_TEST_POSTGRES_URL:-postgres://vigil:vigil@127.0.0.1:5432/vigil_test}
PG_BENCH_DB=vigil_ingest_bench_$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -z "${SKIP_POSTGRES:-}" ]; then psql -X -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_BENCH_DB" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Both from this package's build: vigil-collector is the root package's product, built here in release.
(cd "$HERE" && swift build -c release --product vigil-collector >&2 && swift build -c release --product ingest-bench >&2)
BIN=$(cd "$HERE" && swift build -c release --show-bin-path)
COLLECTOR=$BIN/vigil-collector
BENCH=$BIN/ingest-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_collector STORE: starts one and sets $url to its base URL; stop_collectors ends them all.
start_collector() {
    local port
    port=$(free_port)
    "$COLLECTOR" --listen "127.0.0.1:$port" --store "$1" --enroll-token bench-token --log-level warning \
        >/dev/null 2>>"$WORK/collector.log" &
    pids+=($!)
    for _ in $(seq 1 200); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    url="http://127.0.0.1:$port"
}
stop_collectors() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
bench() { "$BENCH" --enroll-token bench-token --agents "$AGENTS" --batches "$BATCHES" --events "$EVENTS" "$@"; }

# SQLite: one collector, then the reference on the rows it stored.
start_collector "sqlite:$WORK/events.sqlite"
sqlite_ours=$(bench --collector "$url" --label sqlite)
stop_collectors
sqlite_ref=$(python3 - "$WORK/events.sqlite" "$WORK/reference.sqlite" <<'PY'
import json, sqlite3, sys, time
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2], isolation_level=None)
dst.execute("PRAGMA journal_mode = WAL"); dst.execute("PRAGMA synchronous = NORMAL")
for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL ORDER BY type DESC"):
    dst.execute(sql)
batches = {}
for row in src.execute("SELECT agent_id, seq, batch_seq, type, time_ns, rule_id, json FROM events ORDER BY id"):
    batches.setdefault((row[0], row[2]), []).append(row)
events = sum(len(b) for b in batches.values())
start = time.perf_counter()
for rows in batches.values():
    dst.execute("BEGIN")
    dst.executemany("INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, rule_id, json) VALUES (?,?,?,?,?,?,?)", rows)
    dst.execute("COMMIT")
seconds = time.perf_counter() - start
print(json.dumps({"events": events, "seconds": seconds, "events_per_s": events / seconds}))
PY
)

pg_one="" pg_two="" pg_ref=""
if [ -z "${SKIP_POSTGRES:-}" ]; then
    base_url=${PG_URL%/*}
    psql -X -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_BENCH_DB" -c "CREATE DATABASE $PG_BENCH_DB"
    start_collector "$base_url/$PG_BENCH_DB"
    pg_one=$(bench --collector "$url" --label postgres-1)
    stop_collectors
    # The reference: the rows one collector stored, copied back in one transaction per batch.
    psql -X -q "$base_url/$PG_BENCH_DB" \
        -c "\copy (SELECT agent_id, seq, batch_seq, type, time_ns, rule_id, json FROM events ORDER BY id) TO '$WORK/events.copy'"
    pg_ref=$(python3 - "$base_url/$PG_BENCH_DB" "$WORK/events.copy" <<'PY'
import json, subprocess, sys, time
url, path = sys.argv[1], sys.argv[2]
subprocess.run(["psql", "-X", "-q", url, "-c", "CREATE TABLE ref_events (LIKE events INCLUDING ALL)"], check=True)
batches, events = {}, 0
with open(path, "rb") as f:
    for line in f:
        parts = line.split(b"\t", 3)
        batches.setdefault((parts[0], parts[2]), []).append(line)
        events += 1
script = bytearray(b"\\set ON_ERROR_STOP 1\n")
for lines in batches.values():
    script += b"BEGIN;\nCOPY ref_events (agent_id, seq, batch_seq, type, time_ns, rule_id, json) FROM STDIN;\n"
    script += b"".join(lines) + b"\\.\nCOMMIT;\n"
start = time.perf_counter()
subprocess.run(["psql", "-X", "-q", url], input=bytes(script), check=True, stdout=subprocess.DEVNULL)
seconds = time.perf_counter() - start
print(json.dumps({"events": events, "seconds": seconds, "events_per_s": events / seconds}))
PY
)
    psql -X -q "$PG_URL" -c "DROP DATABASE $PG_BENCH_DB" -c "CREATE DATABASE $PG_BENCH_DB"
    start_collector "$base_url/$PG_BENCH_DB"
    url1=$url
    start_collector "$base_url/$PG_BENCH_DB"
    url2=$url
    pg_two=$(bench --collector "$url1" --collector "$url2" --label postgres-2)
    stop_collectors
fi

python3 - "$sqlite_ours" "$sqlite_ref" "$pg_one" "$pg_two" "$pg_ref" <<'PY'
import json, sys
load = lambda s: json.loads(s) if s else None
sq, sqr, p1, p2, pr = map(load, sys.argv[1:])
print(f"{sq['agents']} agents x {sq['batches'] // sq['agents']} batches x {sq['events'] // sq['batches']} events "
      f"({sq['events']:,} events, {sq['batch_bytes']:,} bytes per batch on the wire)")
print(f"{'':36}{'events/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
def row(name, r):
    print(f"{name:36}{r['events_per_s']:>12,.0f}{r.get('p50_ms', float('nan')):>9.1f}{r.get('p99_ms', float('nan')):>9.1f}")
row("vigil-collector -> SQLite", sq)
row("reference: sqlite3 executemany", sqr)
if p1:
    row("vigil-collector -> PostgreSQL", p1)
    row("2 x vigil-collector -> PostgreSQL", p2)
    row("reference: psql COPY", pr)
print(f"SQLite: {sq['events_per_s'] / sqr['events_per_s']:.2f}x the engine's bulk insert (goal >= 150,000 events/s: "
      f"{'met' if sq['events_per_s'] >= 150_000 else 'not met'})")
if p1:
    print(f"PostgreSQL: {p1['events_per_s'] / pr['events_per_s']:.2f}x COPY (goal >= 80,000 events/s: "
          f"{'met' if p1['events_per_s'] >= 80_000 else 'not met'}); a second collector: "
          f"x{p2['events_per_s'] / p1['events_per_s']:.2f} (goal >= x1.5)")
PY
