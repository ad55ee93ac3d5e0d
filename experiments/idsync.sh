#!/usr/bin/env bash
# IDSync as a recipe beside the embedded default (too slow for `dvc repro`'s 10-minute budget: ≈ 20 min on
# 2 CPU cores). Needs `dvc repro` first: the renders, the twins benchmark and the render-trained FR model,
# which is the frozen classifier of the CE identity loss (idsync.classifier). Run from the repository root:
#   bash experiments/idsync.sh                                  # params.yaml's idsync section (λ = 0.01, CE)
#   bash experiments/idsync.sh --set idsync.identity_weight=0   # Arc2Face (λ = 0); any --set / -e works
# Steps (each resumes when re-run): train-idsync (the VAE first, reused) → generate → validate → train → evaluate.
# Its runs are grouped under one MLflow parent and ranked in the same leaderboard (facefoundry report).
set -euo pipefail
cd "$(dirname "$0")/.."
FF=(.venv/bin/facefoundry "$@")
export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-idsync-$(date +%s)}
export FACEFOUNDRY_PIPELINE_NAME="experiments/idsync.sh $*"
for need in outputs/datasets/render/manifest.parquet outputs/benchmarks/twins.bin; do
  [ -f "$need" ] || { echo "error: $need: missing; run \`dvc repro\` first" >&2; exit 2; }
done
"${FF[@]}" train-idsync
"${FF[@]}" generate --generator idsync --out outputs/datasets/idsync
"${FF[@]}" validate --dataset outputs/datasets/idsync --out outputs/validate_idsync/metrics.json
"${FF[@]}" --set train.dataset=outputs/datasets/idsync --set train.out=outputs/train/idsync --set train.recipe=idsync train
"${FF[@]}" --set evaluate.model=outputs/train/idsync/model --set evaluate.out=outputs/eval_idsync evaluate
"${FF[@]}" report
