"""Promotion against a real MLflow SQLite store: the champion alias follows the best run, the old
champion keeps ``previous``, the recipe file reproduces the run's config, the card says where the
data came from, a failing quality gate changes nothing, and a challenger replaces the champion only on
evidence over FR seeds (or ``--force``, recorded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facefoundry.config import Config, GateCfg, load_config
from facefoundry.config.dvc import dvc_overrides
from facefoundry.errors import FaceFoundryError
from facefoundry.promote.gate import gate_failures
from facefoundry.promote.provenance import known_sources
from facefoundry.promote.recipe import build_recipe, decode_param, logged_form, nest_params, relative_paths
from facefoundry.promote.registry import CHAMPION, PREVIOUS
from facefoundry.promote.run import run_promote
from tests.conftest import identity_image, tiny_config

NAME = "facefoundry-fr"
SEEDS = (7, 2, 3)  # 7: the tiny params.yaml's base.seed, so a best run on seed 7 is params.yaml's recipe


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "DVC_")) or key in ("FACEFOUNDRY_PIPELINE_ID", "FACEFOUNDRY_PARENT_RUN_ID"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FACEFOUNDRY_PIPELINE_ID", "promote-tests")  # pipeline runs: ranked without include_adhoc
    cfg = tiny_config(
        tmp_path,
        promote={
            "out": str(tmp_path / "experiments" / "promoted.yaml"),
            "card": str(tmp_path / "experiments" / "promoted_card.md"),
        },
        evaluate={"benchmarks": {"twins": str(tmp_path / "twins.bin"), "real": str(tmp_path / "real.bin")}},
    )
    return tmp_path, cfg


def aligned_photos(folder: Path) -> Path:
    """A tiny 'align' output: what a Vec2Face generator trains on, naming its real source folder."""
    from facefoundry.data.writer import DatasetWriter

    rng = np.random.default_rng(0)
    meta = {
        "generator": "align",
        "num_classes": 2,
        "image_size": 16,
        "source_dir": "../shared/data/real_faces_unlabelled",
    }
    with DatasetWriter(folder, meta) as w:
        for label in range(2):
            w.add(identity_image(label, 0, 16, rng), label, f"photo_{label}", "align", {})
    return folder


def fake_recipe(
    tmp: Path,
    cfg: Config,
    recipe: str,
    accs: dict[str, float],
    lr: float = 0.1,
    generator: str = "render",
    data: dict | None = None,
    seed: int | None = None,
) -> tuple[str, Config]:
    """The runs one pipeline execution leaves: generate, validate, train (+ registered model), evaluate;
    ``seed``: the FR seed (``base.seed``), the one parameter repeats of a recipe differ in."""
    import mlflow
    import torch

    from facefoundry.tracking import log_metrics, log_metrics_to_run, log_torch_model, recipe_params, stage_run

    c = cfg.model_copy(
        update={
            "base": cfg.base.model_copy(update={"seed": cfg.base.seed if seed is None else seed}),
            "train": cfg.train.model_copy(update={"lr": lr, "recipe": recipe, "dataset": str(tmp / recipe)}),
            "generate": cfg.generate.model_copy(update={"generator": generator, "out": str(tmp / recipe)}),
        }
    )
    digest = f"{recipe}-{lr}.dir"
    meta = {
        "generator": generator,
        "num_classes": 6,
        "num_images": 24,
        generator: getattr(c.generate, generator).model_dump(mode="json"),
    }
    with stage_run(c, "generate", ["generate"], {"facefoundry.generator": generator}):
        mlflow.set_tag("dataset.dvc_md5", digest)
    with stage_run(c, "validate", ["identity"], {"data.judge": "dlib", "data.judge_teachers": ""}):
        mlflow.set_tag("dataset.dvc_md5", digest)
        log_metrics(
            {
                "data/images": 24,
                "data/identities": 6,
                "data/duplicate_images": 0,
                **{f"data/{k}": v for k, v in (data or {}).items()},
            }
        )
    with stage_run(c, "train", ["train"], {"facefoundry.recipe": recipe}) as run:
        run_id = run.info.run_id
        mlflow.set_tags({"dataset.dvc_md5": digest, "dataset.path": str(tmp / recipe)})
        mlflow.log_params(recipe_params(meta))
        log_metrics({"data/images": 24, "data/identities": 6})
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
        log_torch_model(
            model,
            16,
            registered_name=NAME,
            alias=recipe,
            tags={"recipe": recipe, "dataset_dvc_md5": digest, "train_run_id": run_id},
        )
    metrics = {}
    for bench, acc in accs.items():
        metrics.update(
            {
                f"{bench}/accuracy": acc,
                f"{bench}/accuracy_std": 0.02,
                f"{bench}/auc": acc + 0.05,
                f"{bench}/tar_at_far_1e-02": acc / 2,
            }
        )
    with stage_run(c, "evaluate", ["evaluate"], {"facefoundry.train_run_id": run_id, "facefoundry.recipe": recipe}):
        log_metrics(metrics)
    log_metrics_to_run(run_id, metrics)
    return run_id, c


def fake_seeds(
    tmp: Path, cfg: Config, recipe: str, accs: dict[str, list[float]], seeds: tuple[int, ...] = SEEDS, **kw
) -> list[str]:
    """One recipe run with the FR seeds ``seeds``: ``accs`` gives each benchmark's accuracy per seed, in order."""
    n = len(next(iter(accs.values())))
    return [fake_recipe(tmp, cfg, recipe, {b: v[i] for b, v in accs.items()}, seed=seeds[i], **kw)[0] for i in range(n)]


def version_of(client, run_id: str) -> str:
    [mv] = [v for v in client.search_model_versions(f"name = '{NAME}'") if v.run_id == run_id]
    return str(mv.version)


def aliases(client) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items() if a in (CHAMPION, PREVIOUS)}


def test_promotion_moves_champion_keeps_previous_and_writes_recipe_and_card(env):
    import mlflow

    tmp, cfg = env
    judged = {"judge_dlib_intra_mean": 0.9, "judge_dlib_inter_mean": 0.5}
    # the render recipe over three FR seeds (a first champion needs promote.min_seeds = 3); seed 7 is its best
    render_run, render_cfg = fake_recipe(tmp, cfg, "render", {"twins": 0.70, "real": 0.55}, data=judged, seed=7)
    for seed, twins in ((2, 0.69), (3, 0.68)):
        fake_recipe(tmp, cfg, "render", {"twins": twins, "real": twins - 0.15}, data=judged, seed=seed)
    fake_recipe(tmp, cfg, "vec2face", {"twins": 0.60, "real": 0.58}, generator="vec2face")
    client = mlflow.MlflowClient(tracking_uri=cfg.base.tracking_uri)

    first = run_promote(cfg, metric="twins", params_file=tmp / "params.yaml")
    assert first["run_id"] == render_run and first["previous"] is None
    assert aliases(client) == {CHAMPION: version_of(client, render_run)}
    mv = client.get_model_version_by_alias(NAME, CHAMPION)
    assert mv.tags["recipe"] == "render" and mv.tags["dataset.dvc_md5"] == "render-0.1.dir"
    assert mv.tags["promoted.metric"] == "twins" and float(mv.tags["promoted.value"]) == pytest.approx(0.70)
    assert {a.path for a in client.list_artifacts(render_run, "promotion")} == {
        "promotion/promoted.yaml",
        "promotion/promoted_card.md",
    }

    # the recipe file: loads on params.yaml into a Config whose sections are the runs' own
    promoted = tmp / "experiments" / "promoted.yaml"
    text = promoted.read_text()
    assert text.startswith("# Winning recipe written by `facefoundry promote`")
    assert f"facefoundry -e {promoted} train" in text
    assert "#   dvc exp run -n champion -S train.lr=0.1\n" in text  # the one setting params.yaml lacks
    loaded = load_config(tmp / "params.yaml", [promoted])
    train = client.get_run(render_run).data.params

    def rel(d: dict[str, str]) -> dict[str, str]:  # the file keeps paths inside the checkout relative
        return {k: v.removeprefix(f"{tmp}/") for k, v in d.items()}

    body = text[text.index("\nbase:") :]
    assert "  dataset: render\n" in body and f" {tmp}/" not in body  # (the sqlite URI stays a URI)
    for section in ("base", "train"):
        assert rel(logged_form(loaded, section)) == rel({k: v for k, v in train.items() if k.startswith(section + ".")})
    for section in ("generate", "identity", "evaluate"):
        assert rel(logged_form(loaded, section)) == rel(logged_form(render_cfg, section))

    card = (tmp / "experiments" / "promoted_card.md").read_text()
    assert "# Dataset card: render" in card and "**render**" in card and "render-0.1.dir" in card
    assert "no real photo was used" in card and "Not applicable" in card  # no photo, no leakage
    assert "| twins | 70.00 ± 2.00 % | 0.7500 | 0.350 |" in card and "| real | 55.00 ± 2.00 % |" in card
    assert "judge_dlib_intra_mean | 0.9" in card and "gap 0.400" in card
    assert "| quality judge | dlib, independent of the generator |" in card  # the validate run's tag, joined
    assert "dlib ResNet" in card and "CC0" in card
    assert "The first champion" in card and "| challenger (this recipe) | render | 3 | 2, 3, 7 |" in card
    assert mv.tags["facefoundry.promote.forced"] == "false" and mv.tags["promoted.seeds"] == "2,3,7"

    # a better recipe appears, over the same seeds and significantly better: champion moves, the old keeps `previous`
    [better_run, *_] = fake_seeds(tmp, cfg, "render", {"twins": [0.80, 0.79, 0.785], "real": [0.50] * 3}, lr=0.05)
    second = run_promote(cfg, metric="twins", params_file=tmp / "params.yaml")
    assert second["run_id"] == better_run
    assert aliases(client) == {CHAMPION: version_of(client, better_run), PREVIOUS: version_of(client, render_run)}
    assert second["previous"] == version_of(client, render_run)
    assert "#   dvc repro   # params.yaml already holds this recipe" in promoted.read_text()  # lr 0.05 is its own
    assert "# Evidence: paired t-test, n=3 vs 3:" in promoted.read_text()
    # promoting the same champion again leaves `previous` where it was
    run_promote(cfg, metric="twins", params_file=tmp / "params.yaml")
    assert aliases(client) == {CHAMPION: version_of(client, better_run), PREVIOUS: version_of(client, render_run)}

    # a failing gate: one line, aliases and files untouched
    before, before_text = aliases(client), promoted.read_text()
    gated = cfg.model_copy(
        update={
            "promote": cfg.promote.model_copy(
                update={"gate": GateCfg(enabled=True, min_identities=100, max_duplicate_images=0)}
            )
        }
    )
    with pytest.raises(FaceFoundryError, match=r"promotion refused: .*data/identities = 6 < 100") as err:
        run_promote(gated, metric="real", params_file=tmp / "params.yaml")
    assert "\n" not in str(err.value)
    assert aliases(client) == before and promoted.read_text() == before_text
    with pytest.raises(FaceFoundryError, match="sets no threshold"):
        run_promote(cfg, metric="real", gate=True, params_file=tmp / "params.yaml")
    # the same gate passes with reachable thresholds
    ok = gated.model_copy(
        update={
            "promote": gated.promote.model_copy(
                update={"gate": GateCfg(enabled=True, min_identities=6, max_duplicate_images=0)}
            )
        }
    )
    # (vec2face ran one seed: forced, as the evidence is not what this part tests)
    assert run_promote(ok, metric="real", params_file=tmp / "params.yaml", force=True)["recipe"] == "vec2face"


def test_evidence_over_seeds_decides_whether_a_challenger_replaces_the_champion(env, monkeypatch, capsys):
    """A first champion needs 3 seeds; a challenger 5 points better (spread 0.5) over 3 seeds replaces it; one
    within noise (+0.3, spread 2) and one with a single seed do not (one line, the compare command, exit 2);
    --force promotes the single seed and says so in the registry, the run and the card."""
    import sys

    import mlflow

    from facefoundry.cli import main

    tmp, cfg = env
    client = mlflow.MlflowClient(tracking_uri=cfg.base.tracking_uri)
    card = tmp / "experiments" / "promoted_card.md"

    def promote(**kw):
        return run_promote(cfg, metric="twins", params_file=tmp / "params.yaml", **kw)

    # a first champion with one seed: refused, with the command that runs the others
    [a_best] = fake_seeds(tmp, cfg, "a", {"twins": [0.705]})
    with pytest.raises(FaceFoundryError) as err:
        promote()
    msg = str(err.value)
    assert "\n" not in msg and "it has 1 FR seed (7) on twins accuracy" in msg
    assert "a first champion needs promote.min_seeds=3" in msg and "--force" in msg
    assert f"""`facefoundry --set 'compare.recipes={{"a": "{tmp / "a"}"}}' compare`""" in msg
    assert aliases(client) == {} and not card.exists()
    fake_seeds(tmp, cfg, "a", {"twins": [0.700, 0.695]}, seeds=(2, 3))
    assert promote()["run_id"] == a_best  # three seeds: 70.0 ± 0.5
    v_a = version_of(client, a_best)

    # +5 points, spread 0.5, the same seeds: significant, so b replaces a
    [b_best, *_] = fake_seeds(tmp, cfg, "b", {"twins": [0.757, 0.748, 0.745]})
    res = promote()
    assert res["run_id"] == b_best and res["forced"] is False and res["previous"] == v_a
    v_b = version_of(client, b_best)
    assert aliases(client) == {CHAMPION: v_b, PREVIOUS: v_a}
    test = res["evidence"]["test"]
    assert test["test"] == "paired" and test["n_a"] == 3 and test["p"] < 0.01
    mv = client.get_model_version(NAME, v_b)
    assert mv.tags["facefoundry.promote.forced"] == "false" and float(mv.tags["promoted.p"]) < 0.01
    assert mv.tags["facefoundry.promote.evidence"].startswith("paired t-test, n=3 vs 3: 75.00 ± 0.62 % vs 70.00")
    text = card.read_text()
    assert "## Evidence" in text and "| challenger (this recipe) | b | 3 | 2, 3, 7 | 75.00 ± 0.62 % |" in text
    assert f"| champion before (v{v_a}) | a | 3 | 2, 3, 7 | 70.00 ± 0.50 % |" in text
    assert "Difference +5.00 points. Paired t-test over the seeds both ran (2, 3, 7)" in text
    assert "df = 2, p = " in text and "< α = 0.05: significant" in text
    before = card.read_text()

    # +0.3 points with a spread of 2: within noise, the champion stays
    fake_seeds(tmp, cfg, "c", {"twins": [0.773, 0.733, 0.753]})
    with pytest.raises(FaceFoundryError) as err:
        promote()
    msg = str(err.value)
    assert "\n" not in msg and f"does not beat the champion v{v_b} (b) on twins accuracy" in msg
    assert "75.30 ± 2.00 % over seeds 2, 3, 7" in msg and "(+0.30 points)" in msg
    assert ">= promote.alpha=0.05 (one-sided); the champion stays" in msg
    assert aliases(client) == {CHAMPION: v_b, PREVIOUS: v_a} and card.read_text() == before
    # the command line: one line on stderr, exit code 2
    monkeypatch.setattr(
        sys, "argv", ["facefoundry", "--params", str(tmp / "params.yaml"), "promote", "--metric", "twins"]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err_text = capsys.readouterr().err
    assert "error: promotion refused: c" in err_text and "Traceback" not in err_text

    # one seed, however high: refused, with the compare command for it
    [d] = fake_seeds(tmp, cfg, "d", {"twins": [0.90]})
    with pytest.raises(FaceFoundryError) as err:
        promote()
    msg = str(err.value)
    assert "it has 1 FR seed (7)" in msg and "replacing the champion needs promote.min_seeds=3 seeds of each" in msg
    assert f"""facefoundry --set 'compare.recipes={{"d": "{tmp / "d"}"}}' compare""" in msg
    assert aliases(client) == {CHAMPION: v_b, PREVIOUS: v_a}

    # --force: promoted, and recorded in the version's and the run's tags and in the card
    res = promote(force=True)
    v_d = version_of(client, d)
    assert res["run_id"] == d and res["forced"] is True and aliases(client) == {CHAMPION: v_d, PREVIOUS: v_b}
    reason = "evidence: challenger n=1 < promote.min_seeds=3"
    mv = client.get_model_version(NAME, v_d)
    assert mv.tags["facefoundry.promote.forced"] == "true" and mv.tags["facefoundry.promote.forced_reason"] == reason
    assert "FORCED" in mv.description
    tags = client.get_run(d).data.tags
    assert tags["facefoundry.promote.forced"] == "true" and tags["facefoundry.promote.forced_reason"] == reason
    text = card.read_text()
    assert "**Forced** (`facefoundry promote --force`)" in text and reason in text
    assert "| challenger (this recipe) | d | 1 | 7 | 90.00 % |" in text
    assert f"# Evidence: FORCED (--force; {reason})" in (tmp / "experiments" / "promoted.yaml").read_text()


def test_card_traces_a_generator_to_its_real_sources(env):
    tmp, cfg = env
    photos = aligned_photos(tmp / "real_aligned")
    model = tmp / "v2f" / "model"
    model.mkdir(parents=True)
    (model / "vec2face_model.json").write_text(
        f'{{"dataset": "{photos}", "dataset_dvc_md5": "photos.dir", "encoder_name": "dlib"}}'
    )
    cfg = cfg.model_copy(
        update={
            "generate": cfg.generate.model_copy(
                update={"vec2face": cfg.generate.vec2face.model_copy(update={"model": str(model), "tau": 0.4})}
            )
        }
    )
    run_id, _ = fake_recipe(tmp, cfg, "vec2face_real", {"real": 0.61, "twins": 0.53}, generator="vec2face")
    # one seed: forced (this test is about the card's provenance, not the evidence)
    res = run_promote(cfg, metric="average", params_file=tmp / "params.yaml", force=True)
    assert res["run_id"] == run_id
    card = (tmp / "experiments" / "promoted_card.md").read_text()
    assert "**vec2face**" in card and "| vec2face.tau | 0.4 |" in card  # generator and its parameters
    assert "real_faces_unlabelled" in card and "photos.dir" in card
    assert "FFHQ" in card and "CC BY-NC-SA 4.0" in card and "CelebA" in card and "non-commercial" in card
    assert "τ = 0.4" in card and "every training photo" in card  # the leakage check
    assert "| real | 61.00 ± 2.00 % |" in card and "| twins | 53.00 ± 2.00 % |" in card
    text = (tmp / "experiments" / "promoted.yaml").read_text()
    assert f"align ../shared/data/real_faces_unlabelled --out {photos}" in text


def test_cli_leaderboard_and_promote(env):
    from typer.testing import CliRunner

    from facefoundry.cli import app

    tmp, cfg = env
    fake_recipe(tmp, cfg, "render", {"twins": 0.7})
    runner = CliRunner()
    params = ["--params", str(tmp / "params.yaml")]
    res = runner.invoke(app, [*params, "leaderboard", "--metric", "twins", "--top", "5"])
    assert res.exit_code == 0, res.output
    assert "| 1 | render | 1 | 70.00 |" in res.output
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.json"):
        assert (tmp / "leaderboard" / name).is_file()
    res = runner.invoke(app, [*params, "leaderboard", "--experiment", "nope"])
    assert isinstance(res.exception, FaceFoundryError) and "no MLflow experiment 'nope'" in str(res.exception)
    res = runner.invoke(app, [*params, "promote", "--metric", "twins", "--no-gate"])  # one seed: refused
    assert isinstance(res.exception, FaceFoundryError) and "compare.recipes=" in str(res.exception)
    assert not (tmp / "experiments" / "promoted.yaml").exists()
    res = runner.invoke(app, [*params, "promote", "--metric", "twins", "--no-gate", "--force"])
    assert res.exit_code == 0, res.output
    assert (tmp / "experiments" / "promoted.yaml").is_file()


def test_recipe_pure_parts():
    assert decode_param("None") is None and decode_param("True") is True and decode_param("[1, 2]") == [1, 2]
    assert decode_param("0.05", 0.1) == 0.05 and decode_param("123", "x") == "123"
    nested = nest_params(
        {
            "train.lr": "0.05",
            "train.backbone.layers": "[1, 1]",
            "base.experiment": "007",
            "data.generator": "render",
            "train.recipe": "None",
        }
    )
    assert nested == {
        "base": {"experiment": "007"},
        "train": {"backbone": {"layers": [1, 1]}, "lr": 0.05, "recipe": None},
    }
    recipe = build_recipe(
        {"train": {"train.lr": "0.05"}, "evaluate": {"evaluate.benchmarks.real": "r.bin"}},
        {
            "data.generator": "render",
            "data.num_classes": "10",
            "data.num_images": "40",
            "data.render.yaw.min": "-45.0",
            "data.render.yaw.max": "45.0",
        },
        {"evaluate": {"benchmarks": {"twins": "t.bin"}}},
    )
    assert recipe["generate"]["identities"] == 10 and recipe["generate"]["images_per_identity"] == 4
    assert recipe["generate"]["render"]["yaw"] == {"min": -45.0, "max": 45.0}
    assert recipe["evaluate"]["benchmarks"] == {"real": "r.bin", "twins": None}  # dropped on merge
    raw = {"generate": {"render": {"yaw": [-30, 30]}}, "train": {"lr": 0.1}}
    typed = Config.model_validate(raw).model_dump(mode="json")
    assert dvc_overrides(recipe, raw, typed) == [  # as params.yaml writes them; generator render is its own
        "+generate.identities=10",
        "+generate.images_per_identity=4",
        "generate.render.yaw=[-45.0, 45.0]",
        "train.lr=0.05",
        '+evaluate.benchmarks.real="r.bin"',
    ]
    # a sweep trial's recipe: its sweep folders, MLflow place and 1-thread CPU settings are not the recipe
    trial = {
        "base": {
            "seed": 3,
            "device": "cpu",
            "experiment": "facefoundry-sweeps",
            "tracking_uri": "sqlite:////abs/mlflow.db",
        },
        "generate": {"out": "/abs/sweeps/s/datasets/ab12", "identities": 10},
        "benchmark": {"out": "/abs/sweeps/s/benchmarks/twins-1.bin"},
        "train": {"lr": 0.05, "threads": 1, "registered_model": None, "out": "/abs/sweeps/s/trials/000/train"},
        "evaluate": {"benchmarks": {"twins": "/abs/sweeps/s/benchmarks/twins-1.bin", "real": "r.bin"}},
    }
    assert dvc_overrides(trial, raw, typed) == [
        "+base.seed=3",
        "+generate.identities=10",
        "train.lr=0.05",
        '+evaluate.benchmarks.real="r.bin"',
    ]
    rel = relative_paths(
        {
            "generate": {"out": "/repo/outputs/sweeps/s/datasets/ab", "sizes": ["/repo/a", 1]},
            "identity": {"model": "/elsewhere/m.dat"},
            "base": {"tracking_uri": "sqlite:////repo/x.db"},
        },
        Path("/repo"),
    )
    assert rel == {
        "generate": {"out": "outputs/sweeps/s/datasets/ab", "sizes": ["a", 1]},
        "identity": {"model": "/elsewhere/m.dat"},
        "base": {"tracking_uri": "sqlite:////repo/x.db"},
    }
    assert [s.name for s in known_sources("../shared/data/real_faces_unlabelled")] == ["ffhq256", "celeba_align_89x109"]
    assert known_sources("outputs/realism_target") == [] and "unknown" in known_sources("/my/photos")[0].licence


def test_gate_rules():
    metrics = {
        "data/identities": 500,
        "data/images": 10000,
        "data/duplicate_images": 2,
        "data/judge_dlib_intra_mean": 0.9,
        "data/judge_dlib_inter_mean": 0.8,
        "real/accuracy": 0.6,
    }
    params = {"data.generator": "vec2face", "data.vec2face.tau": "0.4", "data.vec2face.avoid_training": "True"}
    assert (
        gate_failures(
            GateCfg(min_identities=500, min_images=10000, max_tau=0.4, min_accuracy={"real": 0.6}), metrics, params
        )
        == []
    )
    fails = gate_failures(
        GateCfg(max_duplicate_images=0, min_judge_gap=0.2, max_tau=0.3, min_accuracy={"lfw": 0.9}), metrics, params
    )
    assert len(fails) == 4 and "data/duplicate_images = 2 > 0" in fails[0] and "judge dlib" in fails[1]
    assert "tau = 0.4 > 0.3" in fails[2] and "lfw/accuracy not measured" in fails[3]
    off = gate_failures(GateCfg(max_tau=0.5), metrics, {**params, "data.vec2face.avoid_training": "False"})
    assert len(off) == 1 and "avoid_training is off" in off[0]
    assert gate_failures(GateCfg(max_tau=0.3), metrics, {"data.generator": "render"}) == []  # no photos


def _relative_recipe(folder: Path, **sections: dict) -> Path:
    """A params.yaml whose paths are relative, as in a checkout: the recipe file is portable."""
    import yaml

    from facefoundry.config import deep_merge
    from tests.conftest import TINY

    raw = deep_merge(
        TINY,
        {
            "base": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "tests"},
            "generate": {"out": "render"},
            "benchmark": {"out": "twins.bin"},
            "train": {"dataset": "render", "out": "train", "registered_model": NAME},
            "evaluate": {"model": "train/model", "benchmarks": {"twins": "twins.bin"}, "out": "eval"},
            "report": {"out": "report"},
            "promote": {"out": "experiments/promoted.yaml", "card": "experiments/promoted_card.md"},
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(deep_merge(raw, sections)))
    return folder / "params.yaml"


def test_the_promoted_recipe_reproduces_the_dataset_and_the_model(env, monkeypatch):
    """Real stages, promoted, then replayed elsewhere from promoted.yaml on other params: same data
    (manifest), same weights, and `pipeline -e promoted.yaml` asks DVC for exactly the differences."""
    from typer.testing import CliRunner

    from facefoundry.cli import app
    from facefoundry.stages.evaluate import run_evaluate
    from facefoundry.stages.generate import run_benchmark, run_generate
    from facefoundry.stages.train import run_train

    tmp, _ = env
    a, b = tmp / "a", tmp / "b"
    params_a = _relative_recipe(a, base={"seed": 11}, generate={"identities": 5}, train={"lr": 0.07})
    monkeypatch.chdir(a)
    cfg = load_config(params_a)
    run_generate(cfg), run_benchmark(cfg), run_train(cfg), run_evaluate(cfg)
    run_promote(cfg, metric="twins", params_file=params_a, force=True)  # one seed: forced (about reproduction)
    promoted = a / "experiments" / "promoted.yaml"

    params_b = _relative_recipe(b, base={"seed": 3}, generate={"identities": 6}, train={"lr": 0.1})
    monkeypatch.chdir(b)
    replay = load_config(params_b, [promoted])
    run_generate(replay), run_train(replay)
    manifest = next(p.name for p in (a / "render").iterdir() if p.name.startswith("manifest"))
    assert (a / "render" / manifest).read_bytes() == (b / "render" / manifest).read_bytes()
    weights = Path("train/model/backbone/backbone.pth")
    assert (a / weights).read_bytes() == (b / weights).read_bytes()

    res = CliRunner().invoke(
        app, ["--params", str(params_b), "-e", str(promoted), "pipeline", "--dry-run", "-n", "champion"]
    )
    assert res.exit_code == 0, res.output
    assert "dvc exp run -S base.seed=11 -S generate.identities=5 -S train.lr=0.07 -n champion" in res.output
    res = CliRunner().invoke(app, ["--params", str(params_a), "-e", str(promoted), "pipeline", "--dry-run"])
    assert "dvc repro" in res.output and "change nothing" in res.output


def test_pipeline_turns_experiment_files_into_dvc_overrides(tmp_path):
    """Experiment files become `-S` overrides without the output layout and machine settings a sweep
    trial's recipe carries; explicit --set and positional overrides pass as typed and win."""
    from typer.testing import CliRunner

    from facefoundry.cli import app

    params = _relative_recipe(tmp_path / "p")
    exp = tmp_path / "trial.yaml"
    exp.write_text(
        "generate: {out: /sweeps/s/datasets/ab12, identities: 9}\n"
        "train: {threads: 1, lr: 0.2, registered_model: null}\nbase: {device: cpu}\n"
    )
    res = CliRunner().invoke(
        app,
        ["--params", str(params), "-e", str(exp), "--set", "train.epochs=3", "pipeline", "--dry-run", "train.lr=0.3"],
    )
    assert res.exit_code == 0, res.output
    assert "$ -m dvc exp run -S generate.identities=9 -S train.epochs=3 -S train.lr=0.3\n" in res.output
    res = CliRunner().invoke(app, ["--params", str(params), "-e", str(exp), "pipeline", "--dry-run", "train.nope=1"])
    assert isinstance(res.exception, FaceFoundryError) and "train.nope" in str(res.exception)


def test_idsync_datasets_face_the_tau_gate_and_their_cards_trace_its_training_photos(tmp_path):
    import json

    from facefoundry.promote.provenance import Provenance, provenance

    # IDSync learns from photos and records no τ filter: a max_tau gate cannot pass on missing evidence
    assert gate_failures(GateCfg(max_tau=0.4), {}, {"data.generator": "idsync"}) == [
        "data.idsync.tau not recorded (promote.gate.max_tau)"
    ]
    photos = aligned_photos(tmp_path / "real_aligned")
    model = tmp_path / "idsync" / "model"
    model.mkdir(parents=True)
    (model / "idsync_model.json").write_text(
        json.dumps({"dataset": str(photos), "dataset_dvc_md5": "photos.dir", "encoder_name": "dlib"})
    )
    prov = provenance({"data.generator": "idsync", "data.idsync.model": str(model)}, {})
    assert isinstance(prov, Provenance) and prov.model == str(model) and prov.trained_on == str(photos)
    assert prov.trained_on_digest == "photos.dir" and prov.encoder == "dlib"
    assert prov.photos_from == "../shared/data/real_faces_unlabelled"
    assert {s.name for s in prov.sources} == {"ffhq256", "celeba_align_89x109"}


def test_a_fused_datasets_card_joins_its_sources_provenance(tmp_path):
    import json

    from facefoundry.data.writer import DatasetWriter
    from facefoundry.promote.card import CardFacts, dataset_card
    from facefoundry.promote.provenance import provenance
    from facefoundry.tracking import recipe_params

    photos = aligned_photos(tmp_path / "real_aligned")
    model = tmp_path / "v2f" / "model"
    model.mkdir(parents=True)
    (model / "vec2face_model.json").write_text(json.dumps({"dataset": str(photos), "encoder_name": "dlib"}))
    rng = np.random.default_rng(0)
    sources = {}
    for name, meta in (
        ("render", {"generator": "render"}),
        ("vec2face", {"generator": "vec2face", "vec2face": {"model": str(model), "tau": 0.4}}),
    ):
        with DatasetWriter(tmp_path / name, {**meta, "num_classes": 1, "image_size": 16}) as w:
            w.add(identity_image(0, 0, 16, rng), 0, "id", name, {})
        sources[name] = {"path": str(tmp_path / name), "share": 0.5}
    fused = {"generator": "fusion", "num_classes": 2, "fusion": {"sources": sources}}
    params = {k: str(v) for k, v in recipe_params(fused).items()}
    prov = provenance(params, {})
    assert prov.generator == "fusion" and {s.name for s in prov.sources} == {"ffhq256", "celeba_align_89x109"}
    assert not prov.synthetic_inputs and prov.encoder == "dlib"
    assert any("`render`" in n and "learned from no photo" in n for n in prov.notes)
    assert any("`vec2face`" in n and str(photos) in n for n in prov.notes)
    card = dataset_card(
        CardFacts(
            recipe="fused",
            run_id="r",
            experiment="e",
            dataset=str(tmp_path / "fused"),
            digest="d",
            params=params,
            metrics={},
            basis="",
            metric="twins",
            value=0.5,
            provenance=prov,
        )
    )
    assert "**fusion** — dataset fusion" in card and "Not recorded" not in card.split("## Leakage")[0]
    assert "CC BY-NC-SA 4.0" in card and "non-commercial" in card


def test_the_card_states_the_training_regime_and_the_teacher():
    from facefoundry.promote.card import regime_line

    assert regime_line({}).startswith("labels")  # a run from before train.objective existed
    assert regime_line({"train.objective": "labels", "train.teacher": "dlib"}).startswith("labels")
    line = regime_line({"train.objective": "distill", "train.teacher": "sface", "train.distill.loss": "mse"})
    assert "`sface`" in line and "mse" in line and "no labels" in line and "real faces" in line
    assert "labels and the teacher" in regime_line({"train.objective": "both", "train.teacher": "dlib"})
    # the regime word as the leaderboard's column spells it, a teacher file named by its stem
    assert regime_line({"train.objective": "distill", "train.teacher": "model.onnx"}).startswith("distill:model:")


def test_the_card_names_the_quality_judge_and_whether_it_taught_the_generator():
    from facefoundry.promote.card import judge_line

    assert judge_line("sface", "dlib").startswith("sface, independent") and "taught by dlib" in judge_line(
        "sface", "dlib"
    )
    assert "also taught the generator" in judge_line("dlib", "dlib,sface")
    assert judge_line("dlib", "") == "dlib, independent of the generator"
    assert judge_line("", "").startswith("not recorded")


def test_regime_of_a_run_is_spelled_as_the_trainer_tags_it():
    from facefoundry.leaderboard import regime_of
    from facefoundry.train.regime import regime

    for teacher in ("dlib", "model.onnx", "/models/teacher.onnx", "outputs/teacher/model"):
        run = {"tags": {}, "params": {"train.objective": "distill", "train.teacher": teacher}}
        assert regime_of(run) == regime("distill", teacher)
    assert (
        regime_of({"tags": {}, "params": {"train.objective": "distill", "train.teacher": "model.onnx"}})
        == "distill:model"
    )
