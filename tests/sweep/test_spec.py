"""Sweep specs: parsing, their one-line errors, and the trial → params.yaml override mapping (no Ray)."""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from facefoundry.config import load_config
from facefoundry.errors import FaceFoundryError
from facefoundry.sweep.keys import dataset_key, trial_key, trial_number
from facefoundry.sweep.scorer import EpochScorer
from facefoundry.sweep.spec import load_spec
from facefoundry.sweep.spec_model import trial_sets
from facefoundry.sweep.trial import injected, record_user_error, repeat_user_error
from facefoundry.sweep.trial_config import trial_config
from tests.conftest import identity_image, make_dataset, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def spec_file(tmp: Path, **over) -> Path:
    tiny_config(tmp)
    spec = {
        "params": str(tmp / "params.yaml"),
        "space": {
            "train.lr": {"type": "loguniform", "low": 0.01, "high": 0.2},
            "generate.images_per_identity": {"type": "choice", "values": [4, 5]},
        },
        "budget": {"trials": 4, "max_concurrent": 2},
    }
    for k, v in over.items():
        if v is None:
            spec.pop(k, None)
        else:
            spec[k] = v
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(FaceFoundryError) as exc:
        load_spec(path)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_repository_specs_parse():
    for name in (
        "sweep_smoke",
        "sweep_default",
        "sweep_vec2face",
        "sweep_render_realism",
        "sweep_trainer",
        "sweep_dataset_shape",
    ):
        s = load_spec(ROOT / "experiments" / f"{name}.yaml")
        assert s.name == name and s.trials >= 2 and len(s.dims) >= 2, name
        assert s.out == Path("outputs/sweeps") / name
    smoke = load_spec(ROOT / "experiments" / "sweep_smoke.yaml")
    assert smoke.trials == 8 and smoke.spec.budget.max_concurrent == 2 and not smoke.has_grid
    assert set(smoke.dims) == {"train.lr", "generate.images_per_identity"}
    shape = load_spec(ROOT / "experiments" / "sweep_dataset_shape.yaml")
    assert shape.has_grid and shape.trials == shape.grid_size >= 4


def test_spec_defaults_and_space(tmp_path):
    s = load_spec(spec_file(tmp_path))
    assert s.name == "sweep" and s.trials == 4 and s.spec.objective.metric == "accuracy"
    assert s.spec.validation.benchmark == "twins" and s.spec.resources.gpu == "auto"
    space = s.param_space()
    assert set(space) == {"train.lr", "generate.images_per_identity"}
    assert s.base_config.train.epochs == 2  # the tiny params file, through the spec
    shorthand = load_spec(spec_file(tmp_path, space={"train.lr": [0.05, 0.1]}))
    assert shorthand.dims["train.lr"].type == "choice" and shorthand.dims["train.lr"].values == [0.05, 0.1]


@pytest.mark.parametrize(
    "over, fragments",
    [
        ({"budgett": {"trials": 3}}, ["budgett: unknown key"]),
        (
            {"space": {"train.lrr": {"type": "uniform", "low": 0.01, "high": 0.1}}},
            ["space.train.lrr: unknown key", "did you mean train.lr"],
        ),
        ({"space": {"train.lr": {"type": "uniform", "low": 0.3, "high": 0.1}}}, ["space.train.lr", "empty range"]),
        ({"space": {"train.lr": {"type": "choice", "values": []}}}, ["space.train.lr", "empty choice"]),
        ({"space": {"train.epochs": {"type": "int", "low": 5, "high": 2}}}, ["space.train.epochs", "empty range"]),
        ({"space": {"train.lr": {"type": "loguniform", "low": 0, "high": 0.1}}}, ["low > 0"]),
        ({"space": {"train.lr": {"type": "uniform", "low": "a", "high": 0.1}}}, ["space.train.lr.low"]),
        (
            {"space": {"train.epochs": {"type": "uniform", "low": 1, "high": 4}}},
            ["space.train.epochs: value", "train.epochs", "integer"],
        ),
        ({"space": {"train.momentum": [0.5, 1.5]}}, ["space.train.momentum: value 1.5", "less than or equal to 1"]),
        ({"space": {"train.head.name": ["arcface", "nosuchhead"]}}, ["space.train.head.name: value 'nosuchhead'"]),
        ({"space": {"train.out": ["a", "b"]}}, ["space.train.out", "set per trial"]),
        ({"space": {"benchmark.pairs": [40, 60]}}, ["space.benchmark.pairs", "set per trial"]),
        ({"space": {}}, ["space", "empty"]),
        ({"space": {"train.lr": {"type": "gaussian", "low": 0, "high": 1}}}, ["space.train.lr.type"]),
        ({"base": {"train.epoks": 3}}, ["base.train.epoks: unknown key"]),
        ({"base": {"train": {"epochs": "many"}}}, ["train.epochs"]),
        ({"budget": {"max_concurrent": 2}}, ["budget.trials: required"]),
        ({"budget": {"trials": 0}}, ["budget.trials"]),
        ({"objective": {"metric": "loss"}}, ["objective.metric"]),
        ({"objective": {"metric": "data/identitiez"}}, ["data/identitiez", "did you mean data/identities"]),
        ({"objective": {"benchmarks": ["lfw"]}}, ["objective.benchmarks: 'lfw' is not in evaluate.benchmarks"]),
        ({"asha": {"grace_period": 2}}, ["asha.grace_period", "max_t 2"]),
        ({"inject_failure": {"match": {"train.lrx": 1}}}, ["inject_failure.match.train.lrx: unknown key"]),
        ({"inject_failure": {}}, ["inject_failure"]),
        ({"objective": []}, ["objective", "empty list"]),
        ({"objective": [{"metric": "accuracy"}, {"metric": "accuracy", "mode": "min"}]}, ["each metric once"]),
        ({"objective": [{"metric": "accuracy"}, {"metric": "cost/minutes"}]}, ["objective", "cost/seconds"]),
        (
            {"objective": [{"metric": "accuracy"}, {"metric": "data/identitiez", "mode": "min"}]},
            ["objective[1].metric: 'data/identitiez'"],
        ),
        (
            {"objective": [{"metric": "cost/seconds", "mode": "min"}], "repeats": {"seeds": [1]}},
            ["repeats need objective.metric: accuracy"],
        ),
    ],
)
def test_bad_specs_give_one_line(tmp_path, over, fragments):
    msg = error_of(spec_file(tmp_path, **over))
    assert msg.startswith(str(tmp_path / "sweep.yaml")), msg
    for frag in fragments:
        assert frag in msg, msg


def test_real_benchmark_never_drives_the_sweep(tmp_path):
    real = tmp_path / "real_verification" / "celeba_val.bin"
    params = tmp_path / "p"
    tiny_config(params, evaluate={"benchmarks": {"twins": str(params / "twins.bin"), "real": str(real)}})
    base = {"params": str(params / "params.yaml"), "space": {"train.lr": [0.05, 0.1]}, "budget": {"trials": 2}}
    for over, frag in (
        ({"objective": {"benchmarks": ["twins", "real"]}}, "objective.benchmarks: 'real'"),
        ({"validation": {"benchmark": "real"}}, "validation.benchmark: 'real'"),
    ):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**base, **over}))
        msg = error_of(path)
        assert frag in msg and "evaluation-only" in msg, msg
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(base))
    assert load_spec(path).spec.objective.benchmarks == ["twins"]  # reported, not optimised


def test_grid_budget(tmp_path):
    grid = {
        "generate.identities": {"type": "grid", "values": [6, 8]},
        "generate.images_per_identity": {"type": "grid", "values": [4, 5, 6]},
    }
    s = load_spec(spec_file(tmp_path, space=grid, budget={"max_concurrent": 2}))
    assert s.has_grid and s.grid_size == 6 and s.trials == 6
    assert "multiple of the grid's 6 points" in error_of(spec_file(tmp_path, space=grid, budget={"trials": 8}))


@pytest.mark.parametrize(
    ("repeats", "fragments"),
    [
        ({"top_k": 0, "seeds": [1]}, ["repeats.top_k"]),
        ({"top_k": 5, "seeds": [1]}, ["repeats.top_k: 5 is more than the sweep's 4 trials"]),
        ({"top_k": 1, "seeds": []}, ["repeats.seeds: empty"]),
        ({"top_k": 1, "seeds": 0}, ["repeats.seeds"]),
        ({"top_k": 1, "seeds": [1, 2, 1]}, ["repeats.seeds: [1, 2, 1]", "[1] given twice"]),
        ({"top_k": 1, "seeds": [3, 7]}, ["repeats.seeds: 7 is the base seed"]),
        ({"top_k": 1, "seeds": [1], "count": 2}, ["repeats.count"]),
        ({"seeds": [1]}, []),  # top_k defaults to 1: valid
    ],
)
def test_repeats_spec_checks(tmp_path, repeats, fragments):
    path = spec_file(tmp_path, repeats=repeats)  # the tiny recipe's base.seed is 7
    if not fragments:
        assert load_spec(path).repeat_seeds() == [1]
        return
    msg = error_of(path)
    assert msg.startswith(str(path)), msg
    for frag in fragments:
        assert frag in msg, msg


def test_repeats_spec_seeds_and_digest(tmp_path):
    plain = load_spec(spec_file(tmp_path))
    assert plain.spec.repeats is None and plain.repeat_seeds() == []
    s = load_spec(spec_file(tmp_path, repeats={"top_k": 2, "seeds": 3}))
    seeds = s.repeat_seeds()
    assert len(seeds) == len(set(seeds)) == 3 and 7 not in seeds and seeds == s.repeat_seeds()
    assert s.digest() == plain.digest()  # a resumed sweep may add or change its repeats
    msg = error_of(spec_file(tmp_path, repeats={"seeds": [1]}, objective={"metric": "data/images"}))
    assert "repeats: objective data/images is a data metric" in msg


def test_cli_bad_spec_is_one_line_before_ray(tmp_path):
    path = spec_file(tmp_path, space={"train.lr": {"type": "uniform", "low": 0.5, "high": 0.1}})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "facefoundry", "sweep", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "empty range" in lines[0], proc.stderr
    assert not (tmp_path / "outputs").exists() and time.perf_counter() - t0 < 60


def test_trial_params_map_to_set_overrides(tmp_path):
    sets = trial_sets(
        {
            "train.lr": np.float64(0.07),
            "train.epochs": np.int64(3),
            "train.backbone.layers": [2, 1, 1, 1],
            "generate.vec2face.attrop.quality": None,
            "generate.image_format": "jpg",
        }
    )
    assert sets == [
        "train.lr=0.07",
        "train.epochs=3",
        "train.backbone.layers=[2, 1, 1, 1]",
        "generate.vec2face.attrop.quality=null",
        'generate.image_format="jpg"',
    ]
    params = tiny_config(tmp_path)
    via_cli = load_config(tmp_path / "params.yaml", sets=sets)  # what `facefoundry --set ...` would give
    s = load_spec(
        spec_file(
            tmp_path,
            space={
                "train.backbone.layers": [[1, 1, 1, 1], [2, 1, 1, 1]],
                "train.lr": {"type": "uniform", "low": 0.01, "high": 0.1},
            },
        )
    )
    assert s.dims["train.backbone.layers"].encoded  # lists travel as JSON strings (Optuna takes scalars)
    decoded = s.decode({"train.backbone.layers": "[2, 1, 1, 1]", "train.lr": np.float64(0.07), "other": 1})
    assert decoded == {"train.backbone.layers": [2, 1, 1, 1], "train.lr": 0.07}
    ctx = {
        "out": str(tmp_path / "sw"),
        "tracking_uri": "sqlite:////x/mlflow.db",
        "experiment": "e",
        "threads": 1,
        "gpu": 0,
        "benchmarks": {"twins": "/abs/twins.bin"},
    }
    folder = tmp_path / "sw" / "trials" / "003_abcd1234"
    cfg, keys = trial_config(
        s,
        {**decoded, "train.epochs": 3, "generate.image_format": "jpg", "generate.vec2face.attrop.quality": None},
        folder,
        ctx,
    )
    for section in ("train", "generate"):  # the swept settings: exactly the --set result
        mine, theirs = getattr(cfg, section).model_dump(), getattr(via_cli, section).model_dump()
        for k in ("lr", "epochs", "backbone", "image_format", "identities", "head"):
            if k in theirs:
                assert mine[k] == theirs[k], (section, k)
    assert cfg.train.backbone.layers == [2, 1, 1, 1] and cfg.generate.image_format == "jpg"
    assert cfg.train.dataset == cfg.generate.out == str(tmp_path / "sw" / "datasets" / keys["generate"])
    assert cfg.train.out == str(folder / "train") and cfg.evaluate.model == str(folder / "train" / "model")
    assert cfg.evaluate.benchmarks == {"twins": "/abs/twins.bin"} and cfg.base.tracking_uri == "sqlite:////x/mlflow.db"
    assert cfg.train.registered_model is None and cfg.base.device == "cpu" and cfg.train.threads == 1
    assert params.train.lr != cfg.train.lr


def _trials(s, tmp_path, keys, twins):
    """trial(v1, v2, n=0): the config and dataset keys of trial number n with those values of ``keys``."""
    ctx = {
        "out": str(tmp_path / "sw"),
        "tracking_uri": "sqlite:////x/mlflow.db",
        "experiment": "e",
        "threads": 1,
        "gpu": 0,
        "benchmarks": {"twins": twins},
    }
    return lambda *values, n=0: trial_config(s, dict(zip(keys, values)), tmp_path / "sw" / "trials" / f"00{n}_x", ctx)


def test_idsync_trials_train_one_model_per_training_setting_and_share_the_vae(tmp_path):
    tiny_config(tmp_path)
    s = load_spec(
        spec_file(
            tmp_path,
            base={"generate": {"generator": "idsync"}},
            space={
                "idsync.identity_weight": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                "generate.idsync.guidance": {"type": "uniform", "low": 1.5, "high": 5},
            },
        )
    )
    trial = _trials(s, tmp_path, ["idsync.identity_weight", "generate.idsync.guidance"], "/abs/twins.bin")
    (a, ka), (b, kb), (c, kc) = trial(1e-3, 2.0), trial(1e-3, 4.0, n=1), trial(1e-2, 2.0, n=2)
    datasets = tmp_path / "sw" / "datasets"
    assert (
        a.idsync.out == str(datasets / f"{ka['train_generator']}.idsync")
        and a.generate.idsync.model == a.idsync.out + "/model"
    )
    assert a.idsync.cache == c.idsync.cache == str(datasets / "idsync_cache")  # λ changes neither VAE nor vectors
    assert (
        ka["train_generator"] == kb["train_generator"] != kc["train_generator"]
    )  # guidance is a generation setting: one model for both
    assert len({ka["generate"], kb["generate"], kc["generate"]}) == 3
    assert a.idsync.threads == 1 and a.generate.generator == "idsync" and b.generate.idsync.guidance == 4.0


def test_fusion_trials_share_one_fused_dataset_per_setting_and_map_leakage_to_the_sweeps_benchmark(tmp_path):
    from tests.conftest import make_dataset

    make_dataset(tmp_path / "a", identities=4)
    make_dataset(tmp_path / "b", identities=4, seed=1)
    base = {
        "evaluate": {"benchmarks": {"twins": "bench/twins.bin"}},
        "quality": {"leakage": {"references": ["bench/twins.bin", "/other.bin"]}},
        "fuse": {
            "sources": {
                "a": {"path": str(tmp_path / "a"), "identities": 2},
                "b": {"path": str(tmp_path / "b"), "share": 1.0},
            },
            "identities": 4,
        },
    }
    s = load_spec(
        spec_file(
            tmp_path,
            base=base,
            space={
                "fuse.sources.a.identities": [1, 2, 3],
                "fuse.overlap_threshold": {"type": "uniform", "low": 0.4, "high": 0.8},
            },
        )
    )
    trial = _trials(s, tmp_path, ["fuse.sources.a.identities", "fuse.overlap_threshold"], "/sweep/twins.bin")
    (a, ka), (_, kb), (c, kc) = trial(1, 0.5), trial(1, 0.5, n=1), trial(3, 0.5, n=2)
    assert ka == kb and ka["fuse"] != kc["fuse"] and "fuse" in ka
    assert a.fuse.out == a.train.dataset == str(tmp_path / "sw" / "datasets" / ka["fuse"])
    assert a.fuse.sources["a"].identities == 1 and c.fuse.sources["a"].identities == 3
    assert a.quality.leakage.references == ["/sweep/twins.bin", "/other.bin"]


def test_dataset_key_covers_generation_only(tmp_path):
    cfg = tiny_config(tmp_path)

    def key(*sets):
        return dataset_key(load_config(tmp_path / "params.yaml", sets=list(sets)))

    assert key() == key("train.lr=0.01", "generate.out=/else/where", "generate.vec2face.tau=0.1", "evaluate.flip=false")
    assert (
        len(
            {
                key(),
                key("generate.images_per_identity=5"),
                key("base.seed=8"),
                key("base.image_size=40"),
                key("generate.render.yaw=[-5, 5]"),
            }
        )
        == 5
    )
    assert cfg.generate.generator == "render"


def test_trial_numbers_and_injected_failures(tmp_path):
    assert trial_key("3_train.lr=0.1", "ab12cd34") == "002_ab12cd34" and trial_number("002_ab12cd34") == 2
    assert trial_key("4_train.lr=0.1", "98069_00004") == "004_98069_00004"  # grid: the id counts from 0
    assert trial_number("ab12cd34") == -1
    s = load_spec(spec_file(tmp_path, inject_failure={"trials": [1], "attempts": 1}))
    assert injected(s, {}, 1, 1) and not injected(s, {}, 1, 2) and not injected(s, {}, 0, 1)
    m = load_spec(spec_file(tmp_path, inject_failure={"match": {"generate.images_per_identity": 5}}))
    assert injected(m, {"generate.images_per_identity": 5}, 0, 7) and not injected(
        m, {"generate.images_per_identity": 4}, 0, 1
    )


def test_a_recipe_error_is_not_redone_on_retry(tmp_path):
    from facefoundry.errors import FaceFoundryError

    params = {"generate.vec2face.tau": 0.31}
    repeat_user_error(tmp_path, params)  # nothing recorded: the attempt runs
    record_user_error(tmp_path, params, FaceFoundryError("τ filter found only 0 of 100 identities"))
    with pytest.raises(FaceFoundryError, match=r"^τ filter found only 0 of 100 identities \(not retried"):
        repeat_user_error(tmp_path, params)
    repeat_user_error(tmp_path, {"generate.vec2face.tau": 0.45})  # other params: runs


def test_epoch_scorer_leaves_training_unchanged(tmp_path):
    """The per-epoch validation hook reads the backbone without changing what is learned."""
    from facefoundry.stages.common import log  # noqa: F401 - the trainer's logger
    from facefoundry.train.trainer import Trainer
    from facefoundry.verification.binfile import write_bin

    ds = make_dataset(tmp_path / "ds", identities=6, per_identity=6)
    rng = np.random.default_rng(3)
    imgs, same = [], []
    for i in range(20):
        a = 50 + i
        imgs += [identity_image(a, 0, 32, rng), identity_image(a if i % 2 else a + 1, 1, 32, rng)]
        same.append(bool(i % 2))
    write_bin(tmp_path / "val.bin", np.stack(imgs), same)

    def train(sub, hook):
        cfg = tiny_config(tmp_path / sub, train={"dataset": str(ds), "epochs": 3, "backbone": {"dropout": 0.1}})
        tr = Trainer(cfg, log=lambda m: None)
        scorer = EpochScorer(cfg, "val", str(tmp_path / "val.bin"))
        accs = []
        hist = tr.fit((lambda s: accs.append(scorer(tr))) if hook else None).history
        return tr, hist, accs

    plain, h1, _ = train("a", False)
    hooked, h2, accs = train("b", True)
    assert [s.loss for s in h1] == [s.loss for s in h2] and len(accs) == 3 and all(0 <= a <= 1 for a in accs)
    for (k, v1), v2 in zip(plain.net.state_dict().items(), hooked.net.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert json.dumps(accs)


def test_synface_specs_parse_and_every_point_is_a_valid_recipe():
    """SynFace's sweeps: φ/ψ sets and width × depth; the shape grids (fixed total, long tail, attributes)."""
    from facefoundry.config import Config

    s = load_spec(ROOT / "experiments" / "sweep_synface.yaml")
    assert set(s.dims) == {"generate.mixup.phi", "train.domain_mixup.psi", "generate.identities"}
    assert s.base_config.generate.mixup.enabled and s.base_config.generate.total_images == 1600
    expected = {"sweep_synface_shape": 5, "sweep_synface_long_tail": 3, "sweep_synface_attributes": 5}
    for name, points in expected.items():
        g = load_spec(ROOT / "experiments" / f"{name}.yaml")
        assert g.has_grid and g.trials == g.grid_size == points, name
        ((key, dim),) = g.dims.items()
        for value in dim.values:  # each grid point gives a valid generate section
            raw = g.base_config.model_dump(mode="json")
            raw["generate"][key.split(".")[1]] = value
            counts = Config.model_validate(raw).generate.image_counts()
            assert min(counts) >= 2, (name, value)
    tail = load_spec(ROOT / "experiments" / "sweep_synface_long_tail.yaml")
    totals = {
        sum(
            Config.model_validate(
                {
                    **tail.base_config.model_dump(mode="json"),
                    "generate": {**tail.base_config.generate.model_dump(mode="json"), "identity_groups": v},
                }
            ).generate.image_counts()
        )
        for v in tail.dims["generate.identity_groups"].values
    }
    assert totals == {2500}  # the paper's splits all hold the same number of images


def test_several_objectives_the_first_is_the_objective(tmp_path):
    two = [{"metric": "accuracy", "benchmarks": ["twins"]}, {"metric": "cost/seconds", "mode": "min"}]
    sweep = load_spec(spec_file(tmp_path, objective=two))
    spec = sweep.spec
    assert spec.objective.metric == "accuracy" and [o.metric for o in spec.all_objectives] == [
        "accuracy",
        "cost/total_seconds",  # cost/seconds: the trial's dataset + FR training
    ]
    assert spec.objective_keys == ["objective", "objective_1"] and spec.objectives[1].mode == "min"
    # the spec travels to the trials as its dump: it must validate again to the same spec
    again = type(spec).model_validate(spec.model_dump(mode="json"))
    assert again == spec
    one = load_spec(spec_file(tmp_path, objective=[{"metric": "accuracy"}])).spec
    assert one.objectives == [] and one.all_objectives == [one.objective] and one.objective_keys == ["objective"]
    assert sweep.digest() != load_spec(spec_file(tmp_path, objective=two[:1])).digest()


def test_workers_from_gpus_or_set_and_the_digest_of_older_sweeps(tmp_path):
    """``resources.workers`` (None: ``gpu`` when an integer > 1) says how many Ray Train workers train each trial;
    left unset it is not in the digest, so a sweep started before it existed resumes."""
    from facefoundry.sweep import workers

    plain = load_spec(spec_file(tmp_path))
    assert plain.spec.resources.workers is None and plain.spec.resources.train_workers == 1
    assert plain.digest() == load_spec(spec_file(tmp_path, resources={"cpu": 1, "gpu": "auto"})).digest()
    old = plain.spec.model_dump(mode="json", exclude={"address", "out", "description", "repeats", "objectives"})
    old["resources"] = {"cpu": 1.0, "gpu": "auto"}  # what the digest hashed before resources.workers existed
    blob = json.dumps({"spec": old, "base": plain.base_raw}, sort_keys=True, default=str)
    assert plain.digest() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    for given, n in (({"gpu": 4}, 4), ({"gpu": 1}, 1), ({"gpu": 0.5}, 1), ({"gpu": 2.5}, 1), ({"workers": 2}, 2)):
        s = load_spec(spec_file(tmp_path, resources=given))
        assert s.spec.resources.train_workers == n, given
    assert load_spec(spec_file(tmp_path, resources={"gpu": 4, "workers": 1})).spec.resources.train_workers == 1
    two = load_spec(spec_file(tmp_path, resources={"cpu": 0.5, "gpu": 0, "workers": 2}))
    assert two.digest() != load_spec(spec_file(tmp_path, resources={"cpu": 0.5, "gpu": 0})).digest()
    msg = error_of(spec_file(tmp_path, resources={"gpu": 1, "workers": 2}))
    assert "resources" in msg and "workers: 2 trains on 2 GPUs" in msg

    # the trial holds its CPUs, each worker its CPUs (+ 1 GPU); concurrency is capped to what the cluster holds
    gpus = load_spec(spec_file(tmp_path, resources={"cpu": 2, "gpu": 4})).spec
    assert workers.trial_resources(gpus, 4.0) == ({"cpu": 2, "gpu": 0.0}, {"CPU": 2, "GPU": 1.0})
    assert workers.concurrency(gpus, 4.0, {"CPU": 64, "GPU": 8}) == 2  # budget.max_concurrent
    assert workers.concurrency(gpus, 4.0, {"CPU": 64, "GPU": 5}) == 1
    with pytest.raises(FaceFoundryError, match=r"needs 10 CPU and 4 GPU .* at most 64 CPU, 2 GPU$"):
        workers.concurrency(gpus, 4.0, {"CPU": 64, "GPU": 2})
    assert workers.concurrency(two.spec, 0.0, {"CPU": 2}) == 1  # 0.5 + 2 × 0.5 CPU
    assert workers.describe(two.spec, 0.0) == "0.5 CPU each + 2 Ray Train workers × 0.5 CPU"


def test_workers_train_on_the_sweeps_device_and_the_trial_on_cpu(tmp_path):
    from facefoundry.sweep.trial import _workers_config

    s = load_spec(spec_file(tmp_path, resources={"gpu": 2}))
    ctx = {
        "out": str(tmp_path / "out"),
        "tracking_uri": "sqlite:///x.db",
        "experiment": "e",
        "threads": 1,
        "gpu": 0.0,
        "train_device": "cuda",
        "benchmarks": {"twins": str(tmp_path / "twins.bin")},
    }
    params = {"train.lr": 0.05, "generate.images_per_identity": 4}
    cfg, _ = trial_config(s, params, tmp_path / "trials" / "000_a", ctx)
    assert cfg.base.device == "cpu"  # the trial's own stages: it holds no GPU
    assert _workers_config(s, params, cfg, ctx).base.device == "cuda"
    assert _workers_config(s, params, cfg, {**ctx, "train_device": "cpu"}).base.device == "cpu"
    one = load_spec(spec_file(tmp_path, resources={"gpu": 1}))
    assert _workers_config(one, params, cfg, ctx) is None
