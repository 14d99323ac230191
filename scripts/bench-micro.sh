#!/usr/bin/env bash
# The pytest-benchmark micro suite (issue 9, item 2): parser (both twins and the PyPI peers
# sippy, sipmessage, httptools), serializer, timer wheel, ban table, digest verification.
#
#   bash scripts/bench-micro.sh [pytest options]   run the suite and save the run (.benchmarks/)
#   bash scripts/bench-micro.sh compare [N]        compare the last N saved runs (default 2),
#                                                  one table per benchmark group, medians
#
# Uses the existing .venv (scripts/bench.sh and scripts/bench-e2e.sh create one with the
# Cython extensions built); the extensions are required, so a c row is never a silent pure row.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  FASTSIP_REQUIRE_EXTENSIONS=1 .venv/bin/python -m pip install -q ".[bench]"
fi
export FASTSIP_REQUIRE_EXTENSIONS=1
if [ "${1:-}" = compare ]; then
  n=${2:-2}
  mapfile -t runs < <(ls -1 .benchmarks/*/*.json 2>/dev/null | sort -t/ -k3 | tail -n "$n")
  if [ ${#runs[@]} -lt 1 ]; then
    echo "no saved run in .benchmarks/: run 'bash scripts/bench-micro.sh' first" >&2
    exit 1
  fi
  exec .venv/bin/pytest-benchmark compare --group-by=group --sort=name \
    --columns=median,iqr,rounds "${runs[@]}"
fi
exec "$PY" -m pytest -q -p no:cacheprovider \
  benchmarks/bench_parser.py benchmarks/bench_timerwheel.py \
  benchmarks/bench_bantable.py benchmarks/bench_digest.py \
  --benchmark-autosave --benchmark-columns=median,iqr,ops,rounds "$@"
