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


def test_amp_is_fp16_with_a_scaler_on_cuda_bf16_on_a_bf16_cpu_and_off_elsewhere(tmp_path, monkeypatch):
    import facefoundry.device as device

    assert device.amp_dtype(torch.device("cuda")) is torch.float16
    for avx512_bf16, amx, want in ((True, False, torch.bfloat16), (False, True, torch.bfloat16), (False, False, None)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert device.amp_dtype(torch.device("cpu")) is want
    monkeypatch.undo()
    ds = make_dataset(tmp_path / "ds", 4, 4)
    t = Trainer(
        tiny_config(tmp_path, train={"dataset": str(ds), "amp": True, "epochs": 1, "batch_size": 8}),
        log=lambda _m: None,
    )
    assert t.amp is device.amp_dtype(t.device)
    assert t.scaler.is_enabled() is (t.amp is torch.float16)  # bf16 needs no loss scaling
    assert t.fit().history[0].loss > 0
    off = Trainer(
        tiny_config(tmp_path / "off", train={"dataset": str(ds), "amp": False, "epochs": 1, "batch_size": 8}),
        log=lambda _m: None,
    )
    assert off.amp is None and not off.scaler.is_enabled()
