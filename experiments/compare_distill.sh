#!/usr/bin/env bash
# Issue 37's table: labels against knowledge distillation (dlib and SFace teachers) and the Vec2Face code bank in
# dlib's and SFace's identity spaces, on the real benchmark (evaluation only) over three FR seeds, in the same
# comparison as the recipe table (outputs/compare/real/). Each step is skipped when its output exists, and the
# comparison resumes. Needs experiments/compare_real.sh first (the renders, the dlib code bank, the fusion).
# On 2 CPU cores: part 1 ≈ 30 min, the SFace code bank ≈ 50 min, part 2 ≈ 25 min, part 3 ≈ 20 min.
# Run from the repository root: bash experiments/compare_distill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FF=(.venv/bin/facefoundry)
have() { [ -f "$1/manifest.parquet" ]; }
for need in outputs/datasets/render outputs/datasets/vec2face_real_codebank_clean outputs/datasets/fused_render_codebank; do
  have "$need" || { echo "error: $need: missing; run bash experiments/compare_real.sh first" >&2; exit 2; }
done
C=("${FF[@]}" -e experiments/compare_real.yaml -e experiments/compare_distill.yaml)
# 1. distillation on the renders and the dlib code bank
"${C[@]}" compare
# 2. the code bank in SFace's space, then its rows
S=("${FF[@]}" -e experiments/vec2face_real.yaml -e experiments/vec2face_real_codebank.yaml
   -e experiments/vec2face_real_sface_codebank.yaml)
if ! have outputs/datasets/vec2face_real_sface_codebank_clean; then
  export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-sface-codebank-$(date +%s)}
  export FACEFOUNDRY_PIPELINE_NAME="experiments/compare_distill.sh (SFace code bank)"
  have outputs/real_aligned || "${S[@]}" align ../shared/data/real_faces_unlabelled --out outputs/real_aligned --size 56
  "${S[@]}" train-vec2face
  have outputs/datasets/vec2face_real_sface_codebank || "${S[@]}" generate
  "${S[@]}" fuse
  unset FACEFOUNDRY_PIPELINE_ID FACEFOUNDRY_PIPELINE_NAME
fi
"${C[@]}" -e experiments/compare_sface.yaml compare
# 3. the fusion, distilled
"${C[@]}" -e experiments/compare_sface.yaml -e experiments/compare_distill_fused.yaml compare
