#!/usr/bin/env bash
# Start the local "at scale" stack: PostgreSQL (MLflow's backend store), an S3-compatible store (moto's
# server here; any S3 endpoint in production), an MLflow tracking server with S3 artifacts, and a Ray head +
# one worker node. All on 127.0.0.1, state in .stack/ (STACK_DIR). Prints the URLs and the env to export:
#   eval "$(bash infra/up.sh | grep ^export)"
# Options: --no-ray (the tracking/storage half only). Stop with: bash infra/down.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh >&2
exec .venv/bin/python infra/stack.py up --dir "${STACK_DIR:-.stack}" "$@"
