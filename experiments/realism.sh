#!/usr/bin/env bash
# Realism transfer as a recipe beside the default (it left `dvc repro`, where nothing consumed it):
# renders → realism-target (a synthetic photographic domain) → CycleGAN translation → validate →
# FR model → evaluate on the default's benchmarks. About 4 min on 2 CPU cores after `dvc repro`
# (which makes the renders and the benchmark). Run from the repository root:
#   bash experiments/realism.sh                      # the default's synthetic target
#   EXP=experiments/realism_ffhq.yaml bash experiments/realism.sh   # real FFHQ photos as the target
# Its runs are grouped under one MLflow parent and ranked in the same leaderboard (facefoundry report).
set -euo pipefail
cd "$(dirname "$0")/.."
EXP=${EXP:-experiments/default.yaml}
FF=(.venv/bin/facefoundry -e "$EXP")
export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-realism-$(date +%s)}
export FACEFOUNDRY_PIPELINE_NAME="experiments/realism.sh ($(basename "$EXP"))"
OUT=$("${FF[@]}" config | .venv/bin/python -c "import sys, yaml; print(yaml.safe_load(sys.stdin)['realism']['out'])")
NAME=$(basename "$OUT")
[ -f outputs/realism_target/manifest.parquet ] || [ "$EXP" != experiments/default.yaml ] ||
  "${FF[@]}" realism-target --out outputs/realism_target
"${FF[@]}" realism
"${FF[@]}" validate --dataset "$OUT" --out "outputs/validate_$NAME/metrics.json"
"${FF[@]}" --set train.dataset="$OUT" --set train.out="outputs/train/$NAME" --set train.recipe="$NAME" train
"${FF[@]}" --set evaluate.model="outputs/train/$NAME/model" --set evaluate.out="outputs/eval_$NAME" evaluate
"${FF[@]}" report
