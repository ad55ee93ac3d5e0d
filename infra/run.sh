#!/usr/bin/env bash
# Install, then reproduce the embedded default pipeline (generate → benchmark → train-vec2face →
# generate-vec2face → fuse → validate/train/evaluate per recipe → report) with local MLflow (SQLite),
# the local DVC cache and the local default remote (.dvc/storage). Ends with the leaderboard.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
source .venv/bin/activate
dvc repro "$@"
echo
cat outputs/report/leaderboard.md
cat <<'NEXT'

Look further:
  source .venv/bin/activate
  mlflow ui --backend-store-uri sqlite:///mlflow.db   # http://127.0.0.1:5000: one pipeline run, validate/train/evaluate per recipe
  dvc exp show                                        # metrics per recipe, per experiment
  dvc plots show                                      # ROC curves → dvc_plots/index.html
  ls outputs/report outputs/eval/* outputs/validate/* # leaderboard and ROC pictures, histograms, gate results
NEXT
