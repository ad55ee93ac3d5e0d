"""Stage ``compare``: dataset recipes × FR seeds, so that no comparison of recipes is a coin flip.

One FR run moves by up to 3 points with its seed on a 1,290-pair benchmark, as much as most differences
between recipes. ``facefoundry compare`` trains and evaluates every recipe (``compare.recipes``: name →
a dataset folder, or an experiment file merged on the config) with every FR seed (``compare.seeds``),
each pair as ordinary ``train`` and ``evaluate`` stage runs grouped under one MLflow parent run. A
finished pair (its ``eval/metrics.json`` exists) is not repeated, so running the command again resumes.

Per recipe it reports every benchmark's accuracy, AUC and TAR@FAR as mean ± std over seeds with a
t-based confidence interval (``compare.level``), and tests each recipe's accuracy against the baseline
(``compare.baseline``, else the first recipe): the paired t-test over the seeds both ran, and Welch's. Each claim
(``compare.claims``: a recipe expected higher or lower than another, e.g. a seed paper's direction) gets a
verdict per benchmark: holds, reversed, not shown, with its p-value.
It writes ``<out>/<name>/{summary.json, compare.md, compare.html}`` and logs them to the parent run.
The real benchmark is for evaluation only: nothing here trains or selects weights on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facefoundry.config import Config
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, atomic_write_text
from facefoundry.stages.common import log
from facefoundry.stages.compare_page import write_page
from facefoundry.stages.compare_table import claims, claims_markdown, markdown, summary
from facefoundry.tracking.parent import PIPELINE_ENV, PIPELINE_NAME_ENV, find_pipeline_parent, pipeline_context

Loader = Callable[[list[str], list[str]], Config]
"""``load(experiment_files, sets)``: the configuration with these merged on the command's own."""

SKIP_SUFFIXES = ("_threshold", "_accuracy_std")  # per-run details, not scores


@dataclass(frozen=True)
class Pair:
    recipe: str
    seed: int
    folder: Path


def is_experiment(value: str) -> bool:
    return value.endswith((".yaml", ".yml"))


def parts(value: str | list[str]) -> tuple[str | None, list[str]]:
    """A recipe's dataset folder (None: its experiment files name it) and its experiment files, in order: a recipe
    is a dataset, an experiment file, or a list of at most one dataset and any experiment files
    (``[outputs/datasets/render, experiments/distill_sface.yaml]``: the renders, distilled from SFace)."""
    items = [value] if isinstance(value, str) else list(value)
    datasets = [v for v in items if not is_experiment(v)]
    return (datasets[0] if datasets else None), [v for v in items if is_experiment(v)]


def describe(value: str | list[str]) -> str:
    return value if isinstance(value, str) else " + ".join(value)


def pair_sets(recipe: str, value: str | list[str], seed: int, folder: Path) -> list[str]:
    """The ``--set`` overrides of one recipe × seed: its own folders, its seed, never the registry."""
    sets = {
        "base.seed": seed,
        "train.out": str(folder / "train"),
        "train.metrics": str(folder / "train" / "metrics.json"),
        "train.recipe": recipe,
        "train.registered_model": None,
        "evaluate.model": str(folder / "train" / "model"),
        "evaluate.out": str(folder / "eval"),
    }
    dataset, _ = parts(value)
    if dataset is not None:
        sets["train.dataset"] = dataset
    return [f"{k}={json.dumps(v)}" for k, v in sets.items()]


def check_recipes(cfg: Config) -> dict[str, str | list[str]]:
    c = cfg.compare
    if not c.recipes:
        raise FaceFoundryError(
            'compare.recipes is empty: name the recipes, e.g. --set \'compare.recipes={"renders": '
            '"outputs/datasets/render", "codebank": "experiments/vec2face_real.yaml"}\''
        )
    for name, value in c.recipes.items():
        items = [value] if isinstance(value, str) else value
        if not items or sum(not is_experiment(v) for v in items) > 1:
            raise FaceFoundryError(
                f"compare.recipes.{name}: {describe(value)}: give one dataset folder, experiment files, or both"
            )
        for item in items:
            path = Path(item)
            if is_experiment(item) and not path.is_file():
                raise FaceFoundryError(f"compare.recipes.{name}: {item}: experiment file not found")
            if not is_experiment(item) and not path.is_dir():
                raise FaceFoundryError(f"compare.recipes.{name}: {item}: dataset folder not found")
    if c.baseline is not None and c.baseline not in c.recipes:
        raise FaceFoundryError(
            f"compare.baseline: {c.baseline!r} is not one of compare.recipes ({', '.join(c.recipes)})"
        )
    for i, claim in enumerate(c.claims):
        for field in ("recipe", "against"):
            if getattr(claim, field) not in c.recipes:
                raise FaceFoundryError(
                    f"compare.claims[{i}].{field}: {getattr(claim, field)!r} is not one of compare.recipes "
                    f"({', '.join(c.recipes)})"
                )
        if claim.recipe == claim.against:
            raise FaceFoundryError(f"compare.claims[{i}]: {claim.recipe!r} against itself")
    if len(set(c.seeds)) != len(c.seeds) or not c.seeds:
        raise FaceFoundryError(f"compare.seeds: {c.seeds}: give distinct FR seeds")
    return dict(c.recipes)


def _scores(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not k.endswith(SKIP_SUFFIXES)}


def run_pair(load: Loader, recipe: str, value: str | list[str], pair: Pair) -> dict[str, float]:
    """Train and evaluate one recipe × seed (each a stage run), unless its metrics exist; its scores."""
    from facefoundry.stages.evaluate import run_evaluate
    from facefoundry.stages.train import run_train

    done = pair.folder / "eval" / "metrics.json"
    if done.is_file():
        log(f"compare: {recipe} seed {pair.seed}: done before ({done})")
        return _scores(json.loads(done.read_text()))
    cfg = load(parts(value)[1], pair_sets(recipe, value, pair.seed, pair.folder))
    log(f"compare: {recipe} seed {pair.seed}: training on {cfg.train.dataset}")
    run_train(cfg)
    run_evaluate(cfg)
    return _scores(json.loads(done.read_text()))  # the DVC metrics file: the same keys whether resumed or not


def recipe_facts(load: Loader, recipes: dict[str, str | list[str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Each recipe's training regime (labels, distill:<teacher>, both:<teacher>) and dataset folder, from its
    configuration."""
    from facefoundry.train.distill import regime

    regimes, datasets = {}, {}
    for name, value in recipes.items():
        dataset, experiments = parts(value)
        t = load(experiments, []).train
        regimes[name], datasets[name] = regime(t.objective, t.teacher), dataset or t.dataset
    return regimes, datasets


def comparison_id(cfg: Config) -> str:
    """The same comparison (its folder, seeds and FR configuration) gets the same parent run when it resumes or
    grows: a recipe added later joins the same parent (its pairs live in the same folder), and how it is judged
    (baseline, claims, α, level) does not make it another comparison."""
    runs = cfg.compare.model_dump(mode="json", include={"seeds", "out", "name"})
    train = cfg.train.model_dump(mode="json")
    if cfg.train.objective == "labels":  # as before distillation existed: an older comparison keeps its parent
        for k in ("objective", "teacher", "distill"):
            train.pop(k)
    blob = json.dumps({"compare": runs, "train": train}, sort_keys=True)
    return f"compare-{cfg.compare.name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def run_compare(cfg: Config, load: Loader) -> dict[str, Any]:
    """Every recipe × seed (resuming), then the summary, the tables and the page; returns the summary."""
    from facefoundry.progress import track

    c = cfg.compare
    recipes = check_recipes(cfg)
    baseline = c.baseline or next(iter(recipes))
    root = Path(c.out) / c.name
    os.environ[PIPELINE_ENV] = comparison_id(cfg)
    os.environ.setdefault(PIPELINE_NAME_ENV, f"compare {c.name}")
    per_seed: dict[str, dict[int, dict[str, float]]] = {r: {} for r in recipes}
    pairs = [Pair(r, s, root / r / f"seed{s}") for r in recipes for s in c.seeds]
    for pair in track(pairs, desc="compare", unit="run"):
        per_seed[pair.recipe][pair.seed] = run_pair(load, pair.recipe, recipes[pair.recipe], pair)
    result = summary(per_seed, baseline, c.level)
    result["alpha"], result["recipe_sources"] = c.alpha, recipes
    result["regimes"], result["datasets"] = recipe_facts(load, recipes)
    result["claims"] = claims(per_seed, [k.model_dump() for k in c.claims], c.alpha, c.level)
    table = markdown(result, c.alpha) + ("\n" + claims_markdown(result["claims"], c.alpha) if result["claims"] else "")
    atomic_write_json(root / "summary.json", result)
    atomic_write_text(root / "compare.md", table)
    page = write_page(root / "compare.html", result, recipes, pairs, c.alpha)
    print(table)
    log(f"compare: {root / 'summary.json'}, {root / 'compare.md'}, {page}")
    _log_to_parent(cfg, root, result)
    return result


def _log_to_parent(cfg: Config, root: Path, result: dict[str, Any]) -> None:
    """The summary, table and page on the comparison's parent run (the one its stage runs hang under)."""
    from facefoundry.tracking.base import _mlflow

    mlflow = _mlflow()
    mlflow.set_tracking_uri(cfg.base.tracking_uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME", cfg.base.experiment))
    if exp is None:
        return
    ctx = pipeline_context()
    if ctx is None:
        return
    run_id = find_pipeline_parent(client, exp.experiment_id, ctx["id"])
    if run_id is None:
        return
    client.set_tag(run_id, "facefoundry.compare", cfg.compare.name)
    client.set_tag(run_id, "facefoundry.compare.baseline", result["baseline"])
    for recipe, r in result["recipes"].items():
        for key, s in r["scores"].items():
            if key.endswith("accuracy"):
                client.log_metric(run_id, f"{recipe}/{key}_mean", s["mean"])
                client.log_metric(run_id, f"{recipe}/{key}_std", s["std"])
    for i, claim in enumerate(result["claims"]):
        client.set_tag(
            run_id,
            f"facefoundry.claim.{i}",
            f"{claim['recipe']} vs {claim['against']} ({claim['benchmark']}): {claim['verdict']}, p = {claim['p']:.3g}",
        )
    for name in ("summary.json", "compare.md", "compare.html"):
        client.log_artifact(run_id, str(root / name), "compare")
