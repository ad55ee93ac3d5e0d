"""The pipeline execution a stage run belongs to, and the parent run that groups it in MLflow.

Stages of one ``dvc repro`` share an id through their ``dvc`` ancestor process (found through
``/proc``); ``FACEFOUNDRY_PIPELINE_ID`` (sweeps, ``facefoundry pipeline``) or a sweep trial's
``FACEFOUNDRY_PARENT_RUN_ID`` take precedence. The first stage of an execution creates its parent run.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

PIPELINE_ENV = "FACEFOUNDRY_PIPELINE_ID"  # set by `facefoundry pipeline`, sweeps, or a user to group stage runs
PIPELINE_NAME_ENV = "FACEFOUNDRY_PIPELINE_NAME"
PARENT_RUN_ENV = "FACEFOUNDRY_PARENT_RUN_ID"  # a sweep trial's run: stage runs nest under it (no pipeline run)


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc (Linux)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19]


def _dvc_ancestor() -> str | None:
    """``pid:starttime`` of the ``dvc`` process this stage runs under, if any (one per ``dvc repro``)."""
    pid = os.getppid()
    for _ in range(12):
        if pid <= 1:
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        stat = _proc_stat(pid)
        if stat is None:
            return None
        names = [Path(a.decode(errors="replace")).name for a in argv[:3]]
        if "dvc" in names or (len(argv) > 2 and argv[1] == b"-m" and argv[2] == b"dvc"):
            return f"{pid}:{stat[1]}"
        pid = stat[0]
    return None


def pipeline_context() -> dict[str, str] | None:
    """Which pipeline execution this process belongs to, or None for an ad-hoc CLI call.

    Every stage of one ``dvc repro`` / ``dvc exp run`` finds the same ``dvc`` ancestor process,
    so they share an id without any file; ``FACEFOUNDRY_PIPELINE_ID`` (sweeps, ``facefoundry
    pipeline``, ``mlflow run``) takes precedence.
    """
    explicit = os.environ.get(PIPELINE_ENV)
    exp = os.environ.get("DVC_EXP_NAME", "")
    if explicit:
        key, source = explicit, "env"
    elif os.environ.get("DVC_STAGE") or os.environ.get("DVC_ROOT"):
        anc = _dvc_ancestor()
        if anc is None:
            return None
        key, source = f"{socket.gethostname()}:{anc}", "dvc"
    else:
        return None
    pid = hashlib.sha1(key.encode()).hexdigest()[:12]
    return {"id": pid, "source": source, "dvc_exp": exp, "name": os.environ.get(PIPELINE_NAME_ENV, "")}


def find_pipeline_parent(client, experiment_id: str, pipeline_id: str) -> str | None:
    """The run id of the parent run grouping pipeline execution ``pipeline_id``, if it exists yet."""
    found = client.search_runs(
        [experiment_id],
        f"tags.`facefoundry.pipeline_id` = '{pipeline_id}' and tags.`facefoundry.role` = 'pipeline'",
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _pipeline_parent(client, experiment_id: str, ctx: dict[str, str], outer: str | None, commit: str | None) -> str:
    """The parent run grouping one pipeline execution (created, and closed, by its first stage)."""
    if outer is not None:  # `mlflow run` opened a run for us: group under it when it is in our experiment
        try:
            if client.get_run(outer).info.experiment_id == experiment_id:
                return outer
        except Exception:  # it lives in another store
            pass
    found = find_pipeline_parent(client, experiment_id, ctx["id"])
    if found is not None:
        return found
    label = ctx["name"] or ctx["dvc_exp"] or ("dvc repro" if ctx["source"] == "dvc" else "pipeline")
    tags = {
        "facefoundry.role": "pipeline",
        "facefoundry.pipeline_id": ctx["id"],
        "facefoundry.pipeline_source": ctx["source"],
    }
    if ctx["dvc_exp"]:
        tags["facefoundry.dvc_exp"] = ctx["dvc_exp"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["facefoundry.dvc_baseline"] = os.environ["DVC_EXP_BASELINE_REV"]
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if outer:
        tags["facefoundry.mlflow_project_run"] = outer
    run = client.create_run(
        experiment_id, run_name=f"{label} · {(commit or 'no-git')[:7]} · {ctx['id'][:6]}", tags=tags
    )
    client.set_terminated(run.info.run_id, "FINISHED")  # a group header: never left RUNNING
    return run.info.run_id
