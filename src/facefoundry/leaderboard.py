"""Which recipe is best: training runs grouped into recipes and ranked on a stated benchmark set.

Pure functions over plain run records (``{"run_id", "params", "metrics", "tags"}``), so the
ranking rules are tested without MLflow:

- repeats of one recipe (same parameters, other seed) form one row: mean ± std and ``n``;
- only the parameters that differ between rows are shown;
- runs started outside a pipeline (ad hoc) are left out unless asked for;
- accuracies are never averaged over different benchmark sets: the score is one chosen
  benchmark, or the mean over the benchmarks *every* ranked row has, and the caption says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

# parameters that never make two runs different recipes
VOLATILE = ("base.seed", "base.tracking_uri", "base.experiment", "base.device", "train.out", "train.metrics",
            "train.threads", "train.num_workers", "train.log_every", "train.preload_max_mb", "train.export_onnx",
            "train.registered_model", "train.recipe")
ACC = "/accuracy"
MAX_COLUMNS = 8


@dataclass
class Row:
    recipe: str
    key: str
    runs: list[str]
    params: dict[str, str]
    score: list[float]  # one per run
    per_benchmark: dict[str, list[float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.score))

    @property
    def std(self) -> float:
        return float(np.std(self.score, ddof=1)) if len(self.score) > 1 else 0.0


@dataclass
class Leaderboard:
    rows: list[Row]
    benchmarks: list[str]  # what the score averages (one when a benchmark was chosen)
    basis: str  # a sentence saying what the score is
    differing: list[str]  # parameters shown as columns
    excluded: dict[str, int] = field(default_factory=dict)  # why runs were left out → count

    def table(self, top: int | None = None) -> tuple[list[str], list[list[str]]]:
        header = ["rank", "recipe", *[short(p) for p in self.differing], "runs",
                  *[f"{b} acc %" for b in self.benchmarks], "score %"]
        out = []
        for i, r in enumerate(self.rows[:top] if top else self.rows, 1):
            cells = [str(i), r.recipe, *[r.params.get(p, "—") for p in self.differing], str(len(r.runs))]
            cells += [pm(r.per_benchmark[b]) for b in self.benchmarks]
            cells.append(pm(r.score))
            out.append(cells)
        return header, out

    def markdown(self, top: int | None = None) -> str:
        header, rows = self.table(top)
        md = f"{self.basis}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
        md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
        if self.excluded:
            md += "\nLeft out: " + ", ".join(f"{n} {why}" for why, n in self.excluded.items()) + ".\n"
        return md

    def to_json(self) -> dict:
        return {"basis": self.basis, "benchmarks": self.benchmarks, "differing": self.differing,
                "excluded": self.excluded,
                "rows": [{"recipe": r.recipe, "runs": r.runs, "params": r.params, "score_mean": r.mean,
                          "score_std": r.std, "per_benchmark": r.per_benchmark} for r in self.rows]}


def pm(values: list[float]) -> str:
    """``mean ± std`` in percent (``±`` only for repeats)."""
    m = 100 * float(np.mean(values))
    return f"{m:.2f} ± {100 * float(np.std(values, ddof=1)):.2f}" if len(values) > 1 else f"{m:.2f}"


def short(param: str) -> str:
    """``train.backbone.width`` → ``backbone.width``: columns stay narrow."""
    parts = param.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else parts[-1]


def benchmarks_of(metrics: dict[str, float]) -> set[str]:
    return {k[: -len(ACC)] for k in metrics if k.endswith(ACC) and not k.startswith(("train/", "data/"))
            and "/" not in k[: -len(ACC)]}


def build(runs: list[dict], benchmark: str | None = None, include_adhoc: bool = False) -> Leaderboard:
    """Group and rank training runs; see the module docstring for the rules."""
    excluded: dict[str, int] = {}

    def drop(why: str) -> None:
        excluded[why] = excluded.get(why, 0) + 1

    kept = []
    for r in runs:
        if not include_adhoc and r["tags"].get("facefoundry.adhoc") == "true":
            drop("ad-hoc runs (report.include_adhoc: true to rank them)")
        elif not benchmarks_of(r["metrics"]):
            drop("runs without an evaluation")
        elif benchmark is not None and benchmark not in benchmarks_of(r["metrics"]):
            drop(f"runs not evaluated on {benchmark}")
        else:
            kept.append(r)
    if benchmark is not None:
        benches = [benchmark]
        basis = f"Ranked on {benchmark} accuracy (10-fold mean; ± is the spread across repeated seeds)."
    else:
        sets = [benchmarks_of(r["metrics"]) for r in kept]
        common = sorted(set.intersection(*sets)) if sets else []
        if not common and kept:  # no benchmark shared by all: rank the largest group sharing the commonest one
            counts: dict[str, int] = {}
            for s in sets:
                for b in s:
                    counts[b] = counts.get(b, 0) + 1
            best = max(sorted(counts), key=lambda b: counts[b])
            before = len(kept)
            kept = [r for r in kept if best in benchmarks_of(r["metrics"])]
            excluded[f"runs not evaluated on {best}"] = before - len(kept)
            common = sorted(set.intersection(*[benchmarks_of(r["metrics"]) for r in kept]))
        benches = common
        basis = (f"Ranked on the mean accuracy over {', '.join(benches)}, the benchmarks every ranked run has "
                 "(± is the spread across repeated seeds)." if len(benches) > 1 else
                 f"Ranked on {benches[0] if benches else '—'} accuracy, the benchmark every ranked run has "
                 "(± is the spread across repeated seeds).")
    groups: dict[str, Row] = {}
    for r in kept:
        params = {k: str(v) for k, v in r["params"].items() if k not in VOLATILE}
        key = json.dumps(params, sort_keys=True)
        recipe = r["tags"].get("facefoundry.recipe") or params.get("data.generator") or "?"
        row = groups.setdefault(key, Row(recipe, key, [], params, [], {b: [] for b in benches}))
        row.runs.append(r["run_id"])
        accs = [float(r["metrics"][b + ACC]) for b in benches]
        row.score.append(float(np.mean(accs)))
        for b, a in zip(benches, accs):
            row.per_benchmark[b].append(a)
    rows = sorted(groups.values(), key=lambda row: (-row.mean, row.recipe))
    keys = sorted({k for row in rows for k in row.params})
    # a parameter only some rows have (another generator's) is explained by data.generator: shown
    # only when it differs among the rows that have it
    differing = [k for k in keys if len({row.params[k] for row in rows if k in row.params}) > 1]
    differing.sort(key=lambda k: (k != "data.generator", k))
    if len(differing) > MAX_COLUMNS:
        basis += f" {len(differing) - MAX_COLUMNS} more differing parameters are in leaderboard.json."
    return Leaderboard(rows, benches, basis, differing[:MAX_COLUMNS], excluded)
