"""Sweeps: a search space of dataset recipes (any ``params.yaml`` key), run with Ray Tune, tracked in MLflow.

``spec`` parses and checks a sweep file (``experiments/sweep_*.yaml``) before anything starts; ``trial``
is what one trial runs (shared dataset → validate → train with per-epoch reports → evaluate), with
``keys`` (the hashes that let trials share datasets), ``cache`` (each dataset made once per key),
``scorer`` (the per-epoch validation accuracy) and ``trial_run`` (the trial's MLflow run); ``run``
drives Ray Tune (Optuna TPE + ASHA) and the MLflow parent run, with ``cluster`` (Ray on a cluster or
this machine), ``callbacks`` (one line per trial event) and ``results`` (the final table); ``plots``
draws the comparison figures.
"""
