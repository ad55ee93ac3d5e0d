"""Every bad input the hardening issue lists, through the real CLI (a subprocess each).

Each must end with exit code 2, at most 3 lines on stderr, one ``error:`` line naming the file
and the problem, and no traceback. Disk faults (read-only folder, full disk) are injected at the
system calls by ``tests.faults``, because root ignores chmod and a full disk needs a mount.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_dataset, tiny_config

ENV = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
ENV["GIT_PYTHON_REFRESH"] = "quiet"
ROOT = Path(__file__).resolve().parents[1]


def run(
    tmp: Path, *args: str, fault: list[str] | None = None, params: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    head = [sys.executable, "-m", "tests.faults", *fault, "--"] if fault else [sys.executable, "-m", "facefoundry"]
    cli = ["--params", str(tmp / "params.yaml")] if params else []
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{ENV.get('PYTHONPATH', '')}", **(env or {})}
    return subprocess.run([*head, *cli, *args], cwd=tmp, capture_output=True, text=True, env=env, timeout=600)


def assert_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    err = proc.stderr
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) <= 3, err
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, err
    for frag in fragments:
        assert frag in errors[0], errors[0]
    assert "weights_only" not in err
    return errors[0]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    from facefoundry.data.transforms import Preprocess
    from facefoundry.models.bundle import FRModel
    from facefoundry.models.iresnet import build_backbone

    folder = tmp_path / "model"
    FRModel(build_backbone("iresnet", 32, 16, 8, [1, 1, 1, 1]), Preprocess(image_size=32), {}).save(folder)
    return folder


def _bin(path: Path, n: int = 20, size: int = 32) -> Path:
    from facefoundry.verification.binfile import write_bin

    rng = np.random.default_rng(0)
    write_bin(path, rng.integers(0, 255, (2 * n, size, size, 3), dtype=np.uint8), [i % 2 == 0 for i in range(n)])
    return path


# -- config files ------------------------------------------------------------------------------


def test_named_params_or_experiment_file_must_exist(tmp_path):
    assert_error(run(tmp_path, "--params", str(tmp_path / "paramz.yaml"), "config", params=False), "paramz.yaml")
    tiny_config(tmp_path)
    assert_error(run(tmp_path, "-e", "experiments/nope.yaml", "config"), "nope.yaml")


# -- data ----------------------------------------------------------------------------------------


def test_a_file_store_tracking_uri_is_one_line(tmp_path):
    tiny_config(tmp_path)
    err = assert_error(run(tmp_path, "--set", "base.tracking_uri=file:./mlruns", "config"), "file:./mlruns")
    assert "sqlite:///mlflow.db" in err and "MLFLOW_ALLOW_FILE_STORE" in err


def test_train_lists_every_file_whose_hash_differs(tmp_path):
    ds = make_dataset(tmp_path / "ds", 4, 4)
    victims = sorted((ds / "images").rglob("*.png"))[2:5]
    for v in victims:  # still valid images, but not the ones the manifest names
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(v)
    tiny_config(tmp_path, train={"dataset": str(ds)})
    line = assert_error(run(tmp_path, "train"), "3 of 16 images are bad", "sha256 differs from the manifest")
    for v in victims:
        assert v.name in line
    assert not (tmp_path / "train" / "model").exists()


@pytest.mark.slow
def test_greyscale_and_palette_images_are_refused_when_asked(tmp_path):
    ds = make_dataset(tmp_path / "ds", 4, 4)
    for label in range(4):  # an image folder with a greyscale and a palette image
        (tmp_path / "folder" / f"p{label}").mkdir(parents=True)
        for k in range(4):
            im = Image.fromarray(np.asarray(Image.open(sorted((ds / "images").rglob("*.png"))[4 * label + k])))
            im = im.convert("L") if (label, k) == (0, 0) else im.convert("P") if (label, k) == (1, 1) else im
            im.save(tmp_path / "folder" / f"p{label}" / f"{k}.png")
    tiny_config(tmp_path, train={"dataset": str(tmp_path / "folder")})
    assert_error(
        run(tmp_path, "--set", "train.non_rgb=reject", "validate", "--dataset", "folder"),
        "2 of 16 images are bad",
        "p0/0.png: greyscale (L)",
        "p1/1.png: palette (P)",
    )
    ok = run(tmp_path, "validate", "--dataset", "folder", "--out", str(tmp_path / "v.json"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "1 greyscale (L), 1 palette (P) image(s) are converted to RGB" in ok.stderr


def test_validate_lists_all_bad_images_up_to_a_limit(tmp_path):
    ds = make_dataset(tmp_path / "ds", 4, 4)
    for v in sorted((ds / "images").rglob("*.png"))[:12]:
        v.unlink()
    tiny_config(tmp_path)
    line = assert_error(run(tmp_path, "validate", "--dataset", str(ds)), "12 of 16 images are bad", "… and 2 more")
    assert line.count("listed in the dataset but missing") == 10


@pytest.mark.slow
def test_convert_and_validate_reject_a_missing_dataset(tmp_path):
    tiny_config(tmp_path)
    assert_error(run(tmp_path, "convert", "nowhere", "--out", "x"), "nowhere", "does not exist")
    assert_error(run(tmp_path, "validate", "--dataset", "nowhere"), "nowhere", "does not exist")


@pytest.mark.slow
def test_idsync_refuses_a_missing_model_folder_classifier_and_unlabelled_ce(tmp_path):
    tiny_config(tmp_path)
    assert_error(
        run(tmp_path, "--set", "generate.idsync.model=elsewhere", "generate", "--generator", "idsync"),
        "elsewhere",
        "not an IDSync model folder",
    )
    make_dataset(tmp_path / "photos", identities=40, per_identity=1, size=16)  # unlabelled: one photo each
    common = ["--set", "idsync.dataset=photos", "--set", "idsync.image_size=16", "--set", "idsync.vae_channels=[8, 8]"]
    assert_error(
        run(tmp_path, *common, "--set", "idsync.classifier=nowhere", "train-idsync"),
        "nowhere",
        "no such FR model folder",
    )
    assert_error(
        run(tmp_path, *common, "--set", "idsync.classifier=.", "train-idsync"),
        "photos",
        "no identity labels",
        "identity_loss=cosine",
    )


# -- models --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, expect",
    [
        ("missing", "missing (model weights)"),
        ("truncated", "truncated or corrupt"),
        ("pickle", "holds objects other than tensors"),
        ("index", "not valid JSON"),
        ("preprocess", "no 'preprocess' section"),
        ("config", "not valid JSON"),
        ("folds", "5 pairs cannot be split into 10 folds"),
    ],
)
def test_damaged_model_folder(tmp_path, model_dir, damage, expect):
    weights = model_dir / "backbone" / "backbone.pth"
    if damage == "missing":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "pickle":  # a pickle that would run code under an unsafe load
        weights.write_bytes(pickle.dumps({"conv1.weight": os.system}))
    elif damage == "index":
        (model_dir / "facefoundry_model.json").write_text("{not json")
    elif damage == "preprocess":
        (model_dir / "facefoundry_model.json").write_text('{"backbone": "IResNet"}')
    elif damage == "config":
        (model_dir / "backbone" / "config.json").write_text("[1,")
    tiny_config(
        tmp_path, evaluate={"model": str(model_dir), "benchmarks": {"b": str(_bin(tmp_path / "b.bin")), "twins": None}}
    )
    if damage == "folds":  # not the model: a benchmark too small for the protocol
        _bin(tmp_path / "b.bin", n=5)
        assert_error(run(tmp_path, "evaluate"), "b.bin", expect)
        return
    assert_error(run(tmp_path, "evaluate"), str(model_dir.name), expect)


@pytest.mark.slow
def test_benchmarks_can_all_be_removed_and_then_evaluate_says_so(tmp_path, model_dir):
    tiny_config(tmp_path, evaluate={"model": str(model_dir)})
    assert_error(run(tmp_path, "--set", "evaluate.benchmarks.twins=null", "evaluate"), "no benchmark to evaluate on")
    own = _bin(tmp_path / "own.bin")
    ok = run(
        tmp_path,
        "--set",
        "evaluate.benchmarks.twins=null",
        "--set",
        f"evaluate.benchmarks.own={own}",
        "evaluate",
        env={"FACEFOUNDRY_PROGRESS": "lines", "FACEFOUNDRY_PROGRESS_EVERY": "0"},
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "model on own: 40/40 img (100%)" in ok.stderr  # embedding shows progress (plain lines off a terminal)
    assert "on own: accuracy" in ok.stderr and "twins" not in ok.stderr.split("on own")[0].split("\n")[-1]


# -- disks ---------------------------------------------------------------------------------------


def test_read_only_output_folder_fails_before_work(tmp_path):
    ds = make_dataset(tmp_path / "ds", 4, 4)
    ro = tmp_path / "ro"
    ro.mkdir()
    tiny_config(tmp_path, train={"dataset": str(ds), "out": str(ro / "train")})
    assert_error(
        run(tmp_path, "train", fault=["readonly", str(ro)]),
        str(ro / "train"),
        "permission denied",
        "writable output folder",
    )
    tiny_config(tmp_path, generate={"out": str(ro / "render")})
    assert_error(run(tmp_path, "generate", fault=["readonly", str(ro)]), str(ro), "permission denied")


@pytest.mark.slow
def test_full_disk_keeps_the_finished_images_says_where_and_resumes(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    tiny_config(tmp_path, generate={"out": str(out / "render")})
    line = assert_error(
        run(tmp_path, "generate", fault=["full", str(out), "10"]),
        "no space left on the device",
        "finished images are kept in",
        ".render.partial",
    )
    partial = out / ".render.partial"
    assert partial.is_dir() and str(partial) in line
    done = int(line.split("; the ")[1].split(" finished")[0])
    assert 0 < done < 24
    again = run(tmp_path, "generate")
    assert again.returncode == 0, again.stderr[-2000:]
    assert not partial.exists() and (out / "render" / "manifest.parquet").is_file()
    assert len(list((out / "render" / "images").rglob("*.png"))) == 24


@pytest.mark.slow
def test_ctrl_c_says_what_was_saved_and_exits_130(tmp_path):
    ds = make_dataset(tmp_path / "ds", 8, 8)
    tiny_config(tmp_path, train={"dataset": str(ds), "epochs": 400, "batch_size": 8})
    env = {**ENV, "PYTHONPATH": str(ROOT)}
    # a suite started in the background (`cmd &`) inherits SIGINT ignored, and Python then keeps it ignored:
    # give the child the default disposition, as a terminal's foreground process has
    proc = subprocess.Popen(
        [sys.executable, "-m", "facefoundry", "--params", str(tmp_path / "params.yaml"), "train"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - Popen cannot reset SIGINT
    )
    deadline = time.time() + 300
    while not (tmp_path / "train" / "checkpoint.pt").is_file() and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert (
        "interrupted: finished work is kept (epoch " in err
        and "checkpoint.pt); run the same command again to resume" in err
    )
