#!/usr/bin/env bash
# Stop the stack infra/up.sh started (Ray nodes, MLflow server, S3 store, PostgreSQL), with or without --auth.
# PostgreSQL's data stays in .stack/postgres for the next `up`, and an authenticated stack's secrets in
# .stack/secrets.env (mode 0600: delete the folder to start over with new ones); moto's store is in memory and
# starts empty.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python infra/stack.py down --dir "${STACK_DIR:-.stack}"
