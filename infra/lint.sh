#!/usr/bin/env bash
# Lint, format check and type check, as CI runs them before the tests (infra/test.sh) and as
# pre-commit runs them on every commit (.pre-commit-config.yaml). Settings: pyproject.toml.
#   bash infra/lint.sh          check (exit 1 on any finding)
#   bash infra/lint.sh --fix    apply ruff's safe fixes and the formatter, then check
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fix" ]; then
  .venv/bin/ruff check --fix --quiet . || true
  .venv/bin/ruff format --quiet .
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
