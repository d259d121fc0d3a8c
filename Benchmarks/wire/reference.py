#!/usr/bin/env python3
"""Reference side of the wire benchmark: the same events as JSON lines, gzip'd per batch
(what agents such as Beats, Wazuh or Falco's HTTP output ship). Events are parsed first
(untimed); json.dumps + zlib level 6 per batch are timed on one thread (both are C code)."""
import json, sys, time, zlib

path, batch = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    docs = [json.loads(line) for line in f]
start_cpu, start = time.thread_time(), time.perf_counter()
raw = gz = 0
for i in range(0, len(docs), batch):
    body = "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs[i:i + batch]).encode()
    raw += len(body)
    gz += len(zlib.compress(body, 6))
cpu = time.thread_time() - start_cpu
print(json.dumps({"events": len(docs), "cpu_s": cpu, "wall_s": time.perf_counter() - start,
                  "events_per_cpu_s": len(docs) / cpu, "json_bytes": raw, "gzip_bytes": gz,
                  "bytes_per_event": gz / len(docs)}))
