"""The speed switches of the training step against the plain float32 run on the same tiny data: bf16 autocast
(``train.amp``), ``train.channels_last`` and ``train.compile`` each train to the same model, up to the float noise
each is allowed, and each is seen to be in effect (a switch silently ignored fails its test).

Tolerances. channels_last and compile only reorder float32 sums (other convolution kernels, fused ones): the six
SGD steps' losses agree to ~3e-7 relative and the embeddings to ~2e-6 measured, so 1e-4 (≈ 800 float32 epsilons)
leaves room for other CPUs' kernels and still catches a different model. bf16 keeps 8 significant bits: each
autocast op rounds with a relative error up to 2^-8 ≈ 0.4 %, and about ten of them in a row and six steps feeding
each other give the measured 1.5 % on the loss and an embedding cosine of 0.995; the test allows 5 % and 0.98.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch._dynamo.backends.registry import lookup_backend

import facefoundry.train.speed as speed
import facefoundry.train.trainer as trainer_module
from facefoundry.errors import FaceFoundryError
from facefoundry.models.bundle import RawEmbedding
from facefoundry.train.trainer import CHECKPOINT, Trainer
from tests.conftest import make_dataset, tiny_config

FLOAT_NOISE = 1e-4  # channels_last, compile: float32 sums in another order
BF16_LOSS = 0.05  # relative, bf16 autocast: 8 significant bits through ~10 ops and 6 steps
BF16_COSINE = 0.98
PLAIN = {"amp": False, "channels_last": False, "compile": False}


def quiet(_msg):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("speed") / "ds", identities=6, per_identity=8)  # 3 steps an epoch


@pytest.fixture(scope="module")
def plain(data, tmp_path_factory):
    return train(tmp_path_factory.mktemp("plain"), data)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()  # each compiling test counts its own graphs
    yield
    torch._dynamo.reset()


PROBE = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class Run(NamedTuple):
    trainer: Trainer
    losses: list[float]  # per epoch
    emb: torch.Tensor  # unit embeddings of PROBE
    resumed_from: int


def embeddings(tr: Trainer) -> torch.Tensor:
    tr.net.eval()
    with torch.no_grad():
        return torch.nn.functional.normalize(tr.backbone.embed_raw(PROBE).float(), dim=1)


def train(tmp: Path, data: Path, stop_after: int | None = None, **switches) -> Run:
    """Two epochs of the tiny model, plain float32 but for ``switches``."""
    cfg = tiny_config(tmp, train={"dataset": str(data), "epochs": 2, **PLAIN, **switches})
    tr = Trainer(cfg, log=quiet)
    result = tr.fit(stop_after=stop_after)
    return Run(tr, [s.loss for s in result.history], embeddings(tr), result.resumed_from)


def assert_close(run: Run, plain: Run, tol: float) -> None:
    assert run.losses == pytest.approx(plain.losses, rel=tol)
    assert torch.allclose(run.emb, plain.emb, atol=tol, rtol=0)


def inputs_of(tr: Trainer) -> list[torch.Tensor]:
    """Records the batches (and, through the output, the dtype) the backbone's first convolution sees."""
    seen: list[torch.Tensor] = []

    def note(_module, args, out):
        seen.extend((args[0], out))

    tr.backbone.conv1.register_forward_hook(note)
    return seen


def test_bf16_autocast_trains_the_same_model_within_bf16_precision(data, plain, tmp_path, monkeypatch):
    # forced, so that a CPU without native bf16 (where train.amp is off) tests it too
    monkeypatch.setattr(trainer_module, "amp_dtype", lambda _device: torch.bfloat16)
    cfg = tiny_config(tmp_path / "bf16", train={"dataset": str(data), "epochs": 2, **PLAIN, "amp": True})
    tr = Trainer(cfg, log=quiet)
    assert tr.amp == torch.bfloat16 and not tr.scaler.is_enabled()  # CPU: no GradScaler (bf16 has fp32's range)
    seen = inputs_of(tr)
    losses = [s.loss for s in tr.fit().history]
    assert seen[1].dtype == torch.bfloat16  # the convolution ran in bf16
    assert next(tr.backbone.parameters()).dtype == torch.float32  # master weights stay float32
    assert losses == pytest.approx(plain.losses, rel=BF16_LOSS)
    assert losses != pytest.approx(plain.losses, rel=FLOAT_NOISE)  # bf16 rounding shows: autocast was on
    assert float((embeddings(tr) * plain.emb).sum(1).min()) > BF16_COSINE


def test_channels_last_trains_the_same_model(data, plain, tmp_path):
    cfg = tiny_config(tmp_path / "cl", train={"dataset": str(data), "epochs": 2, **PLAIN, "channels_last": True})
    tr = Trainer(cfg, log=quiet)
    seen = inputs_of(tr)
    losses = [s.loss for s in tr.fit().history]
    nhwc = torch.channels_last
    assert seen[0].is_contiguous(memory_format=nhwc) and not seen[0].is_contiguous()  # NHWC batches
    assert tr.backbone.conv1.weight.is_contiguous(memory_format=nhwc) and not tr.backbone.conv1.weight.is_contiguous()
    assert not plain.trainer.backbone.conv1.weight.is_contiguous(memory_format=nhwc)  # off: NCHW
    assert_close(Run(tr, losses, embeddings(tr), 0), plain, FLOAT_NOISE)


def counting(graphs: list) -> object:
    """A torch.compile backend that notes each graph and runs it through AOTAutograd eagerly: the trainer's compile
    path (Dynamo's capture, the joint forward and backward graph) without TorchInductor's C++ build."""
    aot_eager = lookup_backend("aot_eager")

    def backend(gm, example_inputs):
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    return backend


def test_compile_trains_the_same_model_and_keeps_the_keys(data, plain, tmp_path, monkeypatch):
    graphs: list = []
    monkeypatch.setattr(speed, "BACKEND", counting(graphs))
    run = train(tmp_path / "c", data, compile=True, export_onnx=True)
    tr = run.trainer
    assert speed.is_compiled(tr.backbone) and graphs  # the steps ran the compiled backbone
    assert_close(run, plain, FLOAT_NOISE)
    keys = set(torch.load(tmp_path / "c" / "train" / CHECKPOINT, weights_only=False)["net"])
    assert keys == set(plain.trainer.net.state_dict()) and not any("_orig_mod" in k for k in keys)
    # export: the eager module is saved, ONNX-exported and pickled (MLflow's model)
    model = tr.export({})
    assert not speed.is_compiled(tr.backbone) and (tmp_path / "c" / "train" / "model" / "backbone.onnx").is_file()
    assert not any("_orig_mod" in k for k in model.backbone.state_dict())
    assert pickle.loads(pickle.dumps(RawEmbedding(model.backbone))) is not None


def test_compiled_run_resumes_to_the_same_model(data, plain, tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "BACKEND", counting([]))
    train(tmp_path, data, stop_after=1, compile=True)  # "killed" after epoch 1
    resumed = train(tmp_path, data, compile=True)
    assert resumed.resumed_from == 1 and speed.is_compiled(resumed.trainer.backbone)
    assert_close(resumed, plain, FLOAT_NOISE)


def test_compile_without_a_cpp_compiler_is_one_line(data, tmp_path):
    from torch._inductor import config as inductor_config

    cfg = tiny_config(tmp_path, train={"dataset": str(data), "epochs": 1, **PLAIN, "compile": True})
    no_compiler = inductor_config.patch({"cpp.cxx": ("facefoundry-no-such-c++",)})
    with (
        no_compiler,
        pytest.raises(FaceFoundryError, match=re.escape("train.compile: TorchInductor needs a C++ compiler")) as err,
    ):
        Trainer(cfg, log=quiet)
    assert "\n" not in str(err.value) and "train.compile=false" in str(err.value)


@pytest.mark.heavy  # opt-in: TorchInductor writes and builds C++ (30-75 s on 2 cores); the compile path runs above
def test_inductor_trains_the_same_model(data, plain, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold build, as a first run has
    run = train(tmp_path / "c", data, compile=True)
    assert speed.is_compiled(run.trainer.backbone)
    assert_close(run, plain, FLOAT_NOISE)
