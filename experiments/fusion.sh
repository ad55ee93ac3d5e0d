#!/usr/bin/env bash
# Dataset fusion, the seed's Table 1 shape: A alone, B alone, and A + B at the same identity count, each
# fused (overlap-checked), validated (quality gates), trained and evaluated the same way, in one MLflow
# experiment (facefoundry-fusion) and one leaderboard. Needs ../shared beside the repository.
#   bash experiments/fusion.sh default   # renders (A) + the default's Vec2Face (B), 100 identities; after `dvc repro`
#   bash experiments/fusion.sh real      # Vec2Face (A) + IDSync (B) trained on the real photos, 300 identities;
#                                        # after experiments/vec2face_real.sh and experiments/idsync_real.sh
#   bash experiments/fusion.sh           # both (≈ 35 min on 2 CPU cores; every step resumes or is skipped when done)
# Each dataset is outputs/datasets/fusion/<name>, its results outputs/fusion/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."
export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-fusion-$(date +%s)}
export FACEFOUNDRY_PIPELINE_NAME="experiments/fusion.sh $*"
REAL=../shared/data/real_verification/celeba_val.bin
FF=(.venv/bin/facefoundry --set base.experiment=facefoundry-fusion --set evaluate.benchmarks.real=$REAL)
[ -f outputs/benchmarks/twins.bin ] || { echo "error: outputs/benchmarks/twins.bin: missing; run \`dvc repro\` first" >&2; exit 2; }
[ -f "$REAL" ] || { echo "error: $REAL: missing (../shared beside the repository)" >&2; exit 2; }

recipe() {  # name, then the recipe's facefoundry options (-e FILE, --set KEY=VALUE)
  local name=$1; shift
  local d=outputs/datasets/fusion/$name o=outputs/fusion/$name
  [ -f "$d/manifest.parquet" ] || "${FF[@]}" "$@" --set fuse.out=$d fuse --metrics $o/fuse.json
  "${FF[@]}" "$@" validate --dataset $d --out $o/validate.json
  "${FF[@]}" "$@" --set train.dataset=$d --set train.out=$o/train --set train.recipe=fusion-$name train
  "${FF[@]}" "$@" --set evaluate.model=$o/train/model --set evaluate.out=$o/eval evaluate
}
alone() {  # keep source $1 only, with $2 identities (the other sources named after it are removed)
  local keep=$1 n=$2; shift 2
  local sets=(--set "fuse.sources.$keep.identities=$n" --set "fuse.sources.$keep.share=null" --set fuse.identities=null)
  for other in "$@"; do sets+=(--set "fuse.sources.$other=null"); done
  echo "${sets[@]}"
}

if [ "${1:-both}" != real ]; then  # the embedded default: params.yaml's fuse section is A + B (50 + 50)
  recipe render_100 $(alone render 100 vec2face)
  recipe vec2face_100 $(alone vec2face 100 render)
  recipe render_50+vec2face_50
fi
if [ "${1:-both}" != default ]; then
  R=(-e experiments/fusion_real.yaml)
  for need in outputs/datasets/vec2face_real outputs/datasets/idsync_real; do
    [ -f "$need/manifest.parquet" ] || { echo "error: $need: missing; run the real recipes first" >&2; exit 2; }
  done
  recipe vec2face_real_300 "${R[@]}" $(alone vec2face_real 300 idsync_real)
  recipe idsync_real_300 "${R[@]}" $(alone idsync_real 300 vec2face_real)
  recipe vec2face_real_150+idsync_real_150 "${R[@]}"
fi
.venv/bin/facefoundry --set base.experiment=facefoundry-fusion report
