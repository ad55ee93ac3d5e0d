"""MLflow helpers shared by every stage: one run per stage, params, figures, data version."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from facefoundry.config import Config, flatten


def dvc_dir_hash(path: str | Path) -> str:
    """The hash DVC gives a directory output (``<md5>.dir``), computed without DVC.

    md5 of the JSON list of ``{"md5", "relpath"}`` entries sorted by path — what
    ``dvc.lock`` records — so a run can name the exact data version it trained on.
    """
    root = Path(path)
    if root.is_file():
        return hashlib.md5(root.read_bytes()).hexdigest()
    entries = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.md5()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            entries.append({"md5": h.hexdigest(), "relpath": p.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _mlflow():  # noqa: ANN202 - imported lazily: mlflow takes seconds to import
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str, sections: list[str], tags: dict[str, str] | None = None,
              run_id: str | None = None) -> Iterator[Any]:
    """Start (or reopen) the MLflow run of a pipeline stage and log its config sections."""
    mlflow = _mlflow()
    uri = os.environ.get("MLFLOW_TRACKING_URI", cfg.base.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", cfg.base.experiment))
    all_tags = {"facefoundry.stage": stage, **(tags or {})}
    commit = git_commit()
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else stage, tags=all_tags) as run:
        if run_id is None:
            dump = cfg.model_dump(mode="json")
            params = flatten({s: dump[s] for s in ["base", *sections]})
            mlflow.log_params({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()})
        yield run


def log_figure(fig, name: str) -> None:  # noqa: ANN001
    import matplotlib.pyplot as plt

    _mlflow().log_figure(fig, name)
    plt.close(fig)


def log_image(image: np.ndarray, name: str) -> None:
    _mlflow().log_image(image, name)


def _clean(metrics: dict[str, float]) -> dict[str, float]:
    """MLflow-safe metric names, non-finite values dropped."""
    return {k.replace("@", "_at_"): float(v) for k, v in metrics.items() if np.isfinite(v)}


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    _mlflow().log_metrics(_clean(metrics), step=step)


def log_dataset_version(path: str | Path, prefix: str = "dataset", digest: str | None = None) -> str:
    """Tag the run with the dataset's DVC hash (computed unless given) so it names its exact data."""
    digest = digest or dvc_dir_hash(path)
    mlflow = _mlflow()
    mlflow.set_tag(f"{prefix}.dvc_md5", digest)
    mlflow.set_tag(f"{prefix}.path", str(path))
    return digest


def log_text(text: str, name: str) -> None:
    _mlflow().log_text(text, name)


def log_torch_model(module, input_size: int, name: str = "model") -> None:  # noqa: ANN001
    """``mlflow.pytorch.log_model`` in MLflow 3's default ``pt2`` (torch.export) format.

    An example batch is required for tracing; the batch axis is left dynamic.
    """
    import torch

    example = np.zeros((2, 3, input_size, input_size), np.float32)
    _mlflow().pytorch.log_model(module.eval(), name=name, input_example=example,
                                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])


def log_metrics_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to another (finished) run, e.g. benchmark accuracies to the training run."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    _mlflow().MlflowClient().log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in _clean(metrics).items()])
