#!/usr/bin/env bash
# The IDSync real-photo recipe, end to end (45 min measured on 2 CPU cores; every step resumes when re-run).
# Needs ../shared beside the repository. Run from the repository root: bash experiments/idsync_real.sh
# A variant overlays one more experiment file: RECIPE=my_overrides.yaml bash experiments/idsync_real.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FF=(.venv/bin/facefoundry -e experiments/idsync_real.yaml ${RECIPE:+-e "$RECIPE"})
NAME=$(basename "${RECIPE:-idsync_real.yaml}" .yaml)
export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-$NAME-$(date +%s)}  # one MLflow group
export FACEFOUNDRY_PIPELINE_NAME="experiments/idsync_real.sh${RECIPE:+ + $RECIPE}"
SHARED=${SHARED:-../shared/data}
[ -f outputs/real_aligned/manifest.parquet ] ||
  "${FF[@]}" align "$SHARED/real_faces_unlabelled" --out outputs/real_aligned --size 56   # 1. real photos → crops
"${FF[@]}" train-idsync                                     # 2. VAE, then IDSync (dlib vectors, cosine identity loss)
"${FF[@]}" generate                                         # 3. PCA identities, DPM-Solver++ 25 steps, guidance 3
"${FF[@]}" validate --out "outputs/validate_$NAME/metrics.json"  # train.dataset: the generated set
[ -f outputs/benchmarks/twins.bin ] || "${FF[@]}" benchmark # the synthetic twins benchmark of the default
"${FF[@]}" train                                            # 4. FR model on generated faces only
"${FF[@]}" evaluate                                         # 5. real benchmark (evaluation only) + twins
