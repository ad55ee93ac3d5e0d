#!/usr/bin/env bash
# Install, then run the test suite (CI: .ci/run calls exactly this).
#   bash infra/test.sh            lint, format and type checks (infra/lint.sh), then every test (≤ 12 min on 2 cores)
#   bash infra/test.sh --fast     the fast tier, no checks: no e2e (dvc / mlflow run / CLI pipelines), no services
#                                 (PostgreSQL, S3, MLflow server, Ray cluster), nothing marked slow (≤ 3 min)
# Any other arguments go to pytest, e.g. `bash infra/test.sh --fast tests/quality -x`. Tests run on
# FACEFOUNDRY_TEST_WORKERS processes (default 2, one per core; 1 runs them in this process): each test
# module stays on one worker, and the tests that start servers or Ray run one after another (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
args=()
fast=0
for a in "$@"; do
  if [ "$a" = "--fast" ]; then fast=1; args+=(-m "not e2e and not services and not slow and not heavy"); else args+=("$a"); fi
done
if [ "$fast" = 0 ] && [ $# -eq 0 ]; then bash infra/lint.sh; fi  # the whole suite (CI): a finding fails it
workers=${FACEFOUNDRY_TEST_WORKERS:-2}
if [ "$workers" -gt 1 ]; then args=(-n "$workers" "${args[@]+"${args[@]}"}"); fi
exec .venv/bin/python -m pytest ${args[@]+"${args[@]}"}
