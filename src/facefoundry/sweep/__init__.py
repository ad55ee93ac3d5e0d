"""Sweeps: a search space of dataset recipes (any ``params.yaml`` key), run with Ray Tune, tracked in MLflow.

``spec`` parses and checks a sweep file (``experiments/sweep_*.yaml``) before anything starts; ``trial``
is what one trial runs (shared dataset → validate → train with per-epoch reports → evaluate); ``run``
drives Ray Tune (Optuna TPE + ASHA) and the MLflow parent run; ``plots`` draws the comparison figures.
"""
