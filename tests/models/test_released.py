"""Released insightface models used directly: an arcface_torch backbone.pth (+ arch) or an ONNX file.

The "released" files are made here from our own IResNet (its parameter names are arcface_torch's),
r18-deep but 8 channels wide at 32 px, so everything runs in seconds on a CPU.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.models.bundle import INDEX, RawEmbedding, export_onnx
from facefoundry.models.iresnet import IResNet
from facefoundry.models.released import OnnxModel, import_arcface_torch, load_backbone, load_model
from facefoundry.verification.binfile import write_bin
from tests.conftest import identity_image, make_dataset, tiny_config

SIZE = 32


def _random_net(size: int = SIZE, seed: int = 0) -> IResNet:
    torch.manual_seed(seed)
    net = IResNet([2, 2, 2, 2], 8, 32, size).eval()  # r18 layout, tiny width
    for m in net.modules():  # non-trivial BN parameters and statistics, so a wrong mapping would show
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net


def _export_named_onnx(net: IResNet, path: Path) -> None:
    """An ONNX export that keeps parameter names (no BatchNorm folding), as some conversions do."""
    buf = io.BytesIO()
    torch.onnx.export(
        RawEmbedding(net).eval(),
        (torch.zeros(1, 3, SIZE, SIZE),),
        buf,
        input_names=["data"],
        output_names=["embedding"],
        dynamic_axes={"data": {0: "batch"}},
        opset_version=17,
        dynamo=False,
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )
    path.write_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    d = tmp_path_factory.mktemp("released")
    net = _random_net()
    torch.save(net.state_dict(), d / "backbone.pth")  # arcface_torch's layout and key names
    export_onnx(net, d / "model.onnx", SIZE)  # as insightface's torch2onnx: eval mode, BN folded
    rng = np.random.default_rng(0)
    images, issame = [], []
    for p in range(20):  # 20 pairs (two per fold), half of them the same identity
        same = p % 2 == 0
        a, b = p, p if same else p + 100
        images += [identity_image(a, 0, SIZE, rng), identity_image(b, 1, SIZE, rng)]
        issame.append(same)
    write_bin(d / "tiny.bin", images, issame)
    return d, net


def _x(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def test_imported_pth_and_onnx_embed_as_the_original(released):
    d, net = released
    model = import_arcface_torch(d / "backbone.pth", "r18")
    assert model.info["arch"] == "r18" and model.info["source_format"] == "arcface_torch"
    assert (model.preprocess.color_order, model.preprocess.mean, model.preprocess.std) == ("RGB", 0.5, 0.5)
    assert model.preprocess.image_size == SIZE and model.backbone.config["width"] == 8
    onnx = load_model(d / "model.onnx")
    assert isinstance(onnx, OnnxModel) and onnx.preprocess == model.preprocess and not onnx.normalised_inside
    with torch.no_grad():
        ref = net.embed_raw(_x())
        assert torch.equal(model.backbone.embed_raw(_x()), ref)
        assert torch.allclose(onnx.embed_raw(_x()), ref, atol=1e-3, rtol=1e-4)
    assert load_model(d / "backbone.pth").info["arch"] == "r18"  # arch read from the keys when not given


def test_onnx_is_evaluation_only_unless_it_kept_parameter_names(released, tmp_path):
    d, net = released
    with pytest.raises(FaceFoundryError, match=r"model\.onnx: .*can be evaluated .* but not fine-tuned"):
        load_backbone(d / "model.onnx")
    _export_named_onnx(net, tmp_path / "named.onnx")
    model = load_backbone(tmp_path / "named.onnx", "r18")
    with torch.no_grad():
        assert torch.allclose(model.backbone.embed_raw(_x()), net.embed_raw(_x()), atol=1e-5)


def test_bad_files_are_one_line_errors_naming_the_file(released, tmp_path):
    d, _ = released
    raw = (d / "backbone.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FaceFoundryError, match=r"cut\.pth: .*truncated or corrupt"):
        import_arcface_torch(tmp_path / "cut.pth", "r18")
    torch.save({"w": torch.zeros(1), "obj": Path("x")}, tmp_path / "code.pth")  # not weights only
    with pytest.raises(FaceFoundryError, match=r"code\.pth: holds objects other than tensors") as err:
        import_arcface_torch(tmp_path / "code.pth")
    assert "weights_only" not in str(err.value)
    with pytest.raises(
        FaceFoundryError,
        match=r"backbone\.pth: state dict does not fit r34 .*missing keys "
        r"\(layer1\.2\..*blocks per stage are \[2, 2, 2, 2\] \(r18\)",
    ):
        import_arcface_torch(d / "backbone.pth", "r34")
    with pytest.raises(FaceFoundryError, match=r"unknown arch 'mbf': expected one of r18, r34"):
        import_arcface_torch(d / "backbone.pth", "mbf")
    state = torch.load(d / "backbone.pth", weights_only=True)
    state["extra.weight"] = state.pop("features.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(
        FaceFoundryError,
        match=r"1 missing keys \(features\.weight\), 1 unexpected keys "
        r"\(extra\.weight\)",
    ):
        import_arcface_torch(tmp_path / "renamed.pth", "r18")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(FaceFoundryError, match=r"bad\.onnx: not a readable ONNX model"):
        load_model(tmp_path / "bad.onnx")
    with pytest.raises(FaceFoundryError, match=r"nothing\.pth: .*does not exist"):
        load_model(tmp_path / "nothing.pth")


# -- the command line ----------------------------------------------------------------------------
ENV = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "GIT_PYTHON_REFRESH": "quiet"}


def ff(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facefoundry", "--params", str(tmp / "params.yaml"), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )


def cli(capsys, tmp: Path, *args: str) -> tuple[int, str]:
    """The CLI in this process (fast, for errors raised before any work): exit code and stderr."""
    from facefoundry.cli import main

    argv = sys.argv
    sys.argv = ["facefoundry", "--params", str(tmp / "params.yaml"), *args]
    try:
        with pytest.raises(SystemExit) as stop:
            main()
    finally:
        sys.argv = argv
    return stop.value.code, capsys.readouterr().err


@pytest.mark.slow
def test_cli_evaluates_pth_and_onnx_and_imports_a_folder(released, tmp_path):
    d, _ = released
    tiny_config(tmp_path, evaluate={"flip": False})
    accuracy = {}
    for name, args in {
        "onnx": ["--model", str(d / "model.onnx")],
        "pth": ["--model", str(d / "backbone.pth"), "--arch", "r18"],
    }.items():
        proc = ff(
            tmp_path,
            "--set",
            f"evaluate.out={tmp_path / name}",
            "evaluate",
            "--benchmark",
            f"tiny={d / 'tiny.bin'}",
            *args,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "| model | tiny | 20 |" in proc.stdout
        accuracy[name] = json.loads((tmp_path / name / "metrics.json").read_text())["tiny_accuracy"]
    assert accuracy["onnx"] == pytest.approx(accuracy["pth"])
    proc = ff(tmp_path, "import-model", str(d / "backbone.pth"), "--arch", "r18", "--out", str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = json.loads((tmp_path / "m" / INDEX).read_text())
    assert index["arch"] == "r18" and index["preprocess"]["mean"] == 0.5 and index["imported_from"].endswith("pth")


def test_cli_bad_inputs_exit_2_with_one_line(released, tmp_path, capsys):
    d, _ = released
    ds = make_dataset(tmp_path / "ds", 4, 4, size=SIZE)
    tiny_config(tmp_path, train={"dataset": str(ds)})
    raw = (d / "backbone.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x01garbage")
    cases = [
        (["evaluate", "--model", str(tmp_path / "cut.pth"), "--arch", "r50"], "cut.pth: "),
        (["evaluate", "--model", str(tmp_path / "bad.onnx")], "bad.onnx: not a readable ONNX model"),
        (["evaluate", "--model", str(d / "backbone.pth"), "--arch", "r50"], "does not fit r50"),
        (["evaluate", "--model", str(d / "backbone.pth"), "--arch", "r9"], "unknown arch 'r9'"),
        (["import-model", str(d / "model.onnx"), "--out", str(tmp_path / "x")], "not fine-tuned"),
        (["--set", f"train.init={d / 'model.onnx'}", "train"], "not fine-tuned"),
    ]
    for args, fragment in cases:
        code, err = cli(capsys, tmp_path, *args)
        lines = err.strip().splitlines()
        assert code == 2 and "Traceback" not in err, err
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert not (tmp_path / "x").exists() and not (tmp_path / "train" / "model").exists()


# -- training from a released model ------------------------------------------------------------
def test_training_starts_from_train_init(released, tmp_path):
    from facefoundry.train.trainer import Trainer

    d, net = released
    ds = make_dataset(tmp_path / "ds", 4, 4, size=SIZE)
    cfg = tiny_config(
        tmp_path,
        train={"dataset": str(ds), "init": str(d / "backbone.pth"), "init_arch": "r18", "epochs": 1, "batch_size": 16},
    )
    trainer = Trainer(cfg, log=lambda _: None)
    assert trainer.head.weight.shape[1] == 32  # the head fits the imported 32-d embedding, not train.backbone's
    for k, v in net.state_dict().items():
        assert torch.equal(trainer.backbone.state_dict()[k], v), k
    plain = Trainer(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"init": None, "init_arch": None})}),
        log=lambda _: None,
    )
    assert plain.fingerprint != trainer.fingerprint
    trainer.fit(stop_after=1)
    assert not torch.equal(trainer.backbone.state_dict()["conv1.weight"], net.state_dict()["conv1.weight"])
    model = trainer.export({})
    assert model.info["init"]["arch"] == "r18" and model.info["init"]["path"] == str(d / "backbone.pth")
    assert json.loads((tmp_path / "train" / "model" / INDEX).read_text())["init"]["format"] == "arcface_torch"


def test_train_init_of_another_input_size_is_refused(released, tmp_path):
    from facefoundry.train.trainer import Trainer

    torch.save(_random_net(size=64).state_dict(), tmp_path / "big.pth")
    ds = make_dataset(tmp_path / "ds", 4, 4, size=SIZE)
    cfg = tiny_config(tmp_path, train={"dataset": str(ds), "init": str(tmp_path / "big.pth")})
    with pytest.raises(
        FaceFoundryError,
        match=r"train\.init .*big\.pth: the model takes 64-px input but "
        r"base\.image_size is 32",
    ):
        Trainer(cfg, log=lambda _: None)
