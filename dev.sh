#!/usr/bin/env bash
# sxtdist developer entry point.
#   ./dev.sh demo [ARGS]   set up .venv and run `sxtdist demo` end to end
#   ./dev.sh test [ARGS]   set up .venv, lint with ruff, run the default pytest suite
#   ./dev.sh slow [ARGS]   the slow studies and checks (pytest -m slow; with playwright for
#                          the browser test, which needs a Chromium: apt-get install chromium)
#   ./dev.sh gpu  [ARGS]   the GPU tests (pytest -m gpu; needs cupy + ASTRA with CUDA)
#   ./dev.sh slurm [ARGS]  the SLURM tests (pytest -m slurm); as root, starts a local
#                          single-node SLURM first (deploy/slurm-local/start.sh)
#   ./dev.sh setup         only create/refresh .venv
# Python >= 3.12 is found from $PYTHON, python3.12/3.13 on PATH, or pyenv.
set -euo pipefail
cd "$(dirname "$0")"

find_python() {
  local c
  for c in "${PYTHON:-}" python3.13 python3.12 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 &&
      "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1 || [ -d "${PYENV_ROOT:-$HOME/.pyenv}" ]; then
    local root="${PYENV_ROOT:-$HOME/.pyenv}"
    for c in "$root"/versions/3.1[2-9]*/bin/python; do
      [ -x "$c" ] && { echo "$c"; return 0; }
    done
  fi
  echo "dev.sh: no Python >= 3.12 found (set PYTHON=/path/to/python3.12)" >&2
  return 1
}

setup() {
  local py extras="${1:-test}"
  if [ ! -x .venv/bin/python ]; then
    py=$(find_python)
    echo "dev.sh: creating .venv with $py" >&2
    "$py" -m venv .venv
  fi
  local stamp=.venv/.sxtdist-installed-$extras
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e ".[$extras]" >&2
    touch "$stamp"
  fi
}

cmd="${1:-test}"; shift || true
case "$cmd" in
  setup) setup test ;;
  demo)
    setup test
    exec .venv/bin/sxtdist demo "$@" ;;
  test)
    setup test
    .venv/bin/ruff check sxtdist tests benchmarks examples
    .venv/bin/ruff format --check sxtdist tests benchmarks examples
    exec .venv/bin/python -m pytest "$@" ;;
  slow)
    setup "test,browser"
    exec .venv/bin/python -m pytest -m slow --run-slow "$@" ;;
  gpu)
    setup "test,gpu"
    exec .venv/bin/python -m pytest -m gpu -rs "$@" ;;
  slurm)
    setup test
    if [ "$(id -u)" -eq 0 ]; then deploy/slurm-local/start.sh; fi
    exec .venv/bin/python -m pytest -m slurm -rs "$@" ;;
  *) echo "usage: ./dev.sh demo|test|slow|gpu|slurm|setup [ARGS]" >&2; exit 2 ;;
esac
