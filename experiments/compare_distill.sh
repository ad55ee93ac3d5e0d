#!/usr/bin/env bash
# Issue 37's table: labels against knowledge distillation (dlib and SFace teachers) and the Vec2Face code bank in
# dlib's and SFace's identity spaces, on the real benchmark (evaluation only) over three FR seeds, in the same
# comparison as the recipe table (outputs/compare/real/). Each step is skipped when its output exists, and the
# comparison resumes. Needs experiments/compare_real.sh first (the renders, the dlib code bank, the fusion).
# On 2 free CPU cores: ≈ 2–3 min per recipe × seed (27 of them), and the SFace code bank's generator ≈ 75 min.
# Run from the repository root: bash experiments/compare_distill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FF=(.venv/bin/facefoundry)
have() { [ -f "$1/manifest.parquet" ]; }
for need in outputs/datasets/render outputs/datasets/vec2face_real_codebank_clean outputs/datasets/fused_render_codebank; do
  have "$need" || { echo "error: $need: missing; run bash experiments/compare_real.sh first" >&2; exit 2; }
done
C=("${FF[@]}" -e experiments/compare_real.yaml)
# 1. distillation on the renders, the dlib code bank and the fusion
"${C[@]}" -e experiments/compare_distill.yaml compare
"${C[@]}" -e experiments/compare_distill.yaml -e experiments/compare_distill_fused.yaml compare
# 2. the code bank in SFace's space (its generator resumes per epoch: ≈ 1.2 s a step on 2 free cores, the SFace
#    identity loss dearer than dlib's), then its rows beside the dlib code bank
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
# 3. the fusion of the above (renders + both code banks), then every row of the table
have outputs/datasets/fused_render_codebanks ||
  "${FF[@]}" -e experiments/fusion_render_codebank.yaml -e experiments/fusion_render_codebanks.yaml fuse \
    --metrics outputs/fusion/render_codebanks/fuse.json
"${C[@]}" -e experiments/compare_distill.yaml -e experiments/compare_distill_fused.yaml -e experiments/compare_sface.yaml compare
