#!/usr/bin/env bash
# The whole test suite, as the README's test command runs it.
#  step 0: ruff (lint and format check);
#  pass 1: every test and doctest not marked `slow`, with NUMBA_DISABLE_JIT=1, so coverage sees inside the kernels;
#  pass 2: the whole suite and the doctests compiled (the real thing), pytest_results.json written;
#  then the coverage of both passes, combined.
# The two passes are independent (pass 1 never compiles, so it never touches Numba's on-disk cache),
# so they run at the same time, one per core: pass 1 in the background with its output printed when
# it ends, pass 2 in the foreground. TEST_SERIAL=1 runs them one after the other instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
RUFF="${RUFF:-.venv/bin/ruff}"
echo "== ruff check and format check"
"$RUFF" check .
"$RUFF" format --check .
rm -f .coverage .coverage.*
DOCTESTS=(--doctest-modules telcoanalytics kernels tests)
PASS1=(env NUMBA_DISABLE_JIT=1 COVERAGE_FILE=.coverage.pass1 "$PY" -m pytest -q -m "not slow" -p no:cacheprovider
  --cov --cov-report= "${DOCTESTS[@]}" "$@")
PASS2=(env COVERAGE_FILE=.coverage.pass2 "$PY" -m pytest -q -p no:cacheprovider --cov --cov-report=
  --json-report --json-report-file=pytest_results.json --json-report-omit=log "${DOCTESTS[@]}" "$@")
TIMEFORMAT="   (%R s wall, %U s user + %S s system CPU)"
rc1=0
rc2=0
if [[ "${TEST_SERIAL:-0}" != "0" ]]; then
  echo "== pass 1/2: kernels as plain Python (NUMBA_DISABLE_JIT=1), tests not marked slow"
  time "${PASS1[@]}" || rc1=$?
  echo "== pass 2/2: compiled kernels, full suite"
  time "${PASS2[@]}" || rc2=$?
else
  LOG1="$(mktemp)"
  (time "${PASS1[@]}") >"$LOG1" 2>&1 &
  P1=$!
  # on an interrupt, stop pass 1 too (its pytest is the only child of the background subshell)
  stop_pass1() {
    if kill -0 "$P1" 2>/dev/null; then pkill -TERM -P "$P1" || true; fi
    rm -f "$LOG1"
  }
  trap stop_pass1 EXIT
  trap 'exit 130' INT TERM
  echo "== pass 2/2: compiled kernels, full suite (pass 1 runs alongside; its output follows)"
  time "${PASS2[@]}" || rc2=$?
  wait "$P1" || rc1=$?
  echo "== pass 1/2: kernels as plain Python (NUMBA_DISABLE_JIT=1), tests not marked slow"
  cat "$LOG1"
fi
echo "== coverage: pass 1 and pass 2 combined"
if [[ -f .coverage.pass1 && -f .coverage.pass2 ]]; then
  "$PY" -m coverage combine -q .coverage.pass1 .coverage.pass2
  "$PY" -m coverage report
else
  echo "(a pass left no coverage data)"
fi
echo "== pass 1: exit status $rc1; pass 2: exit status $rc2"
[[ $rc1 -eq 0 && $rc2 -eq 0 ]]
