#!/usr/bin/env bash
# Start the local "at scale" stack: PostgreSQL (MLflow's backend store), an S3-compatible store (moto's
# server here; any S3 endpoint in production), an MLflow tracking server with S3 artifacts, and a Ray head +
# one worker node (token authentication). All on 127.0.0.1, state in .stack/ (STACK_DIR). Prints the URLs and
# the env to export:
#   eval "$(bash infra/up.sh | grep ^export)"
# Options: --no-ray (the tracking/storage half only); --auth (a team server, below). Stop with: bash infra/down.sh
#
# Without --auth this is a one-person, one-machine stack: no MLflow login, PostgreSQL trusting local
# connections, fixed local S3 keys. Never expose it beyond 127.0.0.1.
# With --auth: MLflow's basic-auth (`mlflow server --app-name basic-auth`; an admin password generated on first
# start, kept in .stack/secrets.env (mode 0600) or taken from FACEFOUNDRY_MLFLOW_ADMIN_PASSWORD, never printed in
# full), PostgreSQL with a scram-sha-256 password from the same store, this stack's own S3 keys. Then:
#   set -a; . .stack/client.env; set +a            # act as the admin (mode 0600; not printed)
#   facefoundry access grant alice maintainer       # reader | researcher | maintainer (docs/scale.md)
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh >&2
exec .venv/bin/python infra/stack.py up --dir "${STACK_DIR:-.stack}" "$@"
