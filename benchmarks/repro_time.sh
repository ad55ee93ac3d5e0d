#!/usr/bin/env bash
# Wall time of the embedded default: a forced full `dvc repro`, then a no-op `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
mkdir -p benchmarks/results
rm -rf outputs  # from scratch: no persisted checkpoint to resume from
start=$(date +%s.%N); dvc repro -f -q > benchmarks/results/repro_full.log 2>&1; full=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N); dvc repro -q > /dev/null 2>&1; noop=$(echo "$(date +%s.%N) - $start" | bc)
printf '{"dvc_repro_full_seconds": %.0f, "dvc_repro_noop_seconds": %.1f}\n' "$full" "$noop" | tee benchmarks/results/repro_time.json
