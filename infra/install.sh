#!/usr/bin/env bash
# Create .venv and install FaceFoundry into it. Idempotent: a second call with an
# unchanged pyproject.toml returns at once. TORCH_SPEC picks the torch build
# (default: the CPU wheel; on a CUDA machine install your CUDA torch first).
# Unset by default (the node image, infra/Dockerfile, sets them): TORCH_INDEX, the index torch comes from
# (e.g. https://download.pytorch.org/whl/cpu); FACEFOUNDRY_EXTRA_REQ, one more requirement resolved with the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

quiet_pip() {  # pip install without this machine's noisy index warnings; keeps pip's exit status
  .venv/bin/pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }
}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.facefoundry-installed
want=$(cat pyproject.toml infra/install.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "installing FaceFoundry into .venv (first time: a few minutes)..." >&2
  .venv/bin/python -c "import torch" 2>/dev/null || quiet_pip "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
  quiet_pip -e ".[test]" ${FACEFOUNDRY_EXTRA_REQ:+"$FACEFOUNDRY_EXTRA_REQ"}
  .venv/bin/python -c "import facefoundry.cli, mlflow, dvc, diffusers, dlib, face_recognition_models" # fail here, not mid-pipeline
  echo "$want" > "$stamp"
fi
# data/ holds the user's own inputs (tracked by data.dvc); start from the documented skeleton,
# whose hash data.dvc records, and put it in the local DVC cache so `dvc status` is clean.
if [ ! -d data ]; then
  cp -r infra/data-skeleton data
  .venv/bin/dvc commit -q -f data.dvc >/dev/null 2>&1 || true
fi
