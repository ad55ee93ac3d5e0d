#!/usr/bin/env bash
# SynFace (Qiu et al., 2021) on this platform's generators: identity mixup and domain mixup, each recipe
# generated (or reused), validated through the quality gates, trained with the default FR model and
# evaluated on the synthetic twins benchmark and the real one, in one MLflow experiment
# (facefoundry-synface) and one leaderboard. Needs `dvc repro` first (the renders, the toy Vec2Face's
# dataset, the twins benchmark) and ../shared beside the repository (the real benchmark; evaluation only).
#   bash experiments/synface.sh identity   # renders without / with identity mixup (φ official, Syn2, Syn3)
#   bash experiments/synface.sh domain     # domain mixup across two generators: renders ⊕ Vec2Face
#   bash experiments/synface.sh            # both (≈ 25 min on 2 CPU cores; finished steps are skipped)
# Datasets go to outputs/datasets/synface/<name>, results to outputs/synface/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."
export FACEFOUNDRY_PIPELINE_ID=${FACEFOUNDRY_PIPELINE_ID:-synface-$(date +%s)}
export FACEFOUNDRY_PIPELINE_NAME="experiments/synface.sh $*"
REAL=../shared/data/real_verification/celeba_val.bin
FF=(.venv/bin/facefoundry --set base.experiment=facefoundry-synface --set evaluate.benchmarks.real=$REAL)
for need in outputs/benchmarks/twins.bin outputs/datasets/render/manifest.parquet outputs/datasets/vec2face/manifest.parquet; do
  [ -f "$need" ] || { echo "error: $need: missing; run \`dvc repro\` first" >&2; exit 2; }
done
[ -f "$REAL" ] || { echo "error: $REAL: missing (../shared beside the repository)" >&2; exit 2; }
# Syn-LFW: the real benchmark's synthetic twin (its 1,290 pairs and folds, unseen rendered identities), and
# Syn-LFW-R with R = 0.8 (every test image's identity mixed 0.8 / 0.2 with another's)
SYN=outputs/benchmarks/synlfw.bin SYN8=outputs/benchmarks/synlfw_r08.bin
[ -f $SYN ] || "${FF[@]}" synlfw --like $REAL --out $SYN
[ -f $SYN8 ] || "${FF[@]}" synlfw --like $REAL --ratio 0.8 --out $SYN8
FF+=(--set evaluate.benchmarks.synlfw=$SYN --set evaluate.benchmarks.synlfw_r08=$SYN8)

run() {  # name, dataset, then the recipe's facefoundry options (--set KEY=VALUE)
  local name=$1 d=$2; shift 2
  local o=outputs/synface/$name
  [ -f "$o/eval/metrics.json" ] && { echo "synface: $name done ($o)"; return; }
  "${FF[@]}" "$@" validate --dataset "$d" --out "$o/validate.json"
  "${FF[@]}" "$@" --set train.dataset="$d" --set train.out="$o/train" --set train.recipe="synface-$name" train
  "${FF[@]}" "$@" --set evaluate.model="$o/train/model" --set evaluate.out="$o/eval" evaluate
}
mixed() {  # name, φ set: the default's renders again, with identity mixup
  local name=$1 phi=$2 d=outputs/datasets/synface/$1
  [ -f "$d/manifest.parquet" ] || "${FF[@]}" --set generate.out="$d" --set generate.mixup.enabled=true \
    --set "generate.mixup.phi=$phi" generate
  run "$name" "$d"
}

if [ "${1:-both}" != domain ]; then
  run render outputs/datasets/render                 # no mixup (= the default's renders)
  mixed render_mixup_official official               # φ ∈ {0, 0.05, …, 1.0} (the official code)
  mixed render_mixup_syn2 syn2                       # φ = 0.8 (the paper's Syn2)
  mixed render_mixup_syn3 syn3                       # φ ∈ {0.6, 0.64, …, 1.0} (Syn3)
fi
if [ "${1:-both}" != identity ]; then
  run vec2face outputs/datasets/vec2face             # the toy Vec2Face alone
  run render+vec2face outputs/datasets/render --set train.domain_mixup.dataset=outputs/datasets/vec2face
  run vec2face+render outputs/datasets/vec2face --set train.domain_mixup.dataset=outputs/datasets/render
  run render+vec2face_psi0.8 outputs/datasets/render --set train.domain_mixup.dataset=outputs/datasets/vec2face \
    --set 'train.domain_mixup.psi=[0.8]'
fi
.venv/bin/facefoundry --set base.experiment=facefoundry-synface report
