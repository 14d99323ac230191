#!/usr/bin/env bash
# Micro-benchmark tables (parser, timer wheel, ban table), printed as markdown with the machine.
#   bash scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
FASTSIP_REQUIRE_EXTENSIONS=1 .venv/bin/python -m pip install -q --force-reinstall --no-deps .
.venv/bin/python -m pip install -q ".[bench]"
export FASTSIP_REQUIRE_EXTENSIONS=1
for table in parser_table timerwheel_table bantable_table; do
  if [ -f "benchmarks/$table.py" ]; then
    echo; echo "## $table"; echo
    .venv/bin/python -m "benchmarks.$table" "$@"
  fi
done
