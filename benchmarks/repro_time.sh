#!/usr/bin/env bash
# Wall time of the embedded default as a new user meets it: a forced full `dvc repro` from an empty
# outputs/, an empty MLflow store and an empty platform cache (FACEFOUNDRY_CACHE), then a no-op
# `dvc repro`; per-stage seconds from DVC's own log, and the accuracies the run produced.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
mkdir -p benchmarks/results
rm -rf outputs mlflow.db mlruns  # from scratch: no checkpoint to resume from, no runs, no cached outputs
cache=$(mktemp -d); trap 'rm -rf "$cache"' EXIT
export FACEFOUNDRY_CACHE=$cache  # no identity vectors, quality reports or verified hashes from earlier runs
log=benchmarks/results/repro_full.log
start=$(date +%s.%N)
dvc repro -f 2>&1 | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$log"
full=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N); dvc repro -q > /dev/null 2>&1; noop=$(echo "$(date +%s.%N) - $start" | bc)
python - "$log" "$full" "$noop" <<'PY'
import json, re, sys
from pathlib import Path
log, full, noop = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
stages, last = {}, None
for line in Path(log).read_text().splitlines():
    t, _, text = line.partition(" ")
    m = re.match(r"Running stage '([^']+)'", text)
    if m or text.startswith("Use `dvc push`"):
        if last:
            stages[last[0]] = round(float(t) - last[1], 1)
        last = (m.group(1), float(t)) if m else None
acc = {p.parts[1]: json.loads(p.read_text())["twins_accuracy"] for p in sorted(Path("metrics").glob("*/eval/metrics.json"))}
out = {"dvc_repro_full_seconds": round(full), "dvc_repro_noop_seconds": round(noop, 1), "stage_seconds": stages,
       "twins_accuracy": acc}
Path("benchmarks/results/repro_time.json").write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
PY
