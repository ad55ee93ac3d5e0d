"""MLflow helpers shared by every stage: one run per stage, params, figures, data version.

``run`` opens a stage's run (:func:`stage_run`) and keeps its record; ``parent`` finds the pipeline
execution and parent run it hangs under; ``stale`` fails the runs of dead processes; ``retry`` bounds
MLflow's HTTP retries and names an unreachable server; ``products`` is the products folder logged files go
through; ``log`` logs figures, images, texts, metrics and the data version; ``model`` logs and registers
trained models; ``base`` imports MLflow lazily. Callers import the names below from ``facefoundry.tracking``.
"""

from __future__ import annotations

from facefoundry.tracking.base import _mlflow as _mlflow  # stages read MLflow through this lazy import
from facefoundry.tracking.base import git_commit, run_active
from facefoundry.tracking.log import _clean as _clean
from facefoundry.tracking.log import (
    log_artifact,
    log_dataset_version,
    log_figure,
    log_image,
    log_metrics,
    log_text,
    recipe_params,
    set_tag,
)
from facefoundry.tracking.model import attach_model_metrics, log_metrics_to_run, log_torch_model
from facefoundry.tracking.parent import PARENT_RUN_ENV, PIPELINE_ENV, PIPELINE_NAME_ENV, pipeline_context
from facefoundry.tracking.products import products_dir
from facefoundry.tracking.retry import bound_retries, tracking_failure
from facefoundry.tracking.run import RUN_FILE, read_run_record, run_name, stage_run, write_run_record
from facefoundry.tracking.stale import fail_stale_runs

__all__ = [
    "PARENT_RUN_ENV",
    "PIPELINE_ENV",
    "PIPELINE_NAME_ENV",
    "RUN_FILE",
    "attach_model_metrics",
    "bound_retries",
    "fail_stale_runs",
    "git_commit",
    "log_artifact",
    "log_dataset_version",
    "log_figure",
    "log_image",
    "log_metrics",
    "log_metrics_to_run",
    "log_text",
    "log_torch_model",
    "pipeline_context",
    "products_dir",
    "read_run_record",
    "recipe_params",
    "run_active",
    "run_name",
    "set_tag",
    "stage_run",
    "tracking_failure",
    "write_run_record",
]
