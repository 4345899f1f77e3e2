#!/usr/bin/env bash
# Run every benchmark in tests/bench one after the other (never in parallel: they would disturb each other).
#   tests/bench/run_all.sh            full runs, about 6.5 minutes
#   tests/bench/run_all.sh --quick    about 1.5 minutes
# PYTHON picks the interpreter (default: .venv/bin/python, made by tests/run, if present, else python3). Results go to
# tests/bench/results/NAME.json; the exit code is non-zero if any script failed (a missed goal is not a failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
status=0
for bench in bench_idle bench_metrics_render bench_loop_lag bench_http bench_tcp_dns bench_icmp bench_snmp \
             bench_remote_write; do
  echo "=== ${bench} $*"
  if ! "${PYTHON}" "tests/bench/${bench}.py" "$@"; then
    echo "=== ${bench} FAILED" >&2
    status=1
  fi
done
exit "${status}"
