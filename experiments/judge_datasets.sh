#!/usr/bin/env bash
# The gate and leakage figures of issue 37's datasets under their independent judge (quality.judge: auto):
# renders and the dlib code bank and its fusion are judged by SFace or dlib, whichever did not teach them; the
# SFace code bank by dlib; the fusion of all three (both encoders taught a source) by SFace, named (a teacher). Each against the real benchmark's people and the generator's own training photos.
# Writes outputs/judged/<name>/metrics.json (+ problems, histograms); ≈ 2 min a dataset on 2 cores.
# Run from the repository root after experiments/compare_real.sh (and compare_distill.sh for the SFace code bank).
set -euo pipefail
cd "$(dirname "$0")/.."
FF=(.venv/bin/facefoundry -e experiments/compare_real.yaml
    --set 'quality.leakage.references=["../shared/data/real_verification/celeba_val.bin"]'
    --set quality.gates.enabled=false --set base.experiment=facefoundry-judged)
for pair in renders=outputs/datasets/render codebank=outputs/datasets/vec2face_real_codebank_clean \
            codebank_sface=outputs/datasets/vec2face_real_sface_codebank_clean fused=outputs/datasets/fused_render_codebank \
            fused_all=outputs/datasets/fused_render_codebanks=sface; do
  name=${pair%%=*}; data=${pair#*=}; judge=auto
  [[ $data == *=* ]] && { judge=${data#*=}; data=${data%%=*}; }
  [ -f "$data/manifest.parquet" ] || { echo "skip $name: $data not made yet"; continue; }
  [ -f "outputs/judged/$name/metrics.json" ] && continue
  "${FF[@]}" --set quality.judge=$judge validate --dataset "$data" --out "outputs/judged/$name/metrics.json" --products "outputs/judged/$name"
done
