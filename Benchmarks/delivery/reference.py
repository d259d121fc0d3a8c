#!/usr/bin/env python3
"""The delivery benchmark's reference: the same events as NDJSON over HTTP with gzip, what the
common shippers' HTTP outputs send (Vector's `http` sink with `encoding.codec = "json"`,
framing newline_delimited and `compression = "gzip"`, Fluent Bit's `http` output with
`format json_lines` and `compress gzip`, Beats' equivalent), into a receiver that stores them
in SQLite.

  reference.py receive --db PATH --schema-from COLLECTOR_DB --port-file FILE
      An HTTP/1.1 server (keep-alive) on 127.0.0.1, one connection at a time. For each
      POST: reads the body, gunzips it, parses every line as JSON, takes seq, type and time
      from it and inserts the line with those columns into a table made exactly like the
      collector's `events` table (its DDL and indexes copied from COLLECTOR_DB), with
      executemany in one transaction per request (WAL, synchronous=NORMAL, as the collector),
      then answers 200 with a small JSON body. Port written to FILE once listening.

  reference.py send --url URL --events JSONL --batch-sizes FILE
      Reads the JSON lines (already encoded, before the clock starts) and the batch sizes the
      Vigil side sent, then, one request in flight on one keep-alive connection: gzip (level 6,
      zlib's default and the shippers') each batch's lines and POST them, waiting for the answer
      before the next. Prints one JSON object: wall time, events/s, gzip body bytes and the
      request head bytes (counted exactly: the head is written here).

What it does not do, and the Vigil side does: no spool or on-disk buffer (these shippers
default to memory buffers), no signature, no hash chain, no sequence or duplicate accounting,
no authentication, no schema check beyond "the line is JSON with seq, type, time", no re-encoding
of the stored JSON, no batches table. Both sides share the machine with their receiver.
"""
import argparse
import gzip
import http.client
import http.server
import json
import resource
import sqlite3
import sys
import time


def receive(args):
    db = sqlite3.connect(args.db, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    src = sqlite3.connect(args.schema_from)
    ddl = src.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL ORDER BY type DESC"
    ).fetchall()
    src.close()
    for (sql,) in ddl:
        db.execute(sql)
    insert = "INSERT INTO events (agent_id, seq, batch_seq, type, time_ns, json) VALUES (?, ?, ?, ?, ?, ?)"
    state = {"batch": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The answer's head and body are two writes: without this, Nagle holds the body back
        # until the client's delayed ACK (40 ms a request on Linux).
        disable_nagle_algorithm = True

        def do_POST(self):
            length = int(self.headers["Content-Length"])
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            agent = self.headers.get("X-Agent-Id", "reference")
            state["batch"] += 1
            rows = []
            for line in body.splitlines():
                e = json.loads(line)
                rows.append((agent, e["seq"], state["batch"], e["type"], e["time"], line.decode()))
            db.execute("BEGIN")
            db.executemany(insert, rows)
            db.execute("COMMIT")
            answer = json.dumps({"stored": len(rows)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


def send(args):
    with open(args.events, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    with open(args.batch_sizes) as f:
        sizes = [int(x) for x in f if x.strip()]
    assert sum(sizes) == len(lines), f"batch sizes add up to {sum(sizes)}, not {len(lines)} events"
    host_port = args.url.split("://", 1)[1].rstrip("/")
    conn = http.client.HTTPConnection(host_port)
    body_bytes = head_bytes = 0
    round_trips = []
    start = time.perf_counter()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    i = 0
    for n in sizes:
        body = gzip.compress(b"".join(lines[i : i + n]), compresslevel=6)
        i += n
        head = [
            ("Host", host_port),
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", "gzip"),
            ("X-Agent-Id", "reference"),
            ("Content-Length", str(len(body))),
        ]
        sent = time.perf_counter()
        conn.putrequest("POST", "/v1/ndjson", skip_host=True, skip_accept_encoding=True)
        for k, v in head:
            conn.putheader(k, v)
        conn.endheaders(body)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"reference: batch answered {response.status}")
        round_trips.append(time.perf_counter() - sent)
        body_bytes += len(body)
        head_bytes += len("POST /v1/ndjson HTTP/1.1\r\n") + sum(len(f"{k}: {v}\r\n") for k, v in head) + 2
    wall = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    round_trips.sort()
    print(
        json.dumps(
            {
                "events": len(lines),
                "batches": len(sizes),
                "wall_s": wall,
                "events_per_s": len(lines) / wall,
                "body_bytes": body_bytes,
                "bytes_per_event": body_bytes / len(lines),
                "head_bytes_per_request": head_bytes / len(sizes),
                "cpu_s": (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime),
                "round_trip_p50_ms": 1000 * round_trips[len(round_trips) // 2],
                "round_trip_p99_ms": 1000 * round_trips[min(len(round_trips) - 1, int(len(round_trips) * 0.99))],
            }
        )
    )


parser = argparse.ArgumentParser()
sub = parser.add_subparsers(dest="mode", required=True)
r = sub.add_parser("receive")
r.add_argument("--db", required=True)
r.add_argument("--schema-from", required=True)
r.add_argument("--port-file", required=True)
s = sub.add_parser("send")
s.add_argument("--url", required=True)
s.add_argument("--events", required=True)
s.add_argument("--batch-sizes", required=True)
args = parser.parse_args()
receive(args) if args.mode == "receive" else send(args)
