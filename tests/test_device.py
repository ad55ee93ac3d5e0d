import pytest
import torch

from facefoundry.device import dist_info, resolve_device
from facefoundry.errors import FaceFoundryError
from facefoundry.train.trainer import Trainer
from tests.conftest import make_dataset, tiny_config


def test_auto_picks_cpu_without_cuda_and_cuda_request_fails_clearly():
    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(FaceFoundryError, match="no CUDA device is available"):
        resolve_device("cuda:0")
    with pytest.raises(FaceFoundryError, match="is not a torch device"):
        resolve_device("tpu9")


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist_info() == (0, 1)
    assert not torch.distributed.is_initialized()


def test_amp_only_on_cuda(tmp_path):
    ds = make_dataset(tmp_path / "ds", 4, 4)
    t = Trainer(tiny_config(tmp_path, train={"dataset": str(ds), "amp": True, "epochs": 1, "batch_size": 8}),
                log=lambda _m: None)
    assert t.amp is (t.device.type == "cuda")
    assert not t.scaler.is_enabled() or t.device.type == "cuda"
    assert t.fit().history[0].loss > 0
