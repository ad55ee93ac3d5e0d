"""The MLflow side of promotion: finding a run's stage runs and moving the registry's aliases.

``related_sections`` gathers each config section from the stage run that owns it (the training run, its
evaluation, the runs that made its dataset, generator and benchmark); the rest finds or registers the
run's model version and moves ``champion`` to it, the old champion keeping ``previous``.
"""

from __future__ import annotations

from pathlib import Path

from facefoundry.errors import FaceFoundryError
from facefoundry.promote.provenance import FUSION

CHAMPION, PREVIOUS = "champion", "previous"


def _search(client, experiment_ids: list[str], filter_string: str, n: int = 1) -> list:
    return list(
        client.search_runs(
            experiment_ids,
            filter_string + " and attributes.status = 'FINISHED'",
            max_results=n,
            order_by=["attributes.start_time DESC"],
        )
    )


def _q(value: str) -> str:
    return value.replace("'", "\\'")


def related_sections(client, run, params: dict[str, str]) -> dict[str, dict[str, str]]:
    """Flat params per config section, each from the stage run that owns the section: ``base`` and
    ``train`` from the training run, ``evaluate`` from its evaluation, ``generate`` / ``realism`` from
    the run that wrote the dataset (same DVC hash), ``identity`` from its validation, a learned
    generator's training section (``vec2face``, ``idsync``, …) from its training run and ``benchmark``
    from the run that rendered the benchmark."""
    exp = [run.info.experiment_id]
    own = dict(run.data.params)
    out = {"base": own, "train": own}
    digest = run.data.tags.get("dataset.dvc_md5")
    ev = _search(
        client,
        exp,
        f"tags.`facefoundry.stage` = 'evaluate' and tags.`facefoundry.train_run_id` = '{_q(run.info.run_id)}'",
    )
    if ev:
        out["evaluate"] = dict(ev[0].data.params)
    if digest:
        for stage, section in (("generate", "generate"), ("realism", "realism"), ("validate", "identity")):
            found = _search(
                client, exp, f"tags.`facefoundry.stage` = '{stage}' and tags.`dataset.dvc_md5` = '{_q(digest)}'"
            )
            if found:
                out[section] = dict(found[0].data.params)
    gen = params.get("data.generator", "")
    from facefoundry.generators.table import descriptor

    try:
        desc = descriptor(gen) if gen and gen != FUSION else None
    except FaceFoundryError:
        desc = None
    if desc is not None and desc.learned and desc.model_setting:
        model = params.get(f"data.{gen}.model") or out.get("generate", {}).get(desc.model_setting)
        if model:  # the generator's training run: its stage `train-<name>` wrote `<section>.out/model`
            found = _search(
                client,
                exp,
                f"tags.`facefoundry.stage` = 'train-{_q(gen)}' and "
                f"params.`{desc.train_section}.out` = '{_q(str(Path(model).parent))}'",
            )
            if found:  # a descriptor with train and model_setting names its train_section too
                out[desc.train_section] = dict(found[0].data.params)  # type: ignore[index]
    for key, path in out.get("evaluate", {}).items():
        if key.startswith("evaluate.benchmarks."):
            found = _search(
                client, exp, f"tags.`facefoundry.stage` = 'benchmark' and params.`benchmark.out` = '{_q(path)}'"
            )
            if found:
                out["benchmark"] = dict(found[0].data.params)
                break
    return out


def find_version(client, name: str, run_id: str):
    """The newest registry version of ``name`` made from ``run_id`` (None when there is none)."""
    from mlflow.exceptions import MlflowException

    try:
        found = list(client.search_model_versions(f"name = '{_q(name)}' and run_id = '{_q(run_id)}'"))
        if not found:  # versions registered from a logged model may lack run_id: the tag log_torch_model sets
            found = [
                v for v in client.search_model_versions(f"name = '{_q(name)}'") if v.tags.get("train_run_id") == run_id
            ]
    except MlflowException:
        return None
    if not found:
        return None
    best = max(found, key=lambda v: int(v.version))
    return client.get_model_version(name, str(best.version))  # with its aliases


def register_run_model(client, name: str, run, tags: dict[str, str]):
    """Register the run's logged FR model (``model``) as a new version of ``name``."""
    import mlflow

    models = list(
        client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{_q(run.info.run_id)}'")
    )
    if not models:
        raise FaceFoundryError(
            f"run {run.info.run_id} has no logged model to register as {name} (was it trained "
            "with train.registered_model: null and no model logged?)"
        )
    pick = next((m for m in models if m.name == "model"), models[0])
    mv = mlflow.register_model(f"models:/{pick.model_id}", name, tags=tags)
    return client.get_model_version(name, str(mv.version))


def current_champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def champion_version(client, name: str):
    """The model version holding ``champion`` (None when there is none)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def move_champion(client, name: str, version: str) -> str | None:
    """``champion`` → ``version``; the old champion (if another version) becomes ``previous``."""
    old = current_champion(client, name)
    if old is not None and old != str(version):
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return old


def _model_id(mv) -> str | None:
    if getattr(mv, "model_id", None):
        return mv.model_id
    src = mv.source or ""
    return src.removeprefix("models:/") if src.startswith("models:/m-") else None
