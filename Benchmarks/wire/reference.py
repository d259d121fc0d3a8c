#!/usr/bin/env python3
"""Reference side of the wire benchmark: the same events as JSON lines, gzip'd per batch
(what agents such as Beats, Wazuh or Falco's HTTP output ship). Events are parsed first
(untimed); json.dumps + zlib level 6 per batch are timed on one thread (both are C code), then
the receiving side: zlib decompression and json.loads of every line."""
import json, sys, time, zlib

path, batch = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    docs = [json.loads(line) for line in f]
start_cpu, start = time.thread_time(), time.perf_counter()
raw = gz = 0
bodies = []
for i in range(0, len(docs), batch):
    body = "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs[i:i + batch]).encode()
    raw += len(body)
    compressed = zlib.compress(body, 6)
    gz += len(compressed)
    bodies.append(compressed)
cpu = time.thread_time() - start_cpu
wall = time.perf_counter() - start
# The receiving side: gunzip and parse every line.
start_read = time.thread_time()
read = sum(len([json.loads(line) for line in zlib.decompress(b).splitlines()]) for b in bodies)
read_cpu = time.thread_time() - start_read
assert read == len(docs)
print(json.dumps({"events": len(docs), "cpu_s": cpu, "wall_s": wall,
                  "read_cpu_s": read_cpu, "read_events_per_cpu_s": len(docs) / read_cpu,
                  "events_per_cpu_s": len(docs) / cpu, "json_bytes": raw, "gzip_bytes": gz,
                  "bytes_per_event": gz / len(docs)}))
