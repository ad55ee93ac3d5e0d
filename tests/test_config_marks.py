"""Settings declared once: every setting of the schema is decided — marked RUNTIME, OUTPUT or INPUT in the schema
(it never changes what is learned or made), or listed in tests/settings_that_change_results.txt — and every
fingerprint, key and derivation reads those marks."""

from __future__ import annotations

from pathlib import Path

from facefoundry.config import INPUT, OUTPUT, RUNTIME, WIRED, dotted_fields, dotted_marked, load_config, result_settings

LISTED = Path(__file__).with_name("settings_that_change_results.txt")


def _listed() -> set[str]:
    return {ln.strip() for ln in LISTED.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def test_every_setting_is_decided():
    fields = dotted_fields()
    unmarked = {k for k, marks in fields.items() if not marks}
    new = sorted(unmarked - _listed())
    assert not new, (
        f"settings neither marked nor listed: {new}. Mark each RUNTIME, OUTPUT or INPUT in "
        "src/facefoundry/config/schema*.py if it never changes what is learned or made, "
        f"else add it to {LISTED.name}"
    )
    stale = sorted(_listed() - unmarked)
    assert not stale, f"{LISTED.name} lists settings that are marked or gone: {stale}"


def test_wired_settings_are_inputs_and_the_pipeline_sets_them():
    wired = set(dotted_marked(WIRED))
    assert wired and wired <= set(dotted_marked(INPUT))
    dvc_yaml = (Path(__file__).resolve().parents[1] / "dvc.yaml").read_text()
    assert all(f"--set {k}=" in dvc_yaml for k in wired - {"realism.source"})  # realism runs outside the default


def test_derivations_read_the_marks(tmp_path):
    from facefoundry.config.dvc import DVC_SKIP
    from facefoundry.leaderboard import VOLATILE
    from facefoundry.train.trainer import fingerprint

    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    runtime = {"train.threads": 1, "train.out": "elsewhere", "train.dataset": "moved", "train.log_every": 7}
    moved = load_config(
        Path(__file__).resolve().parents[1] / "params.yaml", sets=[f"{k}={v}" for k, v in runtime.items()]
    )
    assert fingerprint(cfg, "d") == fingerprint(moved, "d")  # how it runs and where paths point: not what is learned
    assert fingerprint(cfg, "d") != fingerprint(
        load_config(Path(__file__).resolve().parents[1] / "params.yaml", sets=["train.lr=0.01"]), "d"
    )
    assert fingerprint(cfg, "d") != fingerprint(cfg, "other data")
    assert "threads" not in result_settings(cfg.train) and "lr" in result_settings(cfg.train)
    assert {"train.threads", "train.out", "base.device"} <= set(VOLATILE) and "train.lr" not in VOLATILE
    assert {"train.dataset", "evaluate.model", "generate.out", "base.tracking_uri"} <= set(DVC_SKIP)
    assert "vec2face.dataset" not in DVC_SKIP  # an input a recipe chooses (real photos): reproduced by -S
    assert set(dotted_marked(RUNTIME)).isdisjoint(dotted_marked(OUTPUT, INPUT))
