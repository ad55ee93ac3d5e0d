"""One sweep trial, as Ray Tune runs it in a worker process.

trial params → ``--set`` overrides of the sweep's base recipe → a Config with the trial's own folders;
the dataset comes from a folder shared by every trial with the same generation settings (made once,
under a file lock); then the pipeline's own stages run in-process: validate → train (reporting a
validation accuracy to Ray Tune after every epoch, so ASHA can stop it) → evaluate. The trial is a
child MLflow run of the sweep's run; the stages' runs nest under it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facefoundry.config import Config
from facefoundry.config.dotted import apply_sets
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, output_to, read_json
from facefoundry.sweep import repeats
from facefoundry.sweep.cache import shared_dataset
from facefoundry.sweep.keys import _digest, trial_number
from facefoundry.sweep.objectives import missing_data_objectives, objective_values, trial_cost
from facefoundry.sweep.scorer import EpochScorer
from facefoundry.sweep.spec_model import Sweep, trial_sets
from facefoundry.sweep.trial_config import sweep_from_ctx, trial_config
from facefoundry.sweep.trial_run import TrialRun, _fmt, trial_run_name

TRIAL_STATUS = "status.json"  # written by the driver (callbacks.py) beside each trial's outputs
STOPPED = "stopped"
COMPLETED = "completed"
FAILED = "failed"


def injected(sweep: Sweep, params: dict[str, Any], number: int, attempt: int) -> bool:
    inj = sweep.spec.inject_failure
    if inj is None or (inj.attempts is not None and attempt > inj.attempts):
        return False
    hit = number in inj.trials
    if inj.match:
        hit = hit or all(params.get(k) == v for k, v in inj.match.items())
    return hit


# -- the trainable ----------------------------------------------------------------------------------
def _set_env(ctx: dict, trial_id: str) -> None:
    from facefoundry.tracking import PIPELINE_ENV, PIPELINE_NAME_ENV

    os.environ.update(ctx.get("env", {}))
    os.environ["MLFLOW_TRACKING_URI"] = ctx["tracking_uri"]
    os.environ["MLFLOW_EXPERIMENT_NAME"] = ctx["experiment"]
    os.environ[PIPELINE_ENV] = f"sweep:{ctx['sweep_id']}:{trial_id}"
    os.environ[PIPELINE_NAME_ENV] = f"{ctx['sweep']['name']} · {trial_id}"
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def run_trial(config: dict, ctx: dict) -> None:
    """The Ray Tune function trainable (``tune.with_parameters(run_trial, ctx=...)``)."""
    from ray import tune

    t_start = time.perf_counter()
    trial_id = tune.get_context().get_trial_id()
    key = tune.get_context().get_trial_name().removeprefix("trial_")
    if ctx.get("root") and Path(ctx["root"]).is_dir():
        os.chdir(ctx["root"])  # relative paths in the recipe mean what they mean on the command line
    folder = Path(ctx["out"]) / "trials" / (key if key.endswith(trial_id) else trial_id)
    rep = repeats.parse(config)
    if rep is not None:  # a repeat (repeats.py): its own folder, whose name is its stable trial id
        folder = Path(ctx["out"]) / repeats.REPEATS_DIR / repeats.repeat_name(rep["of"], rep["seed"])
        trial_id = folder.name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "attempts.log", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()} host {socket.gethostname()}\n")
    attempt = len((folder / "attempts.log").read_text().splitlines())
    with output_to(folder / "trial.log"):
        _trial(config, ctx, trial_id, folder, attempt, t_start)


@dataclass
class _Trial:
    """What the steps of one trial share: who it is, its Config and MLflow run, and its running tallies."""

    trial_id: str
    folder: Path
    sweep: Sweep
    params: dict[str, Any]
    number: int
    cfg: Config
    keys: dict[str, str]
    key: str  # the key of the dataset it trains on
    run: TrialRun
    mlflow_seconds: float
    data_cfg: Config | None = None  # a repeat: the original trial's Config, which made (and validated) its dataset
    stopped: list[str] = field(default_factory=list)  # set when Ray ends the trial inside a report
    last: dict[str, Any] = field(default_factory=dict)  # the last epoch's result
    report_seconds: float = 0.0
    dataset_cost: float = 0.0  # what the trial's dataset cost to make (seconds; also when it was reused)
    train_started: float = 0.0  # perf_counter at the start of FR training (the cost so far, each epoch)
    train_cfg: Config | None = None  # Ray Train's workers' Config (their device), when they train the trial


def _trial(config: dict, ctx: dict, trial_id: str, folder: Path, attempt: int, t_start: float) -> None:
    """One trial, step by step: its Config and MLflow run, the shared dataset, training with per-epoch reports,
    evaluation, the final result; a failure after the run is open is recorded on it before Ray sees it."""
    t = _open_trial(config, ctx, trial_id, folder, attempt)
    try:
        repeat_user_error(folder, t.params)
        if injected(t.sweep, t.params, t.number, attempt):
            raise RuntimeError(f"injected failure (spec inject_failure) in trial {trial_id}, attempt {attempt}")
        info, data, times = _dataset(t)
        _check_data_objectives(t, data)
        metrics, stage_times, train_rec = _train_and_evaluate(t, data)
        cost = trial_cost(t.dataset_cost, stage_times["train_seconds"])
        objectives = objective_values(t.sweep.spec.all_objectives, metrics, None, data, cost)
        timings = _log_result(t, metrics, objectives, cost, times, stage_times, train_rec, t_start)
        _report_final(t, info, data, metrics, objectives, cost, timings)
    except BaseException as exc:  # recorded on the run, then Ray retries or reports it
        _record_end(t, exc)
        raise


def _open_trial(config: dict, ctx: dict, trial_id: str, folder: Path, attempt: int) -> _Trial:
    """The trial's environment, params, Config and MLflow run (reopened on a retry); ``trial.json`` names them."""
    import torch

    from facefoundry.stages.common import log
    from facefoundry.tracking import PARENT_RUN_ENV

    _set_env(ctx, trial_id)
    torch.set_num_threads(ctx["threads"])
    sweep = sweep_from_ctx(ctx)
    rep = repeats.parse(config)
    params = rep["params"] if rep is not None else sweep.decode(config)
    number = trial_number(folder.name)
    log(f"trial {trial_id} (#{number}, attempt {attempt}): " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
    cfg, keys = trial_config(sweep, params, folder, ctx)
    data_cfg = None
    if rep is not None:  # the same dataset as the original trial; only the FR seed changes
        data_cfg = cfg
        cfg = Config.model_validate(apply_sets(cfg.model_dump(mode="json"), trial_sets({"base.seed": rep["seed"]})))
        cfg._sources = f"{data_cfg._sources} · seed {rep['seed']}"
    key = keys.get("realism", keys["generate"])
    t_mlflow = time.perf_counter()
    run = TrialRun(ctx, trial_id, number, params, cfg)
    tags = {"facefoundry.seed": str(cfg.base.seed)}
    if rep is not None:
        tags["facefoundry.repeat_of"] = rep["of"]
        tags["mlflow.runName"] = f"repeat of {trial_run_name(number, params)} · seed {rep['seed']}"
    run.tags(tags)
    mlflow_seconds = time.perf_counter() - t_mlflow
    os.environ[PARENT_RUN_ENV] = run.run_id
    info = {"trial_id": trial_id, "number": number, "params": params, "run_id": run.run_id, "dataset_key": key}
    if rep is not None:
        info.update(repeat_of=rep["of"], seed=rep["seed"])
    atomic_write_json(folder / "trial.json", info)
    t = _Trial(trial_id, folder, sweep, params, number, cfg, keys, key, run, mlflow_seconds, data_cfg)
    t.train_cfg = _workers_config(sweep, params, cfg, ctx)
    return t


def _workers_config(sweep: Sweep, params: dict[str, Any], cfg: Config, ctx: dict) -> Config | None:
    """The Config Ray Train's workers train with (``resources.workers`` > 1): the trial's, on the workers' device
    when the recipe leaves it to the sweep (``base.device: auto``; the trial itself, which holds no GPU, is on CPU);
    None for a trial that trains in its own process."""
    if sweep.spec.resources.train_workers <= 1:
        return None
    raw = apply_sets(sweep.base_raw, trial_sets(params))
    if raw.get("base", {}).get("device", "auto") != "auto":
        return cfg
    device = ctx.get("train_device") or "cpu"
    return cfg.model_copy(update={"base": cfg.base.model_copy(update={"device": device})})


def _dataset(t: _Trial) -> tuple[dict, dict, dict]:
    """The trial's dataset from the sweep's cache, named on its run: (dataset info, data metrics, timings)."""
    from facefoundry.stages.common import log

    info, data, times = shared_dataset(t.data_cfg or t.cfg, t.keys, t.trial_id, log)
    t.dataset_cost = float(info.get("cost_seconds", 0.0))
    t0 = time.perf_counter()
    t.run.tags(
        {
            "dataset.dvc_md5": info["dvc_md5"],
            "dataset.path": info["path"],
            "facefoundry.dataset_key": t.key,
            "facefoundry.dataset_generated_by": info.get("generated_by", ""),
        }
    )
    t.run.metrics({f"data/{k}": v for k, v in data.items() if isinstance(v, (int, float))})
    t.mlflow_seconds += time.perf_counter() - t0
    return info, data, times


def _check_data_objectives(t: _Trial, data: dict) -> None:
    missing = missing_data_objectives(t.sweep.spec.all_objectives, data)
    if missing:
        raise FaceFoundryError(
            f"objective {missing[0]}: not among this dataset's data metrics ({', '.join(sorted(data))})"
        )


def _train_and_evaluate(t: _Trial, data: dict) -> tuple[dict, dict[str, float], dict]:
    """``train`` (scored on the validation benchmark after every epoch), then ``evaluate``: (the evaluation's
    metrics, the stages' timings, the training run's record). With ``resources.workers`` > 1 the train stage runs in
    Ray Train's workers (:mod:`facefoundry.sweep.workers`); evaluation stays here."""
    from facefoundry.stages.evaluate import run_evaluate

    validation_seconds = _train(t, data)
    train_seconds = time.perf_counter() - t.train_started
    train_rec = read_json(Path(t.cfg.train.out) / "mlflow_run.json")
    t0 = time.perf_counter()
    metrics = run_evaluate(t.cfg)
    evaluate_seconds = time.perf_counter() - t0
    return (
        metrics,
        {
            "train_seconds": train_seconds,
            "validation_seconds": validation_seconds,
            "evaluate_seconds": evaluate_seconds,
        },
        train_rec,
    )


def _train(t: _Trial, data: dict) -> float:
    """The train stage, in this process or (``resources.workers`` > 1) in Ray Train's workers, from
    ``t.train_started``; the seconds its per-epoch validation took."""
    v = t.sweep.spec.validation
    path = t.cfg.evaluate.benchmarks[v.benchmark]
    workers = t.sweep.spec.resources.train_workers
    if workers > 1:
        from facefoundry.sweep.workers import train_in_workers

        spent: list[float] = []

        def on_numbers(n: dict[str, Any]) -> None:
            spent.append(n["validation_seconds"])
            _report_epoch(
                t, data, n["epoch"], n["val_accuracy"], n["train_loss"], n["train_accuracy"], time.perf_counter()
            )

        validation = {"name": v.benchmark, "path": path, "pairs": v.pairs, "flip": v.flip}
        t.train_started = time.perf_counter()
        cfg = t.train_cfg or t.cfg
        train_in_workers(cfg, workers, t.sweep.spec.resources.cpu, validation, on_numbers, t.folder / "trial.log")
        return sum(spent)
    from facefoundry.stages.train import run_train

    scorer = EpochScorer(t.cfg, v.benchmark, path, v.pairs, v.flip)
    on_epoch = _epoch_hook(t, scorer, data)
    t.train_started = time.perf_counter()
    run_train(t.cfg, epoch_hook=on_epoch)
    return scorer.seconds


def _epoch_hook(t: _Trial, scorer: EpochScorer, data: dict) -> Callable:
    """The training stage's per-epoch hook: score, log, and report every epoch but the last to Ray Tune."""
    v = t.sweep.spec.validation

    def on_epoch(stats, trainer) -> None:
        from facefoundry.tracking import log_metrics

        acc = scorer(trainer)
        t1 = time.perf_counter()
        log_metrics({f"val/{v.benchmark}_accuracy": acc}, step=stats.epoch)  # into the training run
        _report_epoch(t, data, stats.epoch, acc, stats.loss, stats.accuracy, t1)

    return on_epoch


def _report_epoch(t: _Trial, data: dict, epoch: int, acc: float, loss: float, accuracy: float, t1: float) -> None:
    """One epoch's numbers onto the trial's run, and (every epoch but the last) to Ray Tune; ``t1``: when training
    reached this epoch's end (the cost so far)."""
    from ray import tune

    t.run.metrics({"val/accuracy": acc, "train/loss": loss, "train/accuracy": accuracy}, step=epoch)
    spec = t.sweep.spec
    cost = trial_cost(t.dataset_cost, t1 - t.train_started)
    result = {
        "epoch": epoch,
        "val_accuracy": acc,
        "train_loss": loss,
        "train_accuracy": accuracy,
        **dict(zip(spec.objective_keys, objective_values(spec.all_objectives, None, acc, data, cost))),
        **cost,
        "mlflow_run_id": t.run.run_id,
        "dataset_key": t.key,
    }
    t.last.clear()
    t.last.update(result)
    if epoch < t.cfg.train.epochs:  # the last epoch's numbers go out with the final result
        try:
            tune.report(result)
        except BaseException as exc:  # Ray ending the trial here (ASHA, Ctrl-C) is not a failure
            t.stopped.append(f"{type(exc).__name__} after epoch {epoch}")
            raise
    t.report_seconds += time.perf_counter() - t1


def _log_result(
    t: _Trial,
    metrics: dict,
    objectives: list[float],
    cost: dict[str, float],
    times: dict,
    stage_times: dict[str, float],
    train_rec: dict,
    t_start: float,
) -> dict[str, float]:
    """The trial's metrics, objectives, cost and timings onto its run, which is then closed as completed."""
    t0 = time.perf_counter()
    timings = {**times, **stage_times}
    timings["trial_seconds"] = time.perf_counter() - t_start
    named = dict(zip(t.sweep.spec.objective_keys, objectives))
    t.run.metrics({**metrics, **named, **cost, **{f"time/{k}": x for k, x in timings.items()}})
    t.run.tags({"facefoundry.train_run_id": train_rec.get("run_id", "")})
    t.run.finish("FINISHED", COMPLETED)
    t.mlflow_seconds += time.perf_counter() - t0
    return timings


def _report_final(
    t: _Trial,
    info: dict,
    data: dict,
    metrics: dict,
    objectives: list[float],
    cost: dict[str, float],
    timings: dict[str, float],
) -> None:
    """The final result: ``result.json`` in the trial folder, then the last report to Ray Tune."""
    from ray import tune

    last, v = t.last, t.sweep.spec.validation
    final = {
        **last,
        "epoch": last.get("epoch", t.cfg.train.epochs),
        **dict(zip(t.sweep.spec.objective_keys, objectives)),
        **cost,
        "final": 1,
        **{f"acc/{k.removesuffix('/accuracy')}": x for k, x in metrics.items() if k.endswith("/accuracy")},
        "mean_accuracy": metrics.get("mean_accuracy"),
        **{f"data/{k}": x for k, x in data.items() if isinstance(x, (int, float))},
        **timings,
        "report_seconds": t.report_seconds,
        "mlflow_seconds": t.mlflow_seconds,
        "mlflow_run_id": t.run.run_id,
        "dataset_key": t.key,
        "dataset_md5": info["dvc_md5"],
    }
    final.setdefault("val_accuracy", metrics.get(f"{v.benchmark}/accuracy", objectives[0]))  # nothing left to train
    atomic_write_json(t.folder / "result.json", final)
    t.stopped.append("after its final result")  # Ray ends the trial inside this report
    tune.report(final)


def _record_end(t: _Trial, exc: BaseException) -> None:
    """How the trial ended, on its run: completed (Ray ends it inside its last report), stopped by Ray (its
    stage runs KILLED), or failed (its stage runs and itself FAILED; a recipe's own error kept for retries)."""
    from facefoundry.stages.common import log

    if t.stopped and t.stopped[-1] == "after its final result":
        pass  # completed: Ray ends the function inside its last report
    elif t.stopped or _is_stop(exc):
        log(f"trial {t.trial_id}: ended by Ray ({t.stopped[0] if t.stopped else type(exc).__name__})")
        t.run.close_children("KILLED", "trial stopped by Ray Tune (ASHA or the sweep's end)")
    else:
        if isinstance(exc, FaceFoundryError):
            record_user_error(t.folder, t.params, exc)
        t.run.tags({"facefoundry.failure": f"{type(exc).__name__}: {exc}"[:4000]})
        t.run.close_children("FAILED", "")
        t.run.finish("FAILED", FAILED)


USER_ERROR = "user_error.json"


def record_user_error(folder: Path, params: dict[str, Any], exc: FaceFoundryError) -> None:
    """A FaceFoundryError is the recipe's fault (an infeasible τ, a missing file): a retry would repeat it."""
    atomic_write_json(folder / USER_ERROR, {"params": _digest(params), "error": str(exc)})


def repeat_user_error(folder: Path, params: dict[str, Any]) -> None:
    """A retry of a trial whose recipe failed with a FaceFoundryError fails at once, with the same line,
    instead of redoing the work (Ray's FailureConfig retries every error alike)."""
    prev = read_json(folder / USER_ERROR)
    if prev and prev.get("params") == _digest(params):
        raise FaceFoundryError(f"{prev['error']} (not retried: the recipe's own error)")


def _is_stop(exc: BaseException) -> bool:
    """Ray ending the trial (ASHA, Ctrl-C) rather than the trial failing."""
    return type(exc).__name__ in ("StopIteration", "SystemExit", "KeyboardInterrupt") or (
        "ray" in type(exc).__module__ and "Stop" in type(exc).__name__
    )
