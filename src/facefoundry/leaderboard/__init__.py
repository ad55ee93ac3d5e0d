"""Which recipe is best: training runs grouped into recipes and ranked on a stated metric.

Pure functions over plain run records (``{"run_id", "params", "metrics", "tags"}``, optionally
``"experiment"``), so the ranking rules are tested without MLflow:

- repeats of one recipe (same parameters, other seed) form one row, also across MLflow experiments
  (the experiment is not a recipe parameter): ``n`` FR seeds (``base.seed``; a seed run twice counts once, its
  newest run, as ``promote``'s evidence counts it: a rerun is no new draw of the seed's noise; a run
  without a seed counts as one),
  the ranked score's mean ± sample std over them and its t-based confidence interval (``report.level``),
  by :func:`facefoundry.stats.summarise`; the seed → value pairs stay on the row (:attr:`Row.by_seed`);
- one FR run moves by up to 3 points with its seed, so every row is tested against the top row
  (:func:`facefoundry.stats.versus`, two-sided: the paired t-test over the seeds both ran where at least
  two are shared, else Welch's): a difference not significant at ``report.alpha`` is marked ``≈``
  (statistically indistinguishable from the top), a significant one by its p-value; a row with one
  seed (or a one-seed top row) cannot be tested and says so (``n=1: untested``);
- rows are ranked by their mean, whatever their ``n``: sorting repeated rows first would put a lower
  mean above a higher one and make the order depend on how often a recipe was run. Instead a one-seed
  row ranked above a repeated one is marked ``†`` and a footnote names it: its place rests on a single
  run. The top row is the mean's winner (what ``promote`` takes), ties and daggers included;
- only the parameters that differ between rows are shown;
- runs started outside a pipeline (ad hoc) are left out unless asked for;
- accuracies are never averaged over different benchmark sets: the score is one chosen
  benchmark, the mean over the benchmarks *every* ranked row has (``average``), or a data
  metric (``data/<name>``), and the caption says which;
- every benchmark any ranked run has is a column (``—`` where a row lacks it), then the
  average over the common set, then the key data metrics (identities, images, judge
  intra/inter-identity similarity);
- cost is a second objective: each training run's ``cost/train_seconds`` and, through its dataset version,
  the ``cost/generation_seconds`` + ``cost/generator_training_seconds`` of the ``generate`` run that wrote
  that dataset (:func:`join_costs`, on the ``dataset.dvc_md5`` tag both runs carry) are columns where
  known (the mean over the row's runs), and :func:`pareto_front` picks the rows no other row beats on both
  score and total seconds.
"""

from __future__ import annotations

from facefoundry.leaderboard.board import Leaderboard
from facefoundry.leaderboard.build import VOLATILE, build, join_data_metrics
from facefoundry.leaderboard.cost import (
    DATASET_SECONDS,
    GENERATION_SECONDS,
    GENERATOR_TRAINING_SECONDS,
    TOTAL_SECONDS,
    TRAIN_SECONDS,
    join_costs,
    non_dominated,
    pareto_front,
)
from facefoundry.leaderboard.rows import (
    ACC,
    REGIME_TAG,
    Row,
    benchmarks_of,
    label,
    order_benchmarks,
    parse_metric,
    recipe_identity,
    recipe_of,
    regime_of,
)

__all__ = [
    "ACC",
    "DATASET_SECONDS",
    "GENERATION_SECONDS",
    "GENERATOR_TRAINING_SECONDS",
    "REGIME_TAG",
    "TOTAL_SECONDS",
    "TRAIN_SECONDS",
    "VOLATILE",
    "Leaderboard",
    "Row",
    "benchmarks_of",
    "build",
    "join_costs",
    "join_data_metrics",
    "label",
    "non_dominated",
    "order_benchmarks",
    "pareto_front",
    "parse_metric",
    "recipe_identity",
    "recipe_of",
    "regime_of",
]
