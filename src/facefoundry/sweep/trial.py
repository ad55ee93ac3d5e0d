"""One sweep trial, as Ray Tune runs it in a worker process.

trial params → ``--set`` overrides of the sweep's base recipe → a Config with the trial's own folders;
the dataset comes from a folder shared by every trial with the same generation settings (made once,
under a file lock); then the pipeline's own stages run in-process: validate → train (reporting a
validation accuracy to Ray Tune after every epoch, so ASHA can stop it) → evaluate. The trial is a
child MLflow run of the sweep's run; the stages' runs nest under it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from facefoundry.config import Config, flatten, result_settings
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, file_lock, read_json
from facefoundry.sweep.spec import Sweep, SweepSpec, apply_sets, trial_sets

TRIAL_STATUS = "status.json"  # written by the driver (run.py) beside each trial's outputs
STOPPED = "stopped"
COMPLETED = "completed"
FAILED = "failed"


# -- the trial's config ------------------------------------------------------------------------------
def sweep_from_ctx(ctx: dict) -> Sweep:
    s = ctx["sweep"]
    return Sweep(spec=SweepSpec.model_validate(s["spec"]), path=s["path"], name=s["name"], base_raw=s["base_raw"],
                 out=Path(s["out"]))


def _digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def dataset_key(cfg: Config) -> str:
    """Hash of everything the generator reads: trials with equal keys share one dataset.

    The ``generate`` section (without its output folder, and of the generators' own sub-sections only the
    chosen one's), ``base.seed`` and ``base.image_size``; for a generator that works in an identity space or
    learns (its descriptor says), also the device and the identity settings, and its model: the content hash
    of the model folder, or, when the sweep trains it, the key of what it is trained from.
    """
    from facefoundry.generators.table import descriptor, names

    g = result_settings(cfg.generate)  # without its output folder or model path (the schema's marks say)
    desc = descriptor(g["generator"])
    for other in names():
        sub = descriptor(other).settings
        if other != desc.name and sub and sub.startswith("generate."):
            g.pop(sub.split(".", 1)[1], None)
    blob: dict[str, Any] = {"generate": g, "seed": cfg.base.seed, "image_size": cfg.base.image_size}
    if desc.identity_encoder or desc.learned:
        blob.update(device=cfg.base.device, identity=cfg.identity.model_dump(mode="json"))
    if desc.model_setting:
        from facefoundry.stages.generator import model_folder, training_section

        model = model_folder(cfg, desc)
        if desc.learned and model == Path(training_section(cfg, desc).out) / "model":
            blob["model_key"] = train_key(cfg, desc.name)  # trained from these settings (by the sweep, first)
        elif model.exists():
            from facefoundry.tracking import dvc_dir_hash

            blob["model"] = dvc_dir_hash(model)
    return _digest(blob)


def train_key(cfg: Config, name: str) -> str:
    """Hash of what a learned generator learns from (its training settings but the runtime ones, its data's
    content, the seed and device): trials with equal keys share one trained model when the sweep searches
    that generator's training section."""
    from facefoundry.stages.generator import training_section
    from facefoundry.tracking import dvc_dir_hash

    section = training_section(cfg, name)
    data = dvc_dir_hash(section.dataset) if Path(section.dataset).exists() else section.dataset
    return _digest({name: result_settings(section), "data": data, "seed": cfg.base.seed, "device": cfg.base.device})


def realism_key(cfg: Config, key: str) -> str:
    """Hash of the realism stage's settings on top of dataset ``key`` (its target folder by path)."""
    return _digest({"dataset": key, "realism": result_settings(cfg.realism), "target": cfg.realism.target_dir,
                    "seed": cfg.base.seed, "size": cfg.base.image_size, "device": cfg.base.device})


def fuse_key(cfg: Config) -> str:
    """Hash of what ``fuse`` reads: its settings (not its output folder), the judge settings it selects with,
    the seed, and each source dataset's content hash. Trials with equal keys share one fused dataset."""
    from facefoundry.tracking import dvc_dir_hash

    f = result_settings(cfg.fuse)
    q = cfg.quality
    judge = {"judge": q.judge, "centred": q.centred, "per": q.images_per_identity,
             "leakage": q.leakage.model_dump(mode="json")}
    data = {name: dvc_dir_hash(s.path) if Path(s.path).is_dir() else s.path for name, s in cfg.fuse.sources.items()}
    return _digest({"fuse": f, "quality": judge, "seed": cfg.base.seed, "sources": data})


def validation_key(cfg: Config, key: str) -> str:
    """Hash of what ``validate`` reads besides the dataset itself."""
    t = cfg.train
    return _digest({"dataset": key, "size": cfg.base.image_size, "seed": cfg.base.seed,
                    "min": t.min_images_per_identity, "non_rgb": t.non_rgb,
                    "identity": cfg.identity.model_dump(mode="json"), "quality": cfg.quality.model_dump(mode="json")})


def trial_config(sweep: Sweep, params: dict[str, Any], folder: Path, ctx: dict) -> tuple[Config, dict[str, str]]:
    """The trial's Config: the base recipe + the trial's params (exactly as ``--set``), then its paths.

    Returns the config and its dataset keys (``generate``, and ``realism`` when the sweep translates).
    Paths: the shared dataset ``<sweep>/datasets/<key>`` (the translated one ``<sweep>/datasets/<realism
    key>``), training and evaluation under ``folder``, the sweep's benchmarks and MLflow store.
    """
    from pydantic import ValidationError

    from facefoundry.config import format_validation_error

    raw = apply_sets(sweep.base_raw, trial_sets(params))
    where = f"{sweep.path} trial {folder.name}"
    datasets = Path(ctx["out"]) / "datasets"
    paths: dict[str, Any] = {"base.tracking_uri": ctx["tracking_uri"], "base.experiment": ctx["experiment"],
                             "train.threads": ctx["threads"]}
    if not ctx.get("gpu") and raw.get("base", {}).get("device", "auto") == "auto":
        paths["base.device"] = "cpu"
    if ctx.get("realism_target"):
        paths["realism.target_dir"] = ctx["realism_target"]
    try:
        first = Config.model_validate(apply_sets(raw, trial_sets(paths)))
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(where, err)) from None
    learned = searched_generator(first, sweep)
    if learned is not None:  # the sweep searches a generator's training settings: each variant is a trained model
        from facefoundry.generators.table import descriptor
        from facefoundry.stages.generator import training_section

        desc, section = descriptor(learned), training_section(first, learned)
        keys = {"train_generator": train_key(first, learned)}
        model = datasets / f"{keys['train_generator']}.{learned}"
        paths.update({f"{desc.train_section}.out": str(model), desc.model_setting: str(model / "model")})
        if "cache" in type(section).model_fields:  # what variants on the same data share (IDSync's VAE)
            paths[f"{desc.train_section}.cache"] = str(datasets / f"{learned}_cache")
        if "threads" in type(section).model_fields:
            paths[f"{desc.train_section}.threads"] = ctx["threads"]
        first = Config.model_validate(apply_sets(raw, trial_sets(paths)))
        keys["generate"] = dataset_key(first)
    elif any(k.startswith("fuse.") for k in sweep.spec.space):  # the trial's dataset is a fusion of datasets
        keys = {"fuse": fuse_key(first)}
        keys["generate"] = keys["fuse"]
        paths["fuse.out"] = str(datasets / keys["fuse"])
    else:
        keys = {"generate": dataset_key(first)}
    data = datasets / keys["generate"]
    if sweep.spec.realism:
        keys["realism"] = realism_key(first, keys["generate"])
        paths.update({"realism.source": str(data), "realism.out": str(datasets / keys["realism"]),
                      "realism.model_out": str(datasets / f"{keys['realism']}.model")})
    final = datasets / keys.get("realism", keys["generate"])
    paths.update({
        "generate.out": str(data), "train.dataset": str(final), "train.out": str(folder / "train"),
        "train.metrics": str(folder / "train" / "metrics.json"), "evaluate.model": str(folder / "train" / "model"),
        "evaluate.out": str(folder / "eval"),
        "train.recipe": raw.get("train", {}).get("recipe") or f"{sweep.name}-{folder.name}",
    })
    if not ctx.get("register_models"):
        paths["train.registered_model"] = None
    for name, path in ctx["benchmarks"].items():
        paths[f"evaluate.benchmarks.{name}"] = path
    # a leakage reference that is one of the recipe's benchmarks means the sweep's copy of that benchmark
    bench_of = {str(p): name for name, p in first.evaluate.benchmarks.items()}
    refs = [ctx["benchmarks"].get(bench_of.get(str(r), ""), r) for r in first.quality.leakage.references]
    if refs != list(first.quality.leakage.references):
        paths["quality.leakage.references"] = refs
    try:
        cfg = Config.model_validate(apply_sets(raw, trial_sets(paths)))
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(where, err)) from None
    cfg._sources = f"{sweep.path} · trial {folder.name}"
    return cfg, keys


def searched_generator(cfg: Config, sweep: Sweep) -> str | None:
    """The recipe's generator when it learns and the sweep's space searches its training section, else None."""
    from facefoundry.generators.table import descriptor

    desc = descriptor(cfg.generate.generator)
    if desc.learned and desc.model_setting and any(k.startswith(f"{desc.train_section}.") for k in sweep.spec.space):
        return desc.name
    return None


def injected(sweep: Sweep, params: dict[str, Any], number: int, attempt: int) -> bool:
    inj = sweep.spec.inject_failure
    if inj is None or (inj.attempts is not None and attempt > inj.attempts):
        return False
    hit = number in inj.trials
    if inj.match:
        hit = hit or all(params.get(k) == v for k, v in inj.match.items())
    return hit


def trial_key(experiment_tag: str, trial_id: str) -> str:
    """``<number>_<trial id>``: the trial's folder and (as ``trial_<key>``) its Ray name.

    The number counts trials in creation order from 0 (kept by ``Tuner.restore``): Ray's grid generator
    puts it in the trial id (``ab12c_00003``), its search generator at the head of the experiment tag
    (counting from 1).
    """
    tail = trial_id.rsplit("_", 1)[-1] if "_" in trial_id else ""
    head = str(experiment_tag).split("_", 1)[0]
    if len(tail) == 5 and tail.isdigit():
        number = int(tail)
    elif head.isdigit():
        number = int(head) - 1
    else:
        return trial_id
    return f"{number:03d}_{trial_id}"


def trial_number(key: str) -> int:
    """``003_ab12cd34`` → 3 (-1 when the key has no number)."""
    head = key.split("_", 1)[0]
    return int(head) if head.isdigit() and "_" in key else -1


# -- the shared dataset ------------------------------------------------------------------------------


def shared_dataset(cfg: Config, keys: dict[str, str], trial_id: str, log) -> tuple[dict, dict, dict]:  # noqa: ANN001
    """Generate (once per key), translate (with realism, once per key) and validate (once per key and
    validate settings) the trial's dataset; trials with the same keys wait for and reuse it.

    Returns (dataset info, data metrics, timings). ``<datasets>/generations.jsonl`` gets one line per
    dataset actually made.
    """
    from facefoundry.stages.generate import run_generate
    from facefoundry.stages.validate import run_validate

    times = {"dataset_wait_seconds": 0.0, "generate_seconds": 0.0, "realism_seconds": 0.0, "validate_seconds": 0.0}
    if "train_generator" in keys:  # the sweep searches a generator's training: train once per key, then generate
        from facefoundry.generators.descriptor import load_object
        from facefoundry.generators.table import descriptor
        from facefoundry.stages.generator import run_train_generator, training_section

        name = cfg.generate.generator
        desc, section = descriptor(name), training_section(cfg, name)
        parts = list(load_object(desc.describe)(cfg)) if desc.describe else []
        _make_once(Path(section.out), keys["train_generator"], name, trial_id, times,
                   lambda: run_train_generator(cfg, name), log, f"{name} {' '.join(parts)}".strip(),
                   {"generator": name, "settings": parts})
    gen = cfg.generate
    if "fuse" in keys:  # the sweep searches fusion settings: fuse once per key, from the recipe's sources
        from facefoundry.stages.fuse import run_fuse

        f = cfg.fuse
        info = _make_once(Path(f.out), keys["fuse"], "fuse", trial_id, times, lambda: run_fuse(cfg), log,
                          f"fusion of {', '.join(f.sources)} ({f.strategy}, overlap {f.overlap} ≥ {f.overlap_threshold:g})",
                          {"sources": list(f.sources), "seed": cfg.base.seed})
    else:
        info = _make_once(Path(cfg.generate.out), keys["generate"], "generate", trial_id, times,
                          lambda: run_generate(cfg), log, f"{gen.generator}, {gen.shape}",
                          {"generator": gen.generator, "seed": cfg.base.seed, "image_size": cfg.base.image_size})
    if "realism" in keys:
        from facefoundry.stages.realism import run_realism

        info = _make_once(Path(cfg.realism.out), keys["realism"], "realism", trial_id, times,
                          lambda: run_realism(cfg), log, f"realism {cfg.realism.method} of {keys['generate']}",
                          {"source": keys["generate"], "method": cfg.realism.method})
    folder = Path(cfg.train.dataset)
    vmarker = folder.parent / f"{folder.name}.validate-{validation_key(cfg, folder.name)}.json"
    t0 = time.perf_counter()
    with file_lock(folder.parent / f"{folder.name}.lock"):
        times["dataset_wait_seconds"] += time.perf_counter() - t0
        metrics = read_json(vmarker)
        if not metrics:
            t0 = time.perf_counter()
            metrics = run_validate(cfg, str(folder), str(vmarker))
            times["validate_seconds"] = time.perf_counter() - t0
    return info, metrics, times


def _make_once(folder: Path, key: str, kind: str, trial_id: str, times: dict, make, log, what: str,  # noqa: ANN001
               extra: dict) -> dict:
    from facefoundry.tracking import dvc_dir_hash

    root = folder.parent
    marker = root / f"{key}.json"
    t0 = time.perf_counter()
    with file_lock(root / f"{key}.lock"):
        times["dataset_wait_seconds"] += time.perf_counter() - t0
        info = read_json(marker)
        if info:
            log(f"trial {trial_id}: dataset {key} shared (made by trial {info.get('generated_by')})")
            return info
        log(f"trial {trial_id}: making dataset {key} ({what})")
        t0 = time.perf_counter()
        make()
        secs = time.perf_counter() - t0
        info = {"key": key, "kind": kind, "path": str(folder), "dvc_md5": dvc_dir_hash(folder),
                "generated_by": trial_id, "seconds": secs, **extra}
        atomic_write_json(marker, info)
        with open(root / "generations.jsonl", "a") as fh:
            fh.write(json.dumps({"key": key, "kind": kind, "trial": trial_id, "seconds": round(secs, 3)}) + "\n")
        times[f"{kind}_seconds"] = secs
        return info


# -- per-epoch validation ------------------------------------------------------------------------------
class EpochScorer:
    """The current backbone's k-fold accuracy on the validation benchmark (pure: no tracking, no RNG).

    Runs in eval mode under ``no_grad`` and restores the mode, so training continues exactly as it
    would have without it (the trainer re-seeds every epoch).
    """

    def __init__(self, cfg: Config, name: str, path: str, pairs: int = 0, flip: bool | None = None):
        from facefoundry.verification.binfile import read_bin

        self.cfg, self.name = cfg, name
        ps = read_bin(path)
        if pairs and pairs < len(ps.issame):
            ps.images, ps.issame = ps.images[: 2 * pairs], ps.issame[:pairs]
        self.pairs = ps
        self.flip = cfg.evaluate.flip if flip is None else flip
        self.seconds = 0.0

    def __call__(self, trainer) -> float:  # noqa: ANN001
        import torch

        from facefoundry.data.transforms import resize_uint8
        from facefoundry.verification.protocol import embed, evaluate_pairs

        t0 = time.perf_counter()
        e = self.cfg.evaluate
        model = trainer.backbone
        was = model.training
        model.eval()
        try:
            images = self.pairs.images
            if images.shape[1] != trainer.size:
                images = resize_uint8(images, trainer.size)
            with torch.no_grad():
                emb = embed(model.embed_raw, images, trainer.preprocess, e.batch_size, self.flip, trainer.device)
        finally:
            model.train(was)
        res = evaluate_pairs(self.name, emb, self.pairs.issame, e.nfolds, e.distance, e.far_targets)
        self.seconds += time.perf_counter() - t0
        return float(res.accuracy)


# -- the trial's MLflow run ------------------------------------------------------------------------------
def _client(uri: str):  # noqa: ANN202
    from facefoundry.tracking import _mlflow

    return _mlflow().MlflowClient(tracking_uri=uri)


def find_trial_run(client, experiment_id: str, sweep_id: str, trial_id: str) -> str | None:  # noqa: ANN001
    found = client.search_runs([experiment_id], f"tags.`facefoundry.sweep_id` = '{sweep_id}' and "
                               f"tags.`facefoundry.trial_id` = '{trial_id}' and tags.`facefoundry.role` = 'trial'",
                               max_results=1)
    return found[0].info.run_id if found else None


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trial_run_name(number: int, params: dict[str, Any]) -> str:
    return f"trial {number:02d} · " + ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in params.items())


class TrialRun:
    """The trial's MLflow run (client API: the stages' runs use the fluent API inside it)."""

    def __init__(self, ctx: dict, trial_id: str, number: int, params: dict[str, Any], cfg: Config):
        from facefoundry.tracking import git_commit

        self.client = _client(ctx["tracking_uri"])
        self.ctx = ctx
        exp = ctx["experiment_id"]
        run_id = find_trial_run(self.client, exp, ctx["sweep_id"], trial_id)
        if run_id is not None:  # a retry, or a resumed sweep: the same run continues
            self.client.update_run(run_id, status="RUNNING")
            for tag in ("facefoundry.failure", "facefoundry.trial_status"):
                with contextlib.suppress(Exception):
                    self.client.delete_tag(run_id, tag)
            self.client.set_tag(run_id, "facefoundry.pid", str(os.getpid()))
        else:
            tags = {"facefoundry.role": "trial", "mlflow.parentRunId": ctx["sweep_run_id"],
                    "facefoundry.sweep_id": ctx["sweep_id"], "facefoundry.sweep": ctx["sweep"]["name"],
                    "facefoundry.trial_id": trial_id, "facefoundry.trial_number": str(number),
                    "facefoundry.pid": str(os.getpid()),
                    "facefoundry.host": socket.gethostname(), "facefoundry.config": cfg._sources}
            commit = git_commit()
            if commit:
                tags["mlflow.source.git.commit"] = commit
            run = self.client.create_run(exp, run_name=trial_run_name(number, params), tags=tags)
            run_id = run.info.run_id
            self._log_params(run_id, params, cfg)
        self.run_id = run_id

    def _log_params(self, run_id: str, params: dict[str, Any], cfg: Config) -> None:
        from mlflow.entities import Param

        dump = cfg.model_dump(mode="json")
        flat = flatten({s: dump[s] for s in ("base", "generate", "train", "evaluate")})
        flat = {k: v for k, v in flat.items() if k not in params}
        flat.update({f"sweep.{k}": v for k, v in params.items()})  # the swept ones, sortable together
        flat.update(params)
        items = [Param(k, (json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def metrics(self, values: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        from facefoundry.tracking import _clean

        now = int(time.time() * 1000)
        ms = [Metric(k, v, now, step) for k, v in _clean(values).items()]
        for i in range(0, len(ms), 500):
            self.client.log_batch(self.run_id, metrics=ms[i:i + 500])

    def tags(self, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])

    def close_children(self, status: str, note: str) -> None:
        """Stage runs of this trial still open (or failed by an ended trial): ``status``, with a note."""
        with contextlib.suppress(Exception):
            for r in self.client.search_runs([self.ctx["experiment_id"]],
                                             f"tags.`mlflow.parentRunId` = '{self.run_id}'"):
                if r.info.status == "RUNNING" or (note and r.info.status == "FAILED"):
                    if note:
                        self.client.set_tag(r.info.run_id, "facefoundry.stopped", note)
                    self.client.set_terminated(r.info.run_id, status)

    def finish(self, status: str, trial_status: str) -> None:
        self.tags({"facefoundry.trial_status": trial_status})
        self.client.set_terminated(self.run_id, status)


# -- the trainable ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """The trial's stdout/stderr (stage logs, progress) into its own log file, not the driver's console."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


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
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "attempts.log", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()} host {socket.gethostname()}\n")
    attempt = len((folder / "attempts.log").read_text().splitlines())
    with _output_to(folder / "trial.log"):
        _trial(config, ctx, trial_id, folder, attempt, t_start)


def _trial(config: dict, ctx: dict, trial_id: str, folder: Path, attempt: int, t_start: float) -> None:
    import torch
    from ray import tune

    from facefoundry.stages.common import log
    from facefoundry.tracking import PARENT_RUN_ENV

    _set_env(ctx, trial_id)
    torch.set_num_threads(ctx["threads"])
    sweep = sweep_from_ctx(ctx)
    params = sweep.decode(config)
    number = trial_number(folder.name)
    log(f"trial {trial_id} (#{number}, attempt {attempt}): " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
    cfg, keys = trial_config(sweep, params, folder, ctx)
    key = keys.get("realism", keys["generate"])
    t_mlflow = time.perf_counter()
    run = TrialRun(ctx, trial_id, number, params, cfg)
    mlflow_seconds = time.perf_counter() - t_mlflow
    os.environ[PARENT_RUN_ENV] = run.run_id
    atomic_write_json(folder / "trial.json", {"trial_id": trial_id, "number": number, "params": params,
                                              "run_id": run.run_id, "dataset_key": key})
    stopped: list[str] = []  # set when Ray ends the trial inside a report
    try:
        repeat_user_error(folder, params)
        if injected(sweep, params, number, attempt):
            raise RuntimeError(f"injected failure (spec inject_failure) in trial {trial_id}, attempt {attempt}")
        info, data, times = shared_dataset(cfg, keys, trial_id, log)
        t0 = time.perf_counter()
        run.tags({"dataset.dvc_md5": info["dvc_md5"], "dataset.path": info["path"],
                  "facefoundry.dataset_key": key, "facefoundry.dataset_generated_by": info.get("generated_by", "")})
        run.metrics({f"data/{k}": v for k, v in data.items() if isinstance(v, (int, float))})
        mlflow_seconds += time.perf_counter() - t0
        o, v = sweep.spec.objective, sweep.spec.validation
        data_objective = data.get(o.metric.removeprefix("data/")) if o.metric != "accuracy" else None
        if o.metric != "accuracy" and data_objective is None:
            raise FaceFoundryError(f"objective {o.metric}: not among this dataset's data metrics "
                                   f"({', '.join(sorted(data))})")
        scorer = EpochScorer(cfg, v.benchmark, cfg.evaluate.benchmarks[v.benchmark], v.pairs, v.flip)
        last: dict[str, Any] = {}
        report_seconds = [0.0]

        def on_epoch(stats, trainer) -> None:  # noqa: ANN001
            from facefoundry.tracking import log_metrics

            acc = scorer(trainer)
            t1 = time.perf_counter()
            log_metrics({f"val/{v.benchmark}_accuracy": acc}, step=stats.epoch)  # into the training run
            run.metrics({"val/accuracy": acc, "train/loss": stats.loss, "train/accuracy": stats.accuracy},
                        step=stats.epoch)
            result = {"epoch": stats.epoch, "val_accuracy": acc, "train_loss": stats.loss,
                      "train_accuracy": stats.accuracy,
                      "objective": acc if data_objective is None else float(data_objective),
                      "mlflow_run_id": run.run_id, "dataset_key": key}
            last.clear()
            last.update(result)
            if stats.epoch < cfg.train.epochs:  # the last epoch's numbers go out with the final result
                try:
                    tune.report(result)
                except BaseException as exc:  # Ray ending the trial here (ASHA, Ctrl-C) is not a failure
                    stopped.append(f"{type(exc).__name__} after epoch {stats.epoch}")
                    raise
            report_seconds[0] += time.perf_counter() - t1

        from facefoundry.stages.evaluate import run_evaluate
        from facefoundry.stages.train import run_train

        t0 = time.perf_counter()
        run_train(cfg, epoch_hook=on_epoch)
        train_seconds = time.perf_counter() - t0
        train_rec = read_json(Path(cfg.train.out) / "mlflow_run.json")
        t0 = time.perf_counter()
        metrics = run_evaluate(cfg)
        evaluate_seconds = time.perf_counter() - t0
        if o.metric == "accuracy":
            objective = sum(metrics[f"{b}/accuracy"] for b in o.benchmarks) / len(o.benchmarks)
        else:
            objective = float(data_objective)
        t0 = time.perf_counter()
        timings = {**times, "train_seconds": train_seconds, "validation_seconds": scorer.seconds,
                   "evaluate_seconds": evaluate_seconds}
        timings["trial_seconds"] = time.perf_counter() - t_start
        run.metrics({**metrics, "objective": objective, **{f"time/{k}": x for k, x in timings.items()}})
        run.tags({"facefoundry.train_run_id": train_rec.get("run_id", "")})
        run.finish("FINISHED", COMPLETED)
        mlflow_seconds += time.perf_counter() - t0
        final = {**last, "epoch": last.get("epoch", cfg.train.epochs), "objective": objective, "final": 1,
                 **{f"acc/{k.removesuffix('/accuracy')}": x for k, x in metrics.items() if k.endswith("/accuracy")},
                 "mean_accuracy": metrics.get("mean_accuracy"),
                 **{f"data/{k}": x for k, x in data.items() if isinstance(x, (int, float))},
                 **timings, "report_seconds": report_seconds[0], "mlflow_seconds": mlflow_seconds,
                 "mlflow_run_id": run.run_id, "dataset_key": key, "dataset_md5": info["dvc_md5"]}
        final.setdefault("val_accuracy", metrics.get(f"{v.benchmark}/accuracy", objective))  # nothing left to train
        atomic_write_json(folder / "result.json", final)
        stopped.append("after its final result")  # Ray ends the trial inside this report
        tune.report(final)
    except BaseException as exc:  # noqa: BLE001 - recorded on the run, then Ray retries or reports it
        if stopped and stopped[-1] == "after its final result":
            pass  # completed: Ray ends the function inside its last report
        elif stopped or _is_stop(exc):
            log(f"trial {trial_id}: ended by Ray ({stopped[0] if stopped else type(exc).__name__})")
            run.close_children("KILLED", "trial stopped by Ray Tune (ASHA or the sweep's end)")
        else:
            if isinstance(exc, FaceFoundryError):
                record_user_error(folder, params, exc)
            run.tags({"facefoundry.failure": f"{type(exc).__name__}: {exc}"[:4000]})
            run.close_children("FAILED", "")
            run.finish("FAILED", FAILED)
        raise


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
    return type(exc).__name__ in ("StopIteration", "SystemExit", "KeyboardInterrupt") or \
        "ray" in type(exc).__module__ and "Stop" in type(exc).__name__
