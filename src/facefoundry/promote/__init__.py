"""``facefoundry promote``: the best run's FR model becomes the registry's ``champion``.

The winner is the top row of the leaderboard (``facefoundry.leaderboard``) on a stated metric,
and that row's best run. Promotion moves the alias ``champion`` of the registered model to the
run's version (the old champion keeps ``previous``), tags the version with the recipe, the DVC
dataset hash and the metric, and writes two files that are versioned with the code:

- ``experiments/promoted.yaml`` — the winning recipe: the ``params.yaml`` sections its stage runs
  logged (training, evaluation, generation, validation, generator training), typed as the
  schema says, with a header that says how to reproduce the dataset and the model;
- ``experiments/promoted_card.md`` — the dataset card: generator and parameters, the real sources
  any generator learned from and their licences, quality metrics, the leakage check and the
  accuracy per benchmark.

One concern per module: ``recipe`` (the recipe file), ``gate`` (the quality gate), ``provenance``
(what the generator learned from), ``card`` (the dataset card and the recipe file's header) are pure
functions, tested without a store; ``registry`` holds the MLflow calls and ``run`` the orchestrator,
``run_promote``.
"""

from facefoundry.promote.run import run_promote

__all__ = ["run_promote"]
