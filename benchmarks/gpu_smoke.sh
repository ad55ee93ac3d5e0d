#!/usr/bin/env bash
# GPU smoke test, for a machine with NVIDIA GPUs (aimed at <= 5 min on one GPU; not run here: no GPU):
#   1. the embedded default (`dvc repro`) with base.device=cuda, from scratch, in a scratch clone of HEAD
#      (this checkout's outputs/, dvc.lock and mlflow.db stay untouched; the code is this checkout's .venv);
#   2. one epoch of FR training with DDP over 2 GPUs (1 GPU when there is only one).
# Prints the seconds of each. Without CUDA it stops at once: one line, exit code 2.
#   bash benchmarks/gpu_smoke.sh      # a fresh .venv gets torch from TORCH_INDEX (infra/install.sh; unset: PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU ' || true)
if [ "${gpus:-0}" -eq 0 ]; then
  echo "no CUDA: nvidia-smi lists no GPU on this machine; nothing to do" >&2
  exit 2
fi

bash infra/install.sh
source .venv/bin/activate
n=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$n" -eq 0 ]; then
  echo "no CUDA: torch $(python -c 'import torch; print(torch.__version__)') in .venv sees no GPU (a CPU build?):" \
    "rm -rf .venv && TORCH_INDEX=<a CUDA index, or empty for PyPI> bash infra/install.sh" >&2
  exit 2
fi
nproc=$((n >= 2 ? 2 : 1))

work=$(mktemp -d "${TMPDIR:-/tmp}/facefoundry-gpu-smoke.XXXXXX")
git clone -q --shared "$root" "$work/repo"
cd "$work/repo"
cp -r infra/data-skeleton data && { dvc commit -q -f data.dvc >/dev/null 2>&1 || true; }
sed -i 's/^\(  device:\) auto /\1 cuda /' params.yaml
grep -q '^  device: cuda ' params.yaml || { echo "error: cannot set base.device=cuda in params.yaml" >&2; exit 1; }
export FACEFOUNDRY_CACHE=$work/cache  # no cached identity vectors or reports from earlier runs

timed() {  # timed LABEL CMD...: run CMD, then print its wall time
  local label=$1 t0=$SECONDS
  shift
  "$@"
  echo "gpu_smoke: $label: $((SECONDS - t0)) s" | tee -a "$work/timings.txt"
}
echo "gpu_smoke: $n GPU(s) ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)); scratch clone $work/repo"
timed "dvc repro (embedded default, base.device=cuda)" dvc repro
timed "train, DDP over $nproc GPU(s), 1 epoch" facefoundry --set base.device=cuda \
  --set train.out=outputs/gpu_smoke/train --set train.metrics=outputs/gpu_smoke/train.json \
  train --nproc "$nproc" --stop-after 1
cat outputs/report/leaderboard.md
cat "$work/timings.txt"
