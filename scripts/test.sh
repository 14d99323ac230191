#!/usr/bin/env bash
# Install everything the tests need, build fastsip with its Cython extensions, run the suite.
#
#   bash scripts/test.sh [pytest args...]
#
# Works on a fresh Debian/Ubuntu machine with Python 3.10+: Debian packages that are missing
# (compiler, venv, and the real SIP peers the end-to-end tests drive) are installed with apt-get
# when running as root (or through sudo). The package is installed into .venv (not editable,
# so the tests exercise the built wheel's contents) with FASTSIP_REQUIRE_EXTENSIONS=1: a run
# where the Cython twins did not build fails instead of silently testing the pure twins twice.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES=()
command -v cc >/dev/null 2>&1 || APT_PACKAGES+=(build-essential)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || APT_PACKAGES+=(python3-venv)
"$PY" - <<'PYEOF' >/dev/null 2>&1 || APT_PACKAGES+=(python3-dev)
import sysconfig, os, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PYEOF
# Real peers used by end-to-end tests (added here as the tests that need them land).
for tool in $(cat scripts/apt-test-packages.txt 2>/dev/null | grep -v '^#' || true); do
  bin=${tool%%:*}; pkg=${tool#*:}
  command -v "$bin" >/dev/null 2>&1 || APT_PACKAGES+=("$pkg")
done
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${APT_PACKAGES[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "== building and installing fastsip (with Cython extensions)"
# With gcc the build is profile-guided (setup.py); FASTSIP_PGO=1 makes a failed step an error
# here instead of a silent fallback to the unguided build.
PGO=""
if cc --version 2>/dev/null | grep -q "Free Software Foundation"; then PGO=1; fi
FASTSIP_PGO=$PGO FASTSIP_REQUIRE_EXTENSIONS=1 .venv/bin/python -m pip install -q --force-reinstall --no-deps .
.venv/bin/python -m pip install -q ".[test,speed]"
export FASTSIP_REQUIRE_EXTENSIONS=1
export FASTSIP_EXPECT_PGO=$PGO  # (tests/test_build.py)
.venv/bin/python -c 'import fastsip, fastsip._parser_c as c; print("fastsip", fastsip.__version__, "extensions:", fastsip.USING_EXTENSIONS, "profile-guided:", c.BUILD_PGO)'
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
