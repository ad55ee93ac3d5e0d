"""IDSync conditioning, x̂₀, the identity loss's reach, λ = 0, and the model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facefoundry.config import IDSyncCfg
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.idsync.conditioning import PROMPT, id_token, prompt_ids, toy_tokenizer
from facefoundry.generators.idsync.losses import ClassifierIdentityLoss, CosineIdentityLoss, pred_original_sample
from facefoundry.generators.idsync.model import (
    IDSync,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
    load_components,
    save_model_folder,
)
from facefoundry.generators.idsync.training import StepDraws, draw, idsync_loss
from tests.generators.idsync import ID_DIM, TINY_IDSYNC, make_classifier
from tests.generators.vec2face import TinyEncoder, single_thread  # noqa: F401 - autouse fixture


def tiny_model(seed: int = 0) -> IDSync:
    torch.manual_seed(seed)
    c = IDSyncCfg(**TINY_IDSYNC)
    tok = toy_tokenizer()
    m = IDSync(build_vae(c), build_unet(c, 8, 4, c.text_width), build_text_encoder(c, tok), tok, build_scheduler(c))
    m.vae.requires_grad_(False)
    m.text_encoder.get_input_embeddings().requires_grad_(False)
    return m


def unit(n: int, d: int = ID_DIM, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def embeddings_module(text_encoder):  # transformers 4 nests it under text_model, 5 does not
    return getattr(text_encoder, "text_model", text_encoder).embeddings


def test_the_id_token_embedding_becomes_vector_plus_position_and_nothing_else_changes() -> None:
    m = tiny_model()
    ids = prompt_ids(m.tokenizer)[0]
    assert m.tokenizer.convert_ids_to_tokens(ids.tolist())[1:6] == [w + "</w>" for w in PROMPT.split()]
    pos = int((ids == id_token(m.tokenizer)).nonzero())
    seen = {}
    handle = embeddings_module(m.text_encoder).register_forward_hook(lambda mod, a, out: seen.setdefault("x", out))
    v = unit(3)
    m.condition(v)
    handle.remove()
    x = seen["x"]  # token embedding + position embedding, [3, L, W]
    table = m.text_encoder.get_input_embeddings().weight
    position = embeddings_module(m.text_encoder).position_embedding.weight[: len(ids)]
    want_id = F.pad(v, (0, table.shape[1] - ID_DIM)) + position[pos]
    torch.testing.assert_close(x[:, pos], want_id)
    others = [i for i in range(len(ids)) if i != pos]
    torch.testing.assert_close(x[:, others], (table[ids] + position)[others].expand(3, -1, -1))
    # and the hook is gone: a plain call sees the plain token again
    plain = m.text_encoder(input_ids=ids[None]).last_hidden_state
    assert not torch.allclose(plain, m.condition(unit(1)))


def test_pred_original_sample_is_the_schedulers() -> None:
    sched = build_scheduler(IDSyncCfg(**TINY_IDSYNC))
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    ours = pred_original_sample(sched, eps, t, x)
    for i in range(4):
        ref = sched.step(eps[i : i + 1], int(t[i]), x[i : i + 1]).pred_original_sample
        torch.testing.assert_close(ours[i : i + 1], ref)


def _grads(m: IDSync, weight: float, loss_fn) -> dict[str, torch.Tensor]:
    for p in [*m.unet.parameters(), *m.text_encoder.parameters(), *m.vae.parameters()]:
        p.grad = None
    g = torch.Generator().manual_seed(5)
    lat = torch.randn(4, 4, 8, 8, generator=g)
    d = draw(g, tuple(lat.shape), 1000, 0.0)
    d.timesteps[:] = torch.tensor([3, 40, 200, 700])
    loss, parts = idsync_loss(m, lat, unit(4), torch.tensor([0, 1, 2, 0]), d, weight, loss_fn)
    loss.backward()
    named = {
        **{f"unet.{k}": p for k, p in m.unet.named_parameters()},
        **{f"text.{k}": p for k, p in m.text_encoder.named_parameters()},
        **{f"vae.{k}": p for k, p in m.vae.named_parameters()},
    }
    return {k: (p.grad.clone() if p.grad is not None else None) for k, p in named.items()}, parts


@pytest.mark.parametrize("variant", ["cosine", "ce"])
def test_identity_gradient_reaches_unet_and_text_encoder_not_vae_nor_token_table(variant: str, tmp_path: Path) -> None:
    m = tiny_model()
    loss_fn = (
        CosineIdentityLoss(TinyEncoder(ID_DIM))
        if variant == "cosine"
        else ClassifierIdentityLoss(make_classifier(tmp_path / "clf", 3), 3)
    )
    plain, p0 = _grads(m, 0.0, loss_fn)
    withid, p1 = _grads(m, 1.0, loss_fn)
    assert "identity" not in p0 and p1["identity"] > 0 and p1["denoise"] == p0["denoise"]
    diff = {k: (withid[k] - plain[k]).abs().max().item() for k in plain if plain[k] is not None}
    assert max(v for k, v in diff.items() if k.startswith("unet.")) > 0
    assert max(v for k, v in diff.items() if k.startswith("text.")) > 0
    assert all(withid[k] is None for k in withid if k.startswith("vae."))  # frozen: the gradient passes through
    table = next(k for k in withid if k.startswith("text.") and "token_embedding" in k)
    assert withid[table] is None


def test_lambda_zero_is_exactly_the_plain_denoising_loss() -> None:
    m = tiny_model()
    g = torch.Generator().manual_seed(2)
    lat = torch.randn(4, 4, 8, 8, generator=g)
    d = draw(g, tuple(lat.shape), 1000, 0.5)
    v = unit(4)
    loss, parts = idsync_loss(
        m, lat, v, torch.zeros(4, dtype=torch.long), d, 0.0, CosineIdentityLoss(TinyEncoder(ID_DIM))
    )
    noisy = m.scheduler.add_noise(lat, d.noise, d.timesteps)
    hidden = torch.where(d.dropped.view(-1, 1, 1), m.unconditional().expand(4, -1, -1), m.condition(v))
    plain = F.mse_loss(m.unet(noisy, d.timesteps, hidden).sample, d.noise)
    assert d.dropped.any() and not d.dropped.all()
    assert loss.item() == plain.item() and parts == {"denoise": plain.item(), "loss": plain.item()}


def test_dropped_rows_and_late_timesteps_get_no_identity_loss() -> None:
    m = tiny_model()
    lat = torch.randn(4, 4, 8, 8)
    d = StepDraws(torch.randn(4, 4, 8, 8), torch.tensor([900, 900, 900, 900]), torch.tensor([False] * 4))
    _, parts = idsync_loss(
        m,
        lat,
        unit(4),
        torch.zeros(4, dtype=torch.long),
        d,
        1.0,
        CosineIdentityLoss(TinyEncoder(ID_DIM)),
        max_timestep=500,
    )
    assert "identity" not in parts  # every row at t ≥ 500


def test_ce_classifier_must_match_the_identity_count(tmp_path: Path) -> None:
    with pytest.raises(FaceFoundryError, match="5 classes but the IDSync dataset has 4"):
        ClassifierIdentityLoss(make_classifier(tmp_path / "clf", 5), 4)


def test_model_folder_is_in_the_arc2face_layout_and_reads_sd_names_too(tmp_path: Path) -> None:
    m = tiny_model()
    m.info = {"image_size": 16}
    folder = save_model_folder(m, tmp_path / "model", unit(6).numpy(), torch.arange(6).numpy())
    for sub in ("arc2face", "encoder", "vae", "tokenizer", "scheduler"):
        assert (folder / sub).is_dir(), sub
    back = load_components(folder)
    v = unit(2)
    with torch.no_grad():
        torch.testing.assert_close(back.condition(v), m.condition(v))
    (folder / "arc2face").rename(folder / "unet")
    (folder / "encoder").rename(folder / "text_encoder")
    assert load_components(folder).latent_size == 8
    (folder / "unet").rename(folder / "other")
    with pytest.raises(FaceFoundryError, match="no arc2face/ or unet/ subfolder"):
        load_components(folder)


def test_conditioning_effect_is_zero_when_the_identity_cannot_reach_the_unet() -> None:
    from facefoundry.config import IDSyncGenCfg
    from facefoundry.generators.idsync.generate import conditioning_effect

    m = tiny_model()
    g = IDSyncGenCfg(steps=2, guidance=2.0)
    assert conditioning_effect(m, unit(4), g, seed=0, n=4) > 0
    assert conditioning_effect(m, unit(3), g, seed=0, n=6) > 0  # fewer identities than asked: uses them all
    assert conditioning_effect(m, unit(1), g, seed=0) != conditioning_effect(m, unit(1), g, seed=0)  # NaN: one
    m.condition = lambda v: m.unconditional().expand(len(v), -1, -1)  # identity dropped before the UNet
    assert conditioning_effect(m, unit(4), g, seed=0, n=4) == 0
