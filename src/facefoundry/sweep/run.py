"""The sweep driver: Ray (this machine or a cluster), Ray Tune's Tuner (Optuna TPE + ASHA), the MLflow
parent run, the sweep's benchmark, the final table and plots.

Layout of a sweep folder (``outputs/sweeps/<name>`` or ``--out``)::

    sweep.json              the MLflow parent run id, the spec's digest (a resumed sweep must match)
    ray/tune/               Ray Tune's experiment state (Tuner.restore resumes from it)
    benchmarks/             the synthetic twins benchmark, made once from the base recipe (sweep/inputs.py)
    datasets/<key>/         one dataset per distinct generation settings, shared by the trials that use it
    trials/<trial id>/      train/ (model, checkpoint), eval/, trial.log, attempts.log, status.json
    repeats/<trial id>-seed<S>/  a best trial again with another FR seed (spec ``repeats``; ray/repeats)
    results.md|json|csv     the final table; plots/ the comparison figures (also on the MLflow parent run)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facefoundry.config import Config
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, read_json
from facefoundry.stages.common import log
from facefoundry.sweep.callbacks import SweepCallback, _tune_callback, trial_dirname, trial_name
from facefoundry.sweep.cluster import _init_ray, cluster_auth
from facefoundry.sweep.inputs import prepare_benchmarks, prepare_realism_target
from facefoundry.sweep.results import SweepOutcome, _finish
from facefoundry.sweep.spec import describe, dump_yaml
from facefoundry.sweep.spec_model import Sweep
from facefoundry.sweep.trial import COMPLETED, FAILED, STOPPED, TRIAL_STATUS, run_trial
from facefoundry.tracking.base import absolute_uri

if TYPE_CHECKING:
    from ray.tune.search import SearchAlgorithm, Searcher

    from facefoundry.sweep.warm import WarmStart

EXPERIMENT = "tune"  # Ray Tune's experiment folder under <out>/ray


# -- the driver ---------------------------------------------------------------------------------------
def _restorable(path: Path) -> bool:
    from ray.tune import Tuner

    return path.is_dir() and Tuner.can_restore(str(path))


def _open_parent(sweep: Sweep, cfg: Config, out: Path, resume: bool) -> tuple[Any, str, str, str, str]:
    """(client, experiment id, parent run id, sweep id, tracking uri): the sweep's MLflow run."""
    from mlflow.entities import Param

    from facefoundry.tracking import git_commit
    from facefoundry.tracking.base import _mlflow

    mlflow = _mlflow()
    uri = absolute_uri(os.environ.get("MLFLOW_TRACKING_URI") or cfg.base.tracking_uri)
    mlflow.set_tracking_uri(uri)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or cfg.base.experiment
    exp = mlflow.set_experiment(experiment)
    client = mlflow.MlflowClient(tracking_uri=uri)
    record = read_json(out / "sweep.json")
    tags = {"facefoundry.pid": str(os.getpid()), "facefoundry.host": socket.gethostname()}
    if resume and record.get("run_id"):
        run_id = record["run_id"]
        client.update_run(run_id, status="RUNNING")
        for k, v in tags.items():
            client.set_tag(run_id, k, v)
        return client, exp.experiment_id, run_id, record["sweep_id"], uri
    tags.update(
        {
            "facefoundry.role": "sweep",
            "facefoundry.stage": "sweep",
            "facefoundry.sweep": sweep.name,
            "facefoundry.sweep_spec": sweep.path,
            "facefoundry.sweep_out": str(out),
            "mlflow.note.content": sweep.spec.description or f"sweep {sweep.name}: {sweep.path}",
        }
    )
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    s = sweep.spec
    run = client.create_run(
        exp.experiment_id,
        run_name=f"sweep · {sweep.name} · {' & '.join(o.metric for o in s.all_objectives)} · {sweep.trials} trials",
        tags=tags,
    )
    run_id = run.info.run_id
    sweep_id = run_id[:12]
    client.set_tag(run_id, "facefoundry.sweep_id", sweep_id)
    params = {
        "sweep.objective": s.objective.metric,
        "sweep.mode": s.objective.mode,
        "sweep.objective_benchmarks": ",".join(s.objective.benchmarks),
        **({"sweep.objectives": ",".join(f"{o.metric}:{o.mode}" for o in s.objectives)} if s.objectives else {}),
        "sweep.validation": s.validation.benchmark,
        "sweep.trials": sweep.trials,
        "sweep.max_concurrent": s.budget.max_concurrent,
        "sweep.search": "grid" if sweep.has_grid else "optuna-tpe",
        "sweep.seed": s.seed,
        "sweep.asha": s.asha.enabled,
        "sweep.cpu": s.resources.cpu,
        "sweep.gpu": s.resources.gpu,
        **({"sweep.workers": s.resources.train_workers} if s.resources.train_workers > 1 else {}),
        "sweep.max_failures": s.failure.max_failures,
        **{f"space.{k}": line.split(": ", 1)[1] for k, line in zip(sweep.dims, describe(sweep).splitlines())},
    }
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    client.log_text(run_id, dump_yaml(sweep), "sweep_spec.yaml")
    atomic_write_json(
        out / "sweep.json",
        {
            "run_id": run_id,
            "sweep_id": sweep_id,
            "digest": sweep.digest(),
            "name": sweep.name,
            "spec": sweep.path,
            "tracking_uri": uri,
            "experiment": experiment,
            "created": time.time(),
        },
    )
    return client, exp.experiment_id, run_id, sweep_id, uri


def run_sweep(
    sweep: Sweep, resume: bool = False, address: str | None = None, verbose: int = 0, warm_start: str | None = None
) -> SweepOutcome:
    """Run (or resume) a sweep to the end of its budget; a Ctrl-C keeps finished trials for ``--resume``.

    ``warm_start``: an MLflow experiment whose compatible trials the Optuna searcher starts from (:mod:`.warm`).
    """
    t0 = time.perf_counter()
    cluster_auth(address or sweep.spec.address)
    out = sweep.out.resolve()
    exp_path = out / "ray" / EXPERIMENT
    record = read_json(out / "sweep.json")
    restorable = exp_path.is_dir() and _restorable(exp_path)
    if resume:
        if not restorable:
            raise FaceFoundryError(
                f"{out}: no sweep to resume there (no Ray Tune state in {exp_path}); run without --resume to start it"
            )
        if record.get("digest") and record["digest"] != sweep.digest():
            raise FaceFoundryError(
                f"{sweep.path}: the spec or its recipe changed since the sweep in {out} started; "
                "resume with the same spec, or start a new sweep with --out"
            )
    elif restorable:
        raise FaceFoundryError(
            f"{out} already holds sweep {record.get('name', sweep.name)!r}: --resume continues it, "
            "--out DIR starts another"
        )
    elif record and record.get("digest") != sweep.digest():
        raise FaceFoundryError(f"{out} holds the start of another sweep ({record.get('spec')}): --out DIR for this one")
    from facefoundry.io import ensure_writable

    ensure_writable(out)
    cfg = sweep.base_config
    warm: WarmStart | None = None
    if warm_start and resume:
        log(f"--warm-start {warm_start}: not used by --resume (the restored searcher keeps the points it was given)")
    elif warm_start:
        from facefoundry.sweep.warm import load

        warm = load(warm_start, sweep, absolute_uri(os.environ.get("MLFLOW_TRACKING_URI") or cfg.base.tracking_uri))
    # a folder whose sweep never got to Ray (stopped while making its benchmark) starts again, same parent run
    client, experiment_id, run_id, sweep_id, uri = _open_parent(sweep, cfg, out, bool(record.get("run_id")))
    outcome = SweepOutcome(out=out, run_id=run_id)
    if warm is not None:
        from facefoundry.sweep.warm import record as record_warm

        record_warm(client, run_id, warm)
    from facefoundry.tracking import PARENT_RUN_ENV, PIPELINE_ENV

    ok = False
    started_ray = False
    try:
        os.environ[PARENT_RUN_ENV], os.environ[PIPELINE_ENV] = run_id, f"sweep:{sweep_id}"
        try:
            benchmarks = prepare_benchmarks(sweep, cfg, out)
            realism_target = prepare_realism_target(sweep, cfg, out)
        finally:
            os.environ.pop(PARENT_RUN_ENV, None)
            os.environ.pop(PIPELINE_ENV, None)
        env = {
            k: os.environ[k]
            for k in ("FACEFOUNDRY_CACHE", "FACEFOUNDRY_MLFLOW_INFO", "GIT_PYTHON_REFRESH")
            if k in os.environ
        }
        env["MLFLOW_TRACKING_URI"] = uri
        env["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
        if verbose == 0:  # our one line per trial instead of Ray Tune's tables, banners and tracebacks
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
            logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
        started_ray = _init_ray(address or sweep.spec.address, verbose > 0, env)
        outcome.interrupted = _tune(
            sweep,
            cfg,
            out,
            exp_path,
            resume,
            benchmarks,
            realism_target,
            uri,
            experiment_id,
            run_id,
            sweep_id,
            env,
            verbose,
            warm,
        )
        ok = True
    except KeyboardInterrupt:
        outcome.interrupted = True
        ok = True
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        _close_open_trials(client, experiment_id, sweep_id)
        _settle_stopped(client, experiment_id, sweep_id)
        if not ok:
            client.set_terminated(run_id, "FAILED")
    outcome.seconds = time.perf_counter() - t0
    _finish(sweep, out, client, run_id, outcome)
    return outcome


def _tune(
    sweep: Sweep,
    cfg: Config,
    out: Path,
    exp_path: Path,
    resume: bool,
    benchmarks: dict[str, str],
    realism_target: str | None,
    uri: str,
    experiment_id: str,
    run_id: str,
    sweep_id: str,
    env: dict[str, str],
    verbose: int,
    warm: WarmStart | None = None,
) -> bool:
    """Build (or restore) the Tuner and run it; True when it was interrupted before the budget was spent."""
    import ray
    from ray import tune

    s = sweep.spec
    gpu = s.resources.gpu
    if gpu == "auto":
        gpu = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    threads = max(1, int(s.resources.cpu))
    resources: dict[str, float] = {"cpu": s.resources.cpu, "gpu": gpu}
    concurrent, each = s.budget.max_concurrent, f"{s.resources.cpu:g} CPU{f' + {gpu:g} GPU' if gpu else ''} each"
    if s.resources.train_workers > 1:  # Ray Train's workers hold the GPUs, the trial its CPUs (sweep/workers.py)
        from facefoundry.sweep import workers
        from facefoundry.sweep.ray_train import _capacity

        concurrent = workers.concurrency(s, gpu, _capacity())
        resources, _ = workers.trial_resources(s, gpu)
        each = workers.describe(s, gpu)
    ctx = {
        "root": str(Path.cwd().resolve()),
        "out": str(out),
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME") or cfg.base.experiment,
        "sweep_run_id": run_id,
        "sweep_id": sweep_id,
        "benchmarks": benchmarks,
        "threads": threads,
        "realism_target": realism_target,
        "gpu": resources["gpu"],  # the trial's own (none when Ray Train's workers train it)
        "train_device": ("cuda" if gpu else "cpu") if s.resources.train_workers > 1 else None,
        "env": env,
        "register_models": "registered_model" in s.base.get("train", {}) or "train.registered_model" in s.base,
        "sweep": {
            "spec": s.model_dump(mode="json"),
            "path": sweep.path,
            "name": sweep.name,
            "base_raw": sweep.base_raw,
            "out": str(out),
        },
    }
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)
    cb = SweepCallback(str(out), uri, experiment_id, sweep_id, sweep.trials)
    if resume:
        log(f"resuming sweep {sweep.name} from {exp_path}")
        tuner = tune.Tuner.restore(
            str(exp_path), trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
        )
        with contextlib.suppress(AttributeError):  # a fresh bookkeeping callback (the pickled one would do too)
            # None in Ray client mode: the AttributeError is suppressed
            tuner._local_tuner.get_run_config().callbacks = [_tune_callback(cb)]  # type: ignore[union-attr]
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=sweep.param_space(),
            tune_config=_tune_config(sweep, warm, concurrent),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(out / "ray"),
                verbose=verbose,
                failure_config=tune.FailureConfig(max_failures=s.failure.max_failures),
                callbacks=[_tune_callback(cb)],
            ),
        )
        log(
            f"sweep {sweep.name}: {sweep.trials} trials, {concurrent} at a time, {each}; "
            f"{'grid' if sweep.has_grid else 'Optuna TPE'}{' + ASHA' if s.asha.enabled else ''}; "
            f"objective {', '.join(f'{o.metric} ({o.mode})' for o in s.all_objectives)}"
            f"{' (Pareto front)' if s.objectives else ''}; output {out}"
        )
    t0 = time.perf_counter()
    tuner.fit()
    atomic_write_json(out / "fit.json", {"fit_seconds": time.perf_counter() - t0, "resumed": resume})
    ended = sum(
        1
        for p in (out / "trials").glob(f"*/{TRIAL_STATUS}")
        if read_json(p).get("status") in (COMPLETED, STOPPED, FAILED)
    )
    if ended < sweep.trials:
        return True
    if s.repeats is not None:  # the best trials again with the extra FR seeds (repeats.py)
        from facefoundry.sweep.repeats import run_repeats
        from facefoundry.sweep.results import collect

        t0 = time.perf_counter()
        interrupted = run_repeats(sweep, out, collect(sweep, out), trainable, verbose, concurrent)
        atomic_write_json(out / "repeats_fit.json", {"fit_seconds": time.perf_counter() - t0, "resumed": resume})
        return interrupted
    return False


def _tune_config(sweep: Sweep, warm: WarmStart | None = None, concurrent: int | None = None):
    from ray import tune

    s = sweep.spec
    scheduler = None
    if s.asha.enabled:
        from ray.tune.schedulers import ASHAScheduler

        from facefoundry.sweep.spec import _max_epochs

        scheduler = ASHAScheduler(
            time_attr="epoch",
            metric="val_accuracy",
            mode="max",
            max_t=s.asha.max_t or _max_epochs(sweep),
            grace_period=s.asha.grace_period,
            reduction_factor=s.asha.reduction_factor,
        )
    search: Searcher | SearchAlgorithm
    if sweep.has_grid:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search = BasicVariantGenerator(random_state=s.seed)
        samples = sweep.trials // sweep.grid_size
    else:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = s.search.startup_trials or min(10, max(2, sweep.trials // 2))
        points: list[dict[str, Any]] = []
        rewards: list[float] = []
        if warm is not None:  # earlier trials: completed trials of the Optuna study, not run again
            from facefoundry.sweep.warm import searcher_points

            points, rewards = searcher_points(sweep, warm.points)
        several = len(s.all_objectives) > 1  # Optuna's multi-objective TPE (MOTPE) over every objective
        search = OptunaSearch(
            metric=s.objective_keys if several else "objective",
            mode=[o.mode for o in s.all_objectives] if several else s.objective.mode,
            sampler=optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=startup),
            points_to_evaluate=points or None,
            evaluated_rewards=rewards or None,
        )
        samples = sweep.trials
    # reuse_actors: a worker process runs trial after trial (no new Python, torch, MLflow imports each time);
    # Ray starts the next trial only once the previous one's thread has ended (TUNE_FUNCTION_THREAD_TIMEOUT_S)
    return tune.TuneConfig(
        search_alg=search,
        scheduler=scheduler,
        num_samples=samples,
        max_concurrent_trials=concurrent or s.budget.max_concurrent,
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_dirname,
        reuse_actors=True,
    )


def _close_open_trials(client, experiment_id: str, sweep_id: str) -> None:
    """Runs of trials cut short by an interrupt: KILLED (a resumed sweep reopens them)."""
    try:
        for r in client.search_runs(
            [experiment_id],
            f"tags.`facefoundry.sweep_id` = '{sweep_id}' and "
            "attributes.status = 'RUNNING' and tags.`facefoundry.role` = 'trial'",
        ):
            for child in client.search_runs(
                [experiment_id], f"tags.`mlflow.parentRunId` = '{r.info.run_id}' and attributes.status = 'RUNNING'"
            ):
                client.set_terminated(child.info.run_id, "KILLED")
            client.set_terminated(r.info.run_id, "KILLED")
    except Exception as exc:
        log(f"note: could not close open trial runs: {type(exc).__name__}: {exc}")


def _settle_stopped(client, experiment_id: str, sweep_id: str) -> None:
    """Stage runs of trials ASHA stopped: KILLED, not FAILED (Ray ends a stopped trial with SystemExit, which
    MLflow records as a failure after the trial's own bookkeeping may already have run)."""
    try:
        for r in client.search_runs(
            [experiment_id],
            f"tags.`facefoundry.sweep_id` = '{sweep_id}' and tags.`facefoundry.trial_status` = 'stopped'",
        ):
            for child in client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{r.info.run_id}'"):
                if child.info.status in ("FAILED", "RUNNING"):
                    client.set_tag(child.info.run_id, "facefoundry.stopped", "trial stopped early by ASHA")
                    client.set_terminated(child.info.run_id, "KILLED")
    except Exception as exc:
        log(f"note: could not settle the runs of stopped trials: {type(exc).__name__}: {exc}")
