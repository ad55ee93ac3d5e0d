"""``facefoundry`` command line: one sub-command per pipeline stage.

Global options pick the config: ``--params`` (default ``params.yaml``), any number of
``--experiment`` files deep-merged on top, then ``--set key.path=value`` overrides.
A user error prints one line and exits 2; nothing half-written is left behind.

This module holds one concern, the command line: each command parses its options into the config
and calls its stage (``facefoundry.stages``, ``sweep``, ``promote``), which does the work. It reads
best whole (the commands' help texts side by side), so it stays one module of ~480 lines.
"""

from __future__ import annotations

import os
import sys

import typer

from facefoundry.config import Config, load_config
from facefoundry.errors import FaceFoundryError, write_error_message

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Synthetic face datasets in, verified face-recognition accuracy out.",
)
_state: dict = {}


@app.callback()
def _global(
    params: str | None = typer.Option(
        None,
        "--params",
        "-p",
        help="Base parameter file (default: params.yaml, "
        "or the built-in defaults when there is none; a named file must exist).",
    ),
    experiment: list[str] = typer.Option(
        [], "--experiment", "-e", help="Experiment YAML deep-merged on top (repeatable)."
    ),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override, e.g. --set train.lr=0.05 (repeatable)."),
) -> None:
    _state.update(params=params, experiment=experiment, sets=set_)


def _cfg(extra: list[str] | None = None) -> Config:
    from facefoundry.tracking.access import check_credentials, check_uri
    from facefoundry.tracking.base import check_store

    named = _state.get("params")
    cfg = load_config(
        named or "params.yaml",
        _state.get("experiment"),
        [*_state.get("sets", []), *(extra or [])],
        required=named is not None,
    )
    check_uri(cfg.base.tracking_uri)  # credentials come from the environment or a 0600 file, never a config
    check_store(cfg.base.tracking_uri)  # MLflow 3 opens no ./mlruns file store unless asked
    check_credentials()  # ~/.mlflow/credentials, when there is one, readable by its owner only
    return cfg


def _writable(*folders: object) -> None:
    """Fail in one line, before any long work, when an output folder cannot be written."""
    from pathlib import Path

    from facefoundry.io import ensure_writable

    for folder in folders:
        if folder:
            ensure_writable(Path(str(folder)))


PRODUCTS_HELP = "Folder of what a person looks at (figures, tables; emptied first)"


def _samples(dataset: str) -> str:
    """``outputs/samples/<name>``: the grids of a dataset or benchmark made by generate, benchmark or fuse."""
    from pathlib import Path

    return str(Path("outputs/samples") / Path(dataset).stem)


@app.command()
def generate(
    generator: str | None = typer.Option(None, help="Generator name (default: generate.generator)."),
    out: str | None = typer.Option(
        None,
        "--out",
        help="Dataset folder (default: generate.out; with another --generator, a sibling folder named after it).",
    ),
    products: str | None = typer.Option(
        None, "--products", help=f"{PRODUCTS_HELP}; default outputs/samples/<dataset folder name>."
    ),
) -> None:
    """Generate a synthetic face dataset (manifest folder); IDSync trains its model first when it is missing."""
    from pathlib import Path

    from facefoundry.stages.generate import run_generate

    cfg = _cfg()
    extra = []
    if generator and generator != cfg.generate.generator:
        extra.append(f"generate.generator={generator}")
        if out is None:  # never overwrite another generator's dataset
            out = str(Path(cfg.generate.out).parent / generator)
    if out is not None:
        extra.append(f"generate.out={out}")
    cfg = _cfg(extra) if extra else cfg
    _writable(Path(cfg.generate.out).parent)
    from facefoundry.stages.generator import train_if_missing

    train_if_missing(cfg, cfg.generate.generator)
    run_generate(cfg, products or _samples(cfg.generate.out))


@app.command()
def benchmark(
    products: str | None = typer.Option(
        None, "--products", help=f"{PRODUCTS_HELP}; default outputs/samples/<benchmark file stem>."
    ),
) -> None:
    """Render the synthetic twin verification benchmark (.bin)."""
    from facefoundry.stages.generate import run_benchmark

    cfg = _cfg()
    _writable(os.path.dirname(os.path.abspath(cfg.benchmark.out)))
    run_benchmark(cfg, products or _samples(cfg.benchmark.out))


@app.command()
def synlfw(
    like: str | None = typer.Option(
        None,
        "--like",
        help="Reference .bin whose pair count and same/different order are copied (default: synlfw.like).",
    ),
    out: str | None = typer.Option(None, "--out", help=".bin to write (default: synlfw.out)."),
    ratio: float | None = typer.Option(
        None, "--ratio", help="Syn-LFW-R: identity mixing ratio R in [0, 1]; 1 = plain Syn-LFW (default: synlfw.ratio)."
    ),
    generator: str | None = typer.Option(None, "--generator", help="Generator name (default: synlfw.generator)."),
    table: str | None = typer.Option(
        None,
        "--table",
        help="render: CSV of per-image variations (yaw, smile, …), one row per image (default: synlfw.table).",
    ),
) -> None:
    """Syn-LFW (SynFace): a synthetic twin of a verification benchmark (.bin), same pairs, unseen identities."""
    import json

    from facefoundry.stages.synlfw import run_synlfw

    given = {"like": like, "out": out, "ratio": ratio, "generator": generator, "table": table}
    # strings as JSON (valid YAML), so a path such as `null` or `2024.bin` stays a path
    cfg = _cfg(
        [f"synlfw.{k}={v if isinstance(v, float) else json.dumps(v)}" for k, v in given.items() if v is not None]
    )
    _writable(os.path.dirname(os.path.abspath(cfg.synlfw.out)))
    run_synlfw(cfg)


@app.command()
def validate(
    dataset: str | None = typer.Option(None, help="Dataset folder (default: train.dataset)."),
    out: str | None = typer.Option(
        None,
        help="Where to write data metrics (default: a recipe of "
        "datasets: writes <report.metrics>/<recipe>/validate.json, as the "
        "pipeline does; another dataset <products>/metrics.json).",
    ),
    products: str | None = typer.Option(
        None, "--products", help=f"{PRODUCTS_HELP}; default outputs/validate/<recipe or dataset folder name>."
    ),
) -> None:
    """Check a dataset: every image's size and hash, data metrics, judges and the Great Expectations gates."""
    from pathlib import Path

    from facefoundry.stages.validate import run_validate

    cfg = _cfg()
    folder = Path(dataset or cfg.train.dataset)
    recipe = next((k for k, v in cfg.datasets.items() if Path(v).resolve() == folder.resolve()), None)
    products = products or str(Path("outputs/validate") / (recipe or folder.name))
    out = out or str(Path(cfg.report.metrics) / recipe / "validate.json" if recipe else Path(products) / "metrics.json")
    _writable(os.path.dirname(os.path.abspath(out)), products)
    run_validate(cfg, str(folder), out, products)


@app.command()
def fuse(
    out: str | None = typer.Option(None, "--out", help="Fused dataset folder (default: fuse.out)."),
    metrics: str | None = typer.Option(None, "--metrics", help="Where to write the fusion counts (JSON)."),
    products: str | None = typer.Option(
        None, "--products", help=f"{PRODUCTS_HELP}; default outputs/samples/<fused folder name>."
    ),
) -> None:
    """Fuse datasets of different generators (fuse.sources) after a cross-source identity-overlap check."""
    from facefoundry.stages.fuse import run_fuse

    cfg = _cfg([f"fuse.out={out}"] if out else [])
    _writable(os.path.dirname(os.path.abspath(cfg.fuse.out)))
    run_fuse(cfg, metrics, products or _samples(cfg.fuse.out))


@app.command()
def align(
    src: str = typer.Argument(..., help="Folder of real photos (identity subfolders are kept as labels)."),
    out: str = typer.Option(..., "--out", help="Dataset folder to write (manifest + aligned crops)."),
    size: int | None = typer.Option(None, "--size", help="Crop side (default: base.image_size)."),
    limit: int | None = typer.Option(None, "--limit", help="Align only the first N photos (sorted)."),
    labels: str | None = typer.Option(None, "--labels", help="auto | folders | none (default: align.labels)."),
    detector: str | None = typer.Option(None, "--detector", help="dlib | yunet (default: align.detector)."),
) -> None:
    """Detect and align real photos (dlib HOG + 68 landmarks, or YuNet → 5-point template); misses go to DST/misses.json."""
    from facefoundry.stages.align import run_align

    extra = [f"base.image_size={size}"] if size is not None else []
    extra += [f"align.labels={labels}"] if labels else []
    extra += [f"align.detector={detector}"] if detector else []
    _writable(os.path.dirname(os.path.abspath(out)))
    run_align(_cfg(extra), src, out, limit)


@app.command()
def convert(
    src: str = typer.Argument(
        ..., help="Dataset to convert: identity subfolders of images, or a folder with insightface train.rec/train.idx."
    ),
    out: str = typer.Option(..., "--out", help="Manifest dataset folder to write."),
    fmt: str = typer.Option("png", "--format", help="Image format of the copy: png (lossless) or jpg."),
) -> None:
    """Convert an image-folder or RecordIO dataset to the manifest format (hashes, names, provenance)."""
    from facefoundry.stages.convert import run_convert

    _writable(os.path.dirname(os.path.abspath(out)))
    run_convert(_cfg(), src, out, fmt)


def _train_generator(name: str, stop_after: int | None) -> None:
    from facefoundry.stages.generator import run_train_generator, training_section

    cfg = _cfg()
    out = training_section(cfg, name).out
    _writable(out)
    run_train_generator(cfg, name, stop_after, os.path.join(out, "plots"))


STOP_AFTER_HELP = "Stop after this epoch (resume later by running again)."


@app.command("train-generator")
def train_generator(
    name: str = typer.Argument(..., help="A learned generator: vec2face, idsync, or a plug-in's name."),
    stop_after: int | None = typer.Option(None, "--stop-after", help=STOP_AFTER_HELP),
) -> None:
    """Train (or resume) a learned generator on its section's dataset (vec2face.dataset, idsync.dataset, ...)."""
    _train_generator(name, stop_after)


@app.command("train-vec2face")
def train_vec2face(stop_after: int | None = typer.Option(None, "--stop-after", help=STOP_AFTER_HELP)) -> None:
    """Train the Vec2Face generator on vec2face.dataset (= train-generator vec2face)."""
    _train_generator("vec2face", stop_after)


@app.command("train-idsync")
def train_idsync(stop_after: int | None = typer.Option(None, "--stop-after", help=STOP_AFTER_HELP)) -> None:
    """Train IDSync (identity-conditioned latent diffusion, λ·identity loss) on idsync.dataset (= train-generator
    idsync)."""
    _train_generator("idsync", stop_after)


@app.command("realism-target")
def realism_target(out: str = typer.Option("outputs/realism_target", help="Folder to write.")) -> None:
    """Render the synthetic photographic target domain the embedded default uses."""
    from facefoundry.stages.realism import run_realism_target

    run_realism_target(_cfg(), out)


@app.command()
def realism() -> None:
    """Make rendered faces more realistic by unpaired translation to a target photo folder."""
    from facefoundry.stages.realism import run_realism

    cfg = _cfg()
    _writable(os.path.dirname(os.path.abspath(cfg.realism.out)))
    run_realism(cfg)


@app.command()
def train(
    stop_after: int | None = typer.Option(
        None, "--stop-after", help="Stop after this epoch (preemption, tests); the next call resumes."
    ),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Train in N processes on this node (DDP through torchrun: one per GPU, gloo on CPU); "
        "train.batch_size is per process. One MLflow run; rank 0 writes. Several nodes: docs/scale.md. "
        "With train.launcher=ray: N Ray Train workers on the Ray cluster (RAY_ADDRESS).",
    ),
) -> None:
    """Train an FR model (IResNet + margin head) on train.dataset; resumes from its checkpoint."""
    from facefoundry.stages.train import run_train
    from facefoundry.train.distributed import shutdown, torchrun_command

    cfg = _cfg()
    _writable(cfg.train.out, cfg.train.metrics and os.path.dirname(os.path.abspath(cfg.train.metrics)))
    if cfg.train.launcher == "ray":  # Ray Train's workers on the cluster run the stage; this process waits
        from facefoundry.sweep.ray_train import launch

        launch(cfg, nproc, stop_after, products=os.path.join(cfg.train.out, "plots"))
        return
    command = torchrun_command(nproc, cfg.base.device, sys.argv[1:])
    if command is not None:  # this process becomes torchrun, which runs this same command N times
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, *command])
    try:
        run_train(cfg, stop_after, products=os.path.join(cfg.train.out, "plots"))
    finally:
        shutdown()


@app.command()
def evaluate(
    encoder: list[str] = typer.Option(
        [],
        "--encoder",
        help="Score a pretrained identity encoder instead of the "
        "trained model: a name (dlib) or a path (.dat, .onnx, .pth, model folder). Repeatable.",
    ),
    benchmark: list[str] = typer.Option(
        [], "--benchmark", help="NAME=PATH.bin, replacing evaluate.benchmarks. Repeatable."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model to score (default: evaluate.model): a model "
        "folder, an arcface_torch backbone.pth (with --arch) or an insightface .onnx.",
    ),
    arch: str | None = typer.Option(
        None,
        "--arch",
        help="Architecture of a .pth model: r18, r34, r50, r100, r200 "
        "(default: evaluate.arch, else read from its keys).",
    ),
    products: str | None = typer.Option(
        None,
        "--products",
        help=f"{PRODUCTS_HELP}; default outputs/eval/<recipe> "
        "(the folder above a model/ folder, else the model's file stem).",
    ),
) -> None:
    """10-fold verification accuracy, TAR@FAR and ROC on every configured benchmark."""
    from facefoundry.stages.evaluate import default_products, run_evaluate

    if encoder and (model or arch):
        raise FaceFoundryError(
            "--encoder scores identity encoders; --model/--arch score one FR model: use one or the other"
        )
    cfg = _cfg()
    if model is not None or arch is not None:
        cfg = cfg.model_copy(
            update={
                "evaluate": cfg.evaluate.model_copy(
                    update={k: v for k, v in (("model", model), ("arch", arch)) if v is not None}
                )
            }
        )
    products = products or str(default_products(cfg, encoder))
    _writable(cfg.evaluate.out, products)
    run_evaluate(cfg, encoder, benchmark, products)


@app.command("import-model")
def import_model(
    src: str = typer.Argument(
        ...,
        help="A released insightface model: an arcface_torch backbone.pth, or an .onnx "
        "whose weights kept IResNet names.",
    ),
    out: str = typer.Option(..., "--out", help="Model folder to write (must not exist yet)."),
    arch: str | None = typer.Option(
        None, "--arch", help="r18, r34, r50, r100 or r200 (default: read from the weights' keys)."
    ),
) -> None:
    """Save a released insightface model as a FaceFoundry model folder (for evaluate, train.init, encoders)."""
    from facefoundry.models.released import import_to_folder
    from facefoundry.stages.common import log

    _writable(os.path.dirname(os.path.abspath(out)))
    import_to_folder(src, out, arch, log)


@app.command()
def report() -> None:
    """Leaderboard of the pipeline's recipes (datasets:) from their metrics files, into report.out and MLflow."""
    from facefoundry.stages.report import run_report

    cfg = _cfg()
    _writable(cfg.report.out)
    run_report(cfg)


def _claim(text: str) -> dict[str, str]:
    """``--claim A>B`` (A expected higher than B) or ``A<B`` (lower)."""
    for op, expect in ((">", "higher"), ("<", "lower")):
        recipe, found, against = text.partition(op)
        if found and recipe.strip() and against.strip() and op not in against:
            return {"recipe": recipe.strip(), "against": against.strip(), "expect": expect}
    raise FaceFoundryError(f"--claim {text}: expected RECIPE>OTHER (higher) or RECIPE<OTHER (lower)")


@app.command()
def compare(
    recipe: list[str] = typer.Option(
        [],
        "--recipe",
        help="NAME=DATASET_FOLDER, NAME=EXPERIMENT.yaml or NAME=DATASET_FOLDER,EXPERIMENT.yaml (the dataset under "
        "those settings), replacing compare.recipes. Repeatable.",
    ),
    seeds: str | None = typer.Option(None, "--seeds", help="FR seeds, comma-separated (default: compare.seeds)."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Recipe the others are tested against (default: compare.baseline, else the first)."
    ),
    claim: list[str] = typer.Option(
        [], "--claim", help="A direction to test, RECIPE>OTHER or RECIPE<OTHER, replacing compare.claims. Repeatable."
    ),
) -> None:
    """Dataset recipes × FR seeds: train and evaluate each pair (resumable), then mean ± std, confidence intervals
    and tests against a baseline; summary.json, compare.md and a self-contained compare.html under compare.out."""
    import json

    from facefoundry.stages.compare import run_compare

    extra = []
    if recipe:
        split = [item.partition("=") for item in recipe]
        bad = next((item for item, (name, _, value) in zip(recipe, split) if not (name and value)), None)
        if bad is not None:
            raise FaceFoundryError(f"--recipe {bad}: expected NAME=DATASET_FOLDER or NAME=EXPERIMENT.yaml")
        pairs: dict[str, str | list[str]] = {
            name: value if "," not in value else [v.strip() for v in value.split(",") if v.strip()]
            for name, _, value in split
        }
    if seeds:
        try:
            extra.append(f"compare.seeds={json.dumps([int(s) for s in seeds.split(',') if s.strip()])}")
        except ValueError:
            raise FaceFoundryError(f"--seeds {seeds}: expected integers separated by commas, e.g. 1234,2,3") from None
    if baseline:
        extra.append(f"compare.baseline={json.dumps(baseline)}")
    if claim:
        extra.append(f"compare.claims={json.dumps([_claim(c) for c in claim])}")
    cfg = _cfg(extra)
    if recipe:  # they replace compare.recipes (a --set of a mapping would merge into the parameter file's)
        cfg.compare.recipes = pairs
    _writable(cfg.compare.out)
    named = _state.get("params")

    def load(experiments: list[str], sets: list[str]) -> Config:
        return load_config(
            named or "params.yaml",
            [*(_state.get("experiment") or []), *experiments],
            [*_state.get("sets", []), *extra, *sets],
            required=named is not None,
        )

    run_compare(cfg, load)


@app.command()
def leaderboard(
    experiment: list[str] = typer.Option(
        [],
        "--experiment",
        help="MLflow experiment to rank (repeatable; default "
        "base.experiment). Not the global -e, which names a config file.",
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Rank on: average (the mean over the benchmarks "
        "every ranked run has), a benchmark (twins, real, lfw, …) or data/<name> "
        "(default: report.benchmark, else average).",
    ),
    top: int | None = typer.Option(None, "--top", min=1, help="Show the best N recipes (default: report.top)."),
    include_adhoc: bool | None = typer.Option(
        None,
        "--include-adhoc/--exclude-adhoc",
        help="Also rank runs started outside a pipeline (default: report.include_adhoc).",
    ),
) -> None:
    """Rank recipes across runs and experiments: a table per benchmark, the average and the data metrics."""
    from facefoundry.stages.report import run_leaderboard

    cfg = _cfg()
    _writable(cfg.report.leaderboard_out)
    run_leaderboard(cfg, experiment, metric, top, include_adhoc)


@app.command()
def promote(
    metric: str | None = typer.Option(
        None, "--metric", help="What best means: average, a benchmark or data/<name> (default: promote.metric)."
    ),
    experiment: list[str] = typer.Option(
        [], "--experiment", help="MLflow experiment to pick from (repeatable; default base.experiment)."
    ),
    gate: bool | None = typer.Option(
        None, "--gate/--no-gate", help="Require the quality gate promote.gate (default: promote.gate.enabled)."
    ),
    include_adhoc: bool | None = typer.Option(
        None,
        "--include-adhoc/--exclude-adhoc",
        help="Also consider runs started outside a pipeline (default: report.include_adhoc).",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Promote without the evidence (promote.min_seeds FR seeds, p < promote.alpha against the "
        "champion); recorded in the registry's tags and the dataset card.",
    ),
) -> None:
    """Register the best run's FR model as models:/<name>@champion (the old one keeps @previous), and write
    its recipe (promote.out) and dataset card (promote.card). The challenger replaces the champion only when
    its mean over promote.min_seeds FR seeds beats the champion's with p < promote.alpha (one-sided)."""
    from facefoundry.promote.run import run_promote

    run_promote(_cfg(), metric, experiment, gate, include_adhoc, _state.get("params") or "params.yaml", force)


@app.command()
def pipeline(
    overrides: list[str] = typer.Argument(
        None,
        help="params.yaml overrides, e.g. train.lr=0.05 (several, or one "
        "space-separated string as `mlflow run -P set=...` passes them).",
    ),
    stage: str | None = typer.Option(None, "--stage", help="Run only this stage and what it needs."),
    name: str | None = typer.Option(None, "--name", "-n", help="DVC experiment name (with overrides)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the DVC command and stop."),
) -> None:
    """Run the DVC pipeline: `dvc repro`, or `dvc exp run -S ...` when overrides are given.

    DVC reads only params.yaml, so experiment files (`-e experiments/promoted.yaml`) and `--set`
    become `-S` overrides: exactly the keys where they differ from params.yaml. DVC owns every
    output; the MLproject entry points call this, so `mlflow run . -e main` and `dvc repro`
    produce the same outputs and dvc.lock.
    """
    import subprocess
    from pathlib import Path

    from facefoundry.stages.pipeline import dvc_command

    sets = [tok for arg in overrides or [] for tok in arg.split() if tok]
    named = _state.get("params")
    cmd = [
        sys.executable,
        "-m",
        "dvc",
        *dvc_command(
            Path(named or "params.yaml"),
            _state.get("experiment") or [],
            _state.get("sets") or [],
            sets,
            stage,
            name,
            required=named is not None,
        ),
    ]
    print("$ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    if dry_run:
        return
    rc = subprocess.call(cmd)
    if rc:
        raise typer.Exit(rc)


@app.command()
def sweep(
    spec: str = typer.Argument(
        ...,
        help="Sweep spec, e.g. experiments/sweep_smoke.yaml (search space, objective, budget, resources per trial).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the stopped sweep in the output folder (Tuner.restore: finished trials are kept, not rerun).",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Ray cluster address (default: the spec's address, else RAY_ADDRESS, else Ray on this machine's cores).",
    ),
    out: str | None = typer.Option(
        None, "--out", help="Sweep folder (default: the spec's out, else outputs/sweeps/<name>)."
    ),
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="Ray Tune's own progress tables and the "
        "trials' output on the console (trial logs are always in trials/<id>/trial.log).",
    ),
    warm_start: str | None = typer.Option(
        None,
        "--warm-start",
        metavar="EXPERIMENT",
        help="Start Optuna from the compatible finished trials of this MLflow experiment (same space keys, values "
        "in the space, same objective); not for a space with a grid dimension.",
    ),
) -> None:
    """Sweep a space of recipes with Ray Tune (Optuna TPE + ASHA); one MLflow parent run, one child per trial."""
    from facefoundry.sweep.spec import load_spec

    s = load_spec(spec, _state.get("params"), _state.get("experiment"), _state.get("sets"), out)  # one-line errors
    _writable(s.out)
    from facefoundry.sweep.run import run_sweep

    try:
        outcome = run_sweep(s, resume=resume, address=address, verbose=verbose, warm_start=warm_start)
    except KeyboardInterrupt:
        outcome = None
    if outcome is None or outcome.interrupted:
        extra = "".join(f" {o} {v}" for o, v in (("--out", out), ("--address", address)) if v)
        if (s.out / "ray" / "tune").is_dir():
            print(
                f"interrupted: finished trials are kept in {s.out}; resume with: facefoundry sweep {spec} --resume"
                f"{extra}",
                file=sys.stderr,
            )
        else:
            print(
                f"interrupted before any trial started; run the same command again to start: facefoundry sweep "
                f"{spec}{extra}",
                file=sys.stderr,
            )
        sys.exit(130)


access_app = typer.Typer(help="Who may do what on an authenticated MLflow server (run as its admin).")
app.add_typer(access_app, name="access")


def _server(cfg: Config | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or (cfg or _cfg()).base.tracking_uri


@access_app.command("grant")
def access_grant(
    user: str = typer.Argument(..., help="MLflow user (made when new)."),
    role: str = typer.Argument(
        ..., help="reader (READ), researcher (EDIT: log, sweep, register) or maintainer (MANAGE: also promote)."
    ),
    credentials_out: str = typer.Option(
        "", help="A new user's credentials file (0600; default ./USER.mlflow-credentials)."
    ),
) -> None:
    """Give USER exactly ROLE on every experiment and registered model; a new user's password is generated
    (or FACEFOUNDRY_NEW_USER_PASSWORD) and written to a 0600 file, never printed."""
    from facefoundry.stages.common import log
    from facefoundry.tracking.access import grant, write_credentials

    cfg = _cfg()
    research, champion = cfg.train.registered_model, cfg.promote.registered_model or cfg.train.registered_model
    protect = champion if champion and champion != research else None
    models = (research,) if research else ()
    made = grant(_server(cfg), user, role, os.environ.get("FACEFOUNDRY_NEW_USER_PASSWORD"), models, protect)
    if champion and not protect:
        log(
            f"note: the champion lives in {champion!r}, the model researchers register into, so MLflow lets them "
            "move its aliases through its REST API (facefoundry promote still asks for MANAGE); give it a "
            f"model of its own (promote.registered_model: {champion}-champion) to have the server refuse them"
        )
    if made is not None:
        path = write_credentials(credentials_out or f"{user}.mlflow-credentials", user, made)
        typer.echo(f"user {user} made; credentials in {path} (mode 0600: hand it over as ~/.mlflow/credentials)")
    typer.echo(f"{user}: {role}")


@access_app.command("revoke")
def access_revoke(user: str = typer.Argument(...)) -> None:
    """Take USER's roles away (the account stays and reads nothing)."""
    from facefoundry.tracking.access import revoke

    typer.echo(f"{user}: {', '.join(revoke(_server(), user)) or 'no role'} revoked")


@access_app.command("show")
def access_show(user: str = typer.Argument(...)) -> None:
    """USER's FaceFoundry roles."""
    from facefoundry.tracking.access import roles_of

    typer.echo(f"{user}: {', '.join(roles_of(_server(), user)) or 'no role'}")


@app.command("config")
def show_config() -> None:
    """Print the resolved configuration (after experiments and overrides)."""
    import yaml

    typer.echo(yaml.safe_dump(_cfg().model_dump(mode="json"), sort_keys=False))


def main() -> None:
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    try:
        rc = app(standalone_mode=False)  # Ctrl-C / SIGTERM reach us, not the CLI library's "Aborted!"
    except FaceFoundryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a read-only folder or a full disk: the user's to fix, so one line
        msg = write_error_message(exc)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:  # the CLI library's own exceptions (typer vendors click): duck-typed
        from facefoundry.tracking import tracking_failure
        from facefoundry.tracking.access import access_failure

        down = tracking_failure(exc) or access_failure(exc)  # unreachable, or refused (401/403)
        if down is not None:  # a tracking server that stopped answering: one line, work kept, exit 2
            print(f"error: {down}", file=sys.stderr)
            sys.exit(2)
        kind = type(exc).__name__
        if kind == "Abort":
            _interrupted()
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # usage errors: one message, exit 2
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if rc == 130:  # not standalone, typer returns Exit codes (Ctrl-C becomes 130) instead of raising them
        _interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)


def entry() -> None:
    """The ``facefoundry`` console script and ``python -m facefoundry``: :func:`main`, then leave at once.

    Every stage writes its files atomically (fsync, rename) and MLflow's SQLite and HTTP stores commit
    synchronously, so once the command returns nothing is left to save; the interpreter's own teardown of
    torch, MLflow and ONNX would still cost 1–2 s per stage (measured: 2.4 s after a training stage), a
    dozen times per ``dvc repro``. A Ray driver (``sweep``) exits the normal way, so Ray's own handlers
    stop what it started. In-process callers (tests) use :func:`main`, which raises ``SystemExit``.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if "ray" in sys.modules:
        sys.exit(code)
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and hasattr(mlflow, "flush_async_logging"):
        mlflow.flush_async_logging()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _interrupted() -> None:
    from facefoundry.errors import saved_work

    kept = "; ".join(saved_work())
    print(
        f"interrupted: finished work is kept{' (' + kept + ')' if kept else ''}; run the same command again to resume",
        file=sys.stderr,
    )
    sys.exit(130)


if __name__ == "__main__":
    entry()
