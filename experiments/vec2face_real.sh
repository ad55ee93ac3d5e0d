#!/usr/bin/env bash
# The Vec2Face real-photo recipe, end to end (≈ 50 min on 2 CPU cores; every step resumes when re-run).
# Needs ../shared beside the repository. Run from the repository root: bash experiments/vec2face_real.sh
# A variant overlays one more experiment file, e.g. the geometry-code generator:
#   RECIPE=experiments/vec2face_real_geometry.yaml bash experiments/vec2face_real.sh
# The best recipe so far (README): RECIPE=experiments/vec2face_real_codebank.yaml bash experiments/vec2face_real.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FF=(.venv/bin/facefoundry -e experiments/vec2face_real.yaml ${RECIPE:+-e "$RECIPE"})
NAME=$(basename "${RECIPE:-vec2face_real.yaml}" .yaml)
export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-$NAME-$(date +%s)}  # one MLflow group
export FACEFOUNDRY_PIPELINE_NAME="experiments/vec2face_real.sh${RECIPE:+ + $RECIPE}"
SHARED=${SHARED:-../shared/data}
[ -f outputs/real_aligned/manifest.parquet ] ||
  "${FF[@]}" align "$SHARED/real_faces_unlabelled" --out outputs/real_aligned --size 56   # 1. real photos → crops
"${FF[@]}" train-vec2face                                   # 2. Vec2Face on the crops (dlib vectors + identity loss)
"${FF[@]}" generate                                         # 3. τ-separated new identities, σ-mixture images
if [ -n "${RECIPE:-}" ] && grep -q '^fuse:' "$RECIPE"; then  # a recipe with a fuse section (one source):
  "${FF[@]}" fuse                                           #    identities too close to a real person left out
fi
"${FF[@]}" validate --out "outputs/validate_$NAME/metrics.json"  # train.dataset: the generated set
[ -f outputs/benchmarks/twins.bin ] || "${FF[@]}" benchmark # the synthetic twins benchmark of the default
"${FF[@]}" train                                            # 4. FR model on generated faces only
"${FF[@]}" evaluate                                         # 5. real benchmark (evaluation only) + twins
