"""``run_promote``: the orchestrator of ``facefoundry promote`` (the package docstring says what it does).

It ranks the runs, picks the best, applies the quality gate, weighs the evidence against the champion
(``evidence``: repeated FR seeds and a one-sided test, unless ``force``), rebuilds the run's recipe,
registers its model when it has no version yet, writes the recipe file and the dataset card, and only then
moves ``champion`` and tags the version: a refused promotion changes nothing, and the aliases move once the
files are written.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from facefoundry.config import Config
from facefoundry.config.dvc import dvc_overrides
from facefoundry.errors import FaceFoundryError
from facefoundry.promote.card import CardFacts, dataset_card, recipe_header, reproduce_commands
from facefoundry.promote.evidence import Evidence, Side, by_seed, recipe_key, refusal, score_of, weigh
from facefoundry.promote.gate import _JUDGE, gate_failures, gate_thresholds
from facefoundry.promote.provenance import provenance, with_data_params
from facefoundry.promote.recipe import (
    _deep_merge,
    build_recipe,
    data_params_from_generate,
    logged_form,
    recipe_yaml,
    relative_paths,
)
from facefoundry.promote.registry import (
    _model_id,
    champion_version,
    find_version,
    move_champion,
    register_run_model,
    related_sections,
)

if TYPE_CHECKING:
    from facefoundry.leaderboard import Leaderboard, Row

# tags on the promoted version and its training run: whether --force overrode the evidence, and why
FORCED, FORCED_REASON = "facefoundry.promote.forced", "facefoundry.promote.forced_reason"


def _dataset_of(record: dict[str, Any]) -> str:
    return str(record["tags"].get("dataset.path") or record["params"].get("train.dataset") or "")


def gather_evidence(
    client, name: str, board: Leaderboard, row: Row, runs: list[dict[str, Any]], names: list[str], cfg: Config
) -> Evidence:
    """The challenger's seeds (the leaderboard's top row), the champion's (its training run's recipe: the
    finished training runs with its parameters but the seed and the runtime ones, in ``names`` and in the
    champion's own experiment, ad hoc or not) and the test between them, on the board's metric."""
    from facefoundry.leaderboard import recipe_of, regime_of
    from facefoundry.stages.report import training_runs

    by_id = {r["run_id"]: r for r in runs}
    scores = dict(zip(row.runs, row.score))
    values, used = by_seed([by_id[i] for i in row.runs], lambda r: scores.get(r["run_id"]))
    challenger = Side(row.recipe, values, used, _dataset_of(by_id[row.runs[0]]), regime=row.regime)
    pc = cfg.promote
    benches = tuple(board.benchmarks)
    mv = champion_version(client, name)
    if mv is None:
        return weigh(board.metric, challenger, None, pc.alpha, pc.min_seeds, board.higher_is_better, benchmarks=benches)
    champ_run = mv.run_id or mv.tags.get("train_run_id") or ""
    pool = runs
    if champ_run and champ_run not in by_id:  # promoted from another experiment: its seeds are there
        try:
            exp = client.get_experiment(client.get_run(champ_run).info.experiment_id).name
        except Exception:  # a deleted run or experiment: no seeds
            exp = None
        if exp and exp not in names:
            pool = runs + training_runs([exp])
    record = next((r for r in pool if r["run_id"] == champ_run), None)
    if record is None:
        champion = Side(mv.tags.get("recipe", "?"), {}, [], "", str(mv.version))
        same = False
    else:
        key = recipe_key(record)
        mine = [r for r in pool if recipe_key(r) == key]
        cvalues, cused = by_seed(mine, lambda r: score_of(r["metrics"], board.metric, board.benchmarks))
        champion = Side(recipe_of(record), cvalues, cused, _dataset_of(record), str(mv.version), regime_of(record))
        same = champ_run in row.runs or key == recipe_key(by_id[row.runs[0]])
    return weigh(board.metric, challenger, champion, pc.alpha, pc.min_seeds, board.higher_is_better, same, benches)


def run_promote(
    cfg: Config,
    metric: str | None = None,
    experiments: list[str] | None = None,
    gate: bool | None = None,
    include_adhoc: bool | None = None,
    params_file: str | Path = "params.yaml",
    force: bool = False,
) -> dict[str, Any]:
    """Promote the best run (see the package docstring); returns what was done.

    ``force``: promote without the evidence ``promote.alpha`` / ``promote.min_seeds`` ask for; recorded in the
    version's and the run's tags (``facefoundry.promote.forced``) and in the dataset card."""
    from facefoundry.config import load_config
    from facefoundry.io import atomic_write_text, ensure_writable
    from facefoundry.leaderboard import build, parse_metric
    from facefoundry.stages.common import log
    from facefoundry.stages.report import check_experiments, connect, training_runs
    from facefoundry.tracking import _mlflow
    from facefoundry.tracking.access import require_manage

    pc = cfg.promote
    name = pc.registered_model or cfg.train.registered_model
    if not name:
        raise FaceFoundryError(
            "promote needs a registered model name: set promote.registered_model (or train.registered_model)"
        )
    try:
        metric = parse_metric(metric or pc.metric)
    except ValueError as exc:
        raise FaceFoundryError(str(exc)) from None
    names = list(dict.fromkeys(experiments or [cfg.base.experiment]))
    uri = connect(cfg)
    require_manage(uri, name)  # on an authenticated server: the maintainer's right, asked before anything is done
    check_experiments(names)
    runs = training_runs(names)
    adhoc = cfg.report.include_adhoc if include_adhoc is None else include_adhoc
    board = build(runs, include_adhoc=adhoc, metric=metric)
    if not board.rows:
        why = ", ".join(f"{n} {w}" for w, n in board.excluded.items()) or "no finished training runs"
        raise FaceFoundryError(f"nothing to promote in {', '.join(names)} on {metric}: {why}")
    row, run_id, value = board.best()
    record = next(r for r in runs if r["run_id"] == run_id)
    params, metrics = record["params"], record["metrics"]
    recipe_name = row.recipe
    if gate if gate is not None else pc.gate.enabled:
        if not gate_thresholds(pc.gate):
            raise FaceFoundryError(
                "the quality gate is on but sets no threshold (promote.gate: min_identities, "
                "min_images, max_duplicate_images, min_judge_gap, max_tau, min_accuracy)"
            )
        fails = gate_failures(pc.gate, metrics, params)
        if fails:
            raise FaceFoundryError(
                f"promotion refused: {recipe_name} (run {run_id[:8]}) fails the quality gate: " + "; ".join(fails)
            )
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    evidence = gather_evidence(client, name, board, row, runs, names, cfg)
    forced = not evidence.passed
    if forced and not force:
        raise FaceFoundryError(refusal(evidence, list(cfg.compare.seeds), run_id))
    if forced:
        log(f"note: --force: promoting {recipe_name} without the evidence promote asks for ({evidence.shortfall()})")
    ensure_writable(Path(pc.out).parent)
    ensure_writable(Path(pc.card).parent)
    run = client.get_run(run_id)
    params_path = Path(params_file)
    params_raw = (yaml.safe_load(params_path.read_text()) or {}) if params_path.is_file() else {}
    params = with_data_params(params, record["tags"].get("dataset.path") or params.get("train.dataset"))
    sections = related_sections(client, run, params)
    recipe = relative_paths(build_recipe(sections, params, params_raw), Path.cwd())
    if "data.generator" not in params and (recipe.get("generate") or {}).get("generator"):
        params = {**params, **data_params_from_generate(recipe["generate"])}
    try:  # the file must load as a config on top of params.yaml
        check = load_config(params_path, required=False)
        merged = Config.model_validate(_deep_merge(check.model_dump(mode="json"), recipe))
    except Exception as exc:  # a recipe the schema no longer accepts
        raise FaceFoundryError(f"the recipe of run {run_id} does not load as a config: {exc}") from None
    differs = sorted(
        {k for s in sections if s in recipe for k, v in logged_form(merged, s).items() if sections[s].get(k, v) != v}
    )  # a key newer than the run takes params.yaml's value
    overrides = dvc_overrides(recipe, params_raw, check.model_dump(mode="json")) if params_path.is_file() else None
    digest = record["tags"].get("dataset.dvc_md5", "unknown")
    dataset = record["tags"].get("dataset.path") or params.get("train.dataset", "unknown")
    judges = sorted({m.group(1) for k in metrics if (m := _JUDGE.match(k))})
    mv = find_version(client, name, run_id)
    tags = {"recipe": recipe_name, "dataset.dvc_md5": digest, "train_run_id": run_id}
    if mv is None:
        mv = register_run_model(client, name, run, tags)
        log(f"registered run {run_id}'s model as {name} v{mv.version}")
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    prov = provenance(params, recipe)
    facts = CardFacts(
        recipe_name,
        run_id,
        record.get("experiment", ""),
        dataset,
        digest,
        params,
        metrics,
        board.basis,
        metric,
        value,
        f"{name} v{mv.version}",
        when,
        pc.out,
        prov,
        judges,
        reproduce_commands(pc.out, recipe, overrides, prov),
        evidence,
        forced,
        record["tags"].get("data.judge", ""),
        record["tags"].get("data.judge_teachers", ""),
    )
    card = dataset_card(facts)
    text = recipe_yaml(recipe, recipe_header(facts, pc.card))
    atomic_write_text(pc.out, text)
    atomic_write_text(pc.card, card)
    # the registry last: files written, nothing half-promoted
    old = move_champion(client, name, str(mv.version))
    test = evidence.test
    recorded = {
        FORCED: "true" if forced else "false",
        "facefoundry.promote.evidence": evidence.line(),
        **({FORCED_REASON: evidence.shortfall()} if forced else {}),
    }
    for k, v in {
        **tags,
        "promoted.metric": metric,
        "promoted.value": f"{value:.6g}",
        "promoted.at": when,
        "promoted.experiment": record.get("experiment", ""),
        "promoted.recipe_file": pc.out,
        "promoted.seeds": ",".join(map(str, evidence.challenger.seeds)),
        **({"promoted.p": f"{test.p:.6g}"} if test is not None and test.defined else {}),
        **recorded,
    }.items():
        client.set_model_version_tag(name, str(mv.version), k, v)
    if not forced:  # a version forced before and now promoted on evidence: no stale reason
        with contextlib.suppress(Exception):  # not set: nothing to drop
            client.delete_model_version_tag(name, str(mv.version), FORCED_REASON)
    client.update_model_version(
        name,
        str(mv.version),
        description=(
            f"Champion since {when}: recipe {recipe_name}, {metric} = {value:.4g}; "
            f"{'FORCED (' + evidence.shortfall() + ')' if forced else 'evidence: ' + evidence.line()}. "
            "Recipe and dataset card: "
            f"artifacts promotion/{Path(pc.out).name}, promotion/{Path(pc.card).name} of run {run_id}."
        ),
    )
    client.set_tag(run_id, "facefoundry.promoted", f"{name} v{mv.version} champion {when}")
    for k, v in recorded.items():
        client.set_tag(run_id, k, v)
    if not forced:
        with contextlib.suppress(Exception):
            client.delete_tag(run_id, FORCED_REASON)
    for path in (pc.out, pc.card):
        client.log_artifact(run_id, path, "promotion")
        model_id = _model_id(mv)
        if model_id:
            try:
                client.log_model_artifact(model_id, path, "promotion")
            except Exception as exc:  # the run keeps them in any case
                log(f"note: {path} not attached to logged model {model_id}: {exc.__class__.__name__}")
    if differs:
        log(f"note: {', '.join(differs)} do not round-trip exactly through {pc.out} on {params_path}")
    prev = f"; previous = v{old}" if old is not None and old != str(mv.version) else ""
    log(
        f"{name} v{mv.version} is champion: {recipe_name} (run {run_id}), {metric} = {value:.4g}{prev}; "
        f"{'FORCED: ' + evidence.shortfall() if forced else evidence.line()}; recipe → {pc.out}, card → {pc.card}"
    )
    return {
        "name": name,
        "version": str(mv.version),
        "previous": old if old != str(mv.version) else None,
        "run_id": run_id,
        "recipe": recipe_name,
        "metric": metric,
        "value": value,
        "recipe_file": pc.out,
        "card_file": pc.card,
        "forced": forced,
        "evidence": evidence.as_dict(),
    }
