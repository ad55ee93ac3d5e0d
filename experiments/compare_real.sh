#!/usr/bin/env bash
# The README's recipe table: each seed method's claim re-run on the real benchmark (evaluation only) over three FR
# seeds, through `facefoundry compare` (experiments/compare_real.yaml). Builds what it needs first, each step
# skipped when its output exists (and the long ones resume): the Vec2Face code bank on the real photos
# (≈ 46 min on 2 CPU cores), the realism translators (CycleGAN → FFHQ, DDIM → CelebA), SynFace identity mixup on
# the renders, and the fusion of renders and code bank. Needs `dvc repro` first (renders, twins benchmark) and
# ../shared beside the repository. Run from the repository root: bash experiments/compare_real.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FF=(.venv/bin/facefoundry)
REAL=../shared/data/real_verification/celeba_val.bin
for need in outputs/benchmarks/twins.bin outputs/datasets/render/manifest.parquet; do
  [ -f "$need" ] || { echo "error: $need: missing; run \`dvc repro\` first" >&2; exit 2; }
done
[ -f "$REAL" ] || { echo "error: $REAL: missing (../shared beside the repository)" >&2; exit 2; }
export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-compare-real-data-$(date +%s)}
export FACEFOUNDRY_PIPELINE_NAME="experiments/compare_real.sh (datasets)"
have() { [ -f "$1/manifest.parquet" ]; }
# 1. the Vec2Face code bank (experiments/vec2face_real_codebank.yaml), up to its leakage-dropped dataset
V=("${FF[@]}" -e experiments/vec2face_real.yaml -e experiments/vec2face_real_codebank.yaml)
if ! have outputs/datasets/vec2face_real_codebank_clean; then
  have outputs/real_aligned || "${V[@]}" align ../shared/data/real_faces_unlabelled --out outputs/real_aligned --size 56
  "${V[@]}" train-vec2face
  have outputs/datasets/vec2face_real_codebank || "${V[@]}" generate
  "${V[@]}" fuse
fi
# 2. realism transfer of the renders: CycleGAN toward FFHQ photos, DDIM inversion toward CelebA photos
have outputs/datasets/render_realism_ffhq || "${FF[@]}" -e experiments/realism_ffhq.yaml realism
have outputs/datasets/render_realism_ddim || "${FF[@]}" -e experiments/realism_ddim_celeba.yaml realism
# 3. SynFace identity mixup on the renders (φ from the official code's grid)
M=outputs/datasets/synface/render_mixup_official
have $M || "${FF[@]}" --set generate.out=$M --set generate.mixup.enabled=true --set generate.mixup.phi=official generate
# 4. fusion of the renders and the code bank (overlap-checked)
have outputs/datasets/fused_render_codebank ||
  "${FF[@]}" -e experiments/fusion_render_codebank.yaml fuse --metrics outputs/fusion/render_codebank/fuse.json
# 5. every recipe × FR seed, the tables, the claims and the page (outputs/compare/real/)
unset FACEFOUNDRY_PIPELINE_ID FACEFOUNDRY_PIPELINE_NAME
"${FF[@]}" -e experiments/compare_real.yaml compare
