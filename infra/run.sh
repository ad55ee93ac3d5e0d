#!/usr/bin/env bash
# Install, then reproduce the embedded default pipeline (generate → benchmark → train-vec2face →
# generate-vec2face → validate/train/evaluate per recipe → report) with local MLflow (SQLite),
# the local DVC cache and the local default remote (.dvc/storage).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
source .venv/bin/activate
dvc repro "$@"
echo
echo "metrics:     dvc metrics show"
echo "leaderboard: outputs/report/leaderboard.md"
echo "MLflow UI:   .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db   (http://127.0.0.1:5000)"
