#!/usr/bin/env bash
# The whole test suite, as the README's test command runs it.
#  step 0: ruff (lint and format check);
#  pass 1: every test and doctest not marked `slow`, with NUMBA_DISABLE_JIT=1, so coverage sees inside the kernels;
#  pass 2: the whole suite and the doctests compiled (the real thing), coverage appended, pytest_results.json written.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
RUFF="${RUFF:-.venv/bin/ruff}"
echo "== ruff check and format check"
"$RUFF" check .
"$RUFF" format --check .
rm -f .coverage
DOCTESTS=(--doctest-modules telcoanalytics kernels tests)
echo "== pass 1/2: kernels as plain Python (NUMBA_DISABLE_JIT=1), tests not marked slow"
NUMBA_DISABLE_JIT=1 "$PY" -m pytest -q -m "not slow" -p no:cacheprovider --cov --cov-report= "${DOCTESTS[@]}" "$@"
echo "== pass 2/2: compiled kernels, full suite"
"$PY" -m pytest -q -p no:cacheprovider --cov --cov-append --cov-report=term \
  --json-report --json-report-file=pytest_results.json --json-report-omit=log "${DOCTESTS[@]}" "$@"
