#!/usr/bin/env bash
# End-to-end comparison of mss with Kamailio on this machine (benchmarks/e2e, issue 9).
#
#   bash scripts/bench-e2e.sh [options of python -m benchmarks.e2e]    e.g. --quick
#
# Installs what the suite needs, then runs it: the Debian packages sip-tester (sipp) and
# kamailio when missing (apt-get, as root or through sudo; installing kamailio does not start
# it here: the suite runs its own instance in the foreground and stops it), a .venv with the
# project built with its Cython extensions when there is none (as scripts/bench.sh does), and
# the bench and speed extras of pyproject.toml (matplotlib for the plot, py-spy for the
# profile, uvloop). An existing .venv that already imports fastsip with its extensions is left
# as it is (other work may use it as an editable install); only missing extras are added.
#
# Loopback traffic only; bounded in time (--budget, default 19 minutes); leaves no process
# behind (checked at the end). Results: benchmarks/results/e2e-<stamp>.{md,json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES=()
command -v sipp >/dev/null 2>&1 || APT_PACKAGES+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || APT_PACKAGES+=(kamailio)
if [ ! -x .venv/bin/python ]; then
  command -v cc >/dev/null 2>&1 || APT_PACKAGES+=(build-essential)
  "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || APT_PACKAGES+=(python3-venv)
fi
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${APT_PACKAGES[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! FASTSIP_REQUIRE_EXTENSIONS=1 .venv/bin/python -c 'import fastsip, mss; assert fastsip.USING_EXTENSIONS' \
    >/dev/null 2>&1; then
  echo "== building and installing fastsip + mss (with Cython extensions)"
  FASTSIP_REQUIRE_EXTENSIONS=1 .venv/bin/python -m pip install -q --force-reinstall --no-deps .
fi
# The extras' requirements only (pip install ".[bench]" would reinstall the project itself).
mapfile -t EXTRAS < <(.venv/bin/python - <<'PYEOF'
import tomllib
with open("pyproject.toml", "rb") as fh:
    project = tomllib.load(fh)["project"]
for extra in ("bench", "speed"):
    for requirement in project["optional-dependencies"].get(extra, []):
        print(requirement)
for requirement in project.get("dependencies", []):
    print(requirement)
PYEOF
)
if [ ${#EXTRAS[@]} -gt 0 ]; then
  .venv/bin/python -m pip install -q "${EXTRAS[@]}"
fi

export FASTSIP_REQUIRE_EXTENSIONS=1
exec .venv/bin/python -m benchmarks.e2e "$@"
