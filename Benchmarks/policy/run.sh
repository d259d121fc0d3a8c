#!/usr/bin/env bash
# Policy benchmark, side by side in one run: Vigil's compiled policy and a naive evaluator that
# tests every rule in turn, over the same deterministic stream, with the applicable SigmaHQ Linux
# rules plus Vigil's defaults, and with ten times as many rules. Prints events/s on one core.
#
# usage: Benchmarks/policy/run.sh [EVENTS]     (default 1000000; the naive side runs 100000)
set -euo pipefail
EVENTS=${1:-1000000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CORPUS=${CORPUS:-$ROOT/../shared/corpora/sigma-linux/rules/linux}
(cd "$HERE" && swift build -c release --product policy-bench >&2)
BIN=$(cd "$HERE" && swift build -c release --show-bin-path)/policy-bench
out=$("$BIN" "$CORPUS" "$ROOT/Policies" --events "$EVENTS" --naive-events 100000)
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['events']:,} events ({r['naive_events']:,} for the naive side); {r['rules']} applicable rules, {r['rules_10x']} with 10x")
print(f"{'':28}{'1x rules':>14}{'10x rules':>14}")
print(f"{'compiled (events/s)':28}{r['compiled_eps']:>14,.0f}{r['compiled_10x_eps']:>14,.0f}")
print(f"{'naive rule by rule (events/s)':28}{r['naive_eps']:>14,.0f}{r['naive_10x_eps']:>14,.0f}")
print(f"speed-up x{r['compiled_eps']/r['naive_eps']:.1f} (1x), x{r['compiled_10x_eps']/r['naive_10x_eps']:.1f} (10x); "
      f"10x rules cost the compiled policy {r['compiled_eps']/r['compiled_10x_eps']:.2f}x the time "
      f"(goal: >= 1M events/s with all rules, 10x rules < 3x the time); hits {r['hits']:,}")
PY
