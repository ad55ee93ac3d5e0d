"""One FR recipe, several datasets, several seeds: the real-benchmark comparison of dataset recipes (README).

    python benchmarks/fr_seeds.py --dataset renders=outputs/datasets/render \\
        --dataset codebank=outputs/datasets/vec2face_real_codebank40_clean \\
        [-e experiments/vec2face_real.yaml] [--seeds 1234 2 3] [--label v2f_fr] [--out outputs/fr_seeds]

One FR run moves by a few points on a 1,290-pair benchmark, as much as the differences between dataset
recipes, so a recipe is compared by the mean and spread over FR seeds, every dataset through the *same* FR
recipe (the parameter file + ``-e`` overlays, only ``train.dataset`` and ``base.seed`` changed). For each
dataset × seed it runs ``facefoundry train`` and ``facefoundry evaluate`` (real benchmark + twins) as
separate processes into ``OUT/LABEL/NAME/seed<S>/{train,eval}``; a run whose ``eval/metrics.json`` exists is
not repeated (re-running resumes). Prints a markdown table (per-seed accuracies; mean ± std over seeds of
the accuracy, AUC, TAR@FAR=0.01 and twins) and writes ``OUT/LABEL/summary.json``.

The real benchmark is for evaluation only: nothing here trains or selects weights on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = "../shared/data/real_verification/celeba_val.bin"
TWINS = "outputs/benchmarks/twins.bin"


def facefoundry() -> list[str]:
    exe = Path(sys.executable).parent / "facefoundry"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "facefoundry"]


def run_one(base: list[str], dataset: str, seed: int, out: Path, threads: int) -> dict:
    metrics = out / "eval" / "metrics.json"
    if metrics.is_file():
        return json.loads(metrics.read_text())
    common = [
        *base,
        "--set",
        f"base.seed={seed}",
        "--set",
        f"train.dataset={dataset}",
        "--set",
        f"train.out={out / 'train'}",
        "--set",
        "train.registered_model=null",
        "--set",
        f"train.threads={threads}",
        "--set",
        f"train.recipe={out.parent.name}",
    ]
    if not (out / "train" / "model").is_dir():
        subprocess.run([*common, "train"], cwd=ROOT, check=True)
    subprocess.run(
        [
            *common,
            "--set",
            f"evaluate.model={out / 'train' / 'model'}",
            "--set",
            f"evaluate.out={out / 'eval'}",
            "--set",
            f"evaluate.benchmarks.real={REAL}",
            "--set",
            f"evaluate.benchmarks.twins={TWINS}",
            "evaluate",
        ],
        cwd=ROOT,
        check=True,
    )
    return json.loads(metrics.read_text())


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Per dataset: the per-seed real accuracies and mean/std of every headline metric."""
    keys = {
        "accuracy": "real_accuracy",
        "auc": "real_auc",
        "tar_at_far_1e-02": "real_tar_at_far_1e-02",
        "twins_accuracy": "twins_accuracy",
    }
    out = {}
    for name, by_seed in runs.items():
        row = {"seeds": list(by_seed), "real_accuracy_per_seed": [m["real_accuracy"] for m in by_seed.values()]}
        for short, key in keys.items():
            vals = [m[key] for m in by_seed.values() if key in m]
            if vals:
                row[short + "_mean"], row[short + "_std"] = spread(vals)
        out[name] = row
    return out


def table(summary: dict[str, dict]) -> str:
    seeds = " / ".join(str(s) for s in next(iter(summary.values()))["seeds"]) if summary else ""
    lines = [
        f"| dataset | real accuracy, seeds {seeds} | mean ± std over seeds | AUC | TAR@FAR=0.01 | twins |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        per = " / ".join(f"{a * 100:.2f}" for a in r["real_accuracy_per_seed"])
        lines.append(
            f"| {name} | {per} | {r['accuracy_mean'] * 100:.2f} ± {r['accuracy_std'] * 100:.2f} % | "
            f"{r['auc_mean']:.3f} | {r['tar_at_far_1e-02_mean']:.3f} | "
            f"{r.get('twins_accuracy_mean', float('nan')) * 100:.1f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a dataset (manifest folder) to train on; repeatable",
    )
    ap.add_argument("-p", "--params", default=None, help="base parameter file (facefoundry's default otherwise)")
    ap.add_argument("-e", "--experiment", action="append", default=[], help="FR recipe overlay(s), as facefoundry -e")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234, 2, 3])
    ap.add_argument("--label", default="fr", help="name of this FR recipe (output folder)")
    ap.add_argument("--out", default="outputs/fr_seeds")
    ap.add_argument("--threads", type=int, default=0, help="train.threads (0: torch's default)")
    args = ap.parse_args()

    datasets = {}
    for item in args.dataset:
        name, sep, path = item.partition("=")
        problem = (
            "expected --dataset NAME=PATH"
            if not (sep and name and path)
            else None
            if (ROOT / path / "manifest.parquet").is_file()
            else "no manifest.parquet (not a dataset folder)"
        )
        if problem:
            print(f"{path or item}: {problem}", file=sys.stderr)
            sys.exit(2)
        datasets[name] = path
    base = facefoundry() + (["-p", args.params] if args.params else [])
    for e in args.experiment:
        base += ["-e", e]
    root = ROOT / args.out / args.label  # relative paths are the repository's, as facefoundry's
    runs: dict[str, dict[int, dict]] = {}
    for name, path in datasets.items():
        runs[name] = {}
        for seed in args.seeds:
            try:
                runs[name][seed] = run_one(base, path, seed, root / name / f"seed{seed}", args.threads)
            except subprocess.CalledProcessError as e:  # noqa: PERF203 - per-run handler names dataset and seed
                # facefoundry has printed its own line
                print(f"{path}: seed {seed}: `facefoundry {e.cmd[-1]}` exited {e.returncode}", file=sys.stderr)
                sys.exit(2)
    summary = summarise(runs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(
        json.dumps(
            {
                "fr_recipe": {"params": args.params, "experiments": args.experiment},
                "datasets": datasets,
                "results": summary,
            },
            indent=2,
        )
    )
    print(table(summary))


if __name__ == "__main__":
    main()
