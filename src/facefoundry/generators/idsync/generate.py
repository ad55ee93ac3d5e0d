"""``facefoundry generate --generator idsync``: new identities from a trained IDSync model.

As the official ``create_synth_dataset.py`` (JSabadin/IDSync), in this order:

1. **Identities** — PCA fitted on the training photos' per-image identity vectors (``pca_components``,
   paper 300, capped by the data), centres z ~ N(0, explained variance) mapped back and ℓ2-normalised;
   all in the space the model is conditioned on (centred on the training mean with ``centre_vectors``).
2. **Intra-class variation** — each image's vector is its centre + N(0, σ²) per dimension with
   σ² = ``noise_variance`` (paper 0.001), renormalised.
3. **Images** — DPM-Solver++ (``DPMSolverMultistepScheduler`` derived from the training schedule),
   ``steps`` steps (paper 25), classifier-free guidance ``guidance`` (paper 3) against the empty
   prompt. Batches are seeded by their offset and written through the resumable dataset writer: a
   killed job resumes to exactly the dataset of an uninterrupted one. Exactly ``images_per_identity``
   images per identity are written (the official script asks the pipeline for batch² images per call
   and keeps the first ones).

The manifest's meta records λ, the loss variant, the noise variance, steps, guidance and the seed;
each row records its vector's cosine to its centre. With an MLflow run active, a sample grid
(rows identities) and the judges' intra/inter-identity similarities go to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facefoundry import reporting
from facefoundry.config import Config, IDSyncGenCfg
from facefoundry.device import resolve_device
from facefoundry.generators.feed import to_uint8
from facefoundry.generators.idsync.model import IDSync, conditioning_space, load_identity_vectors, load_model_folder
from facefoundry.generators.sampling import uniform_count
from facefoundry.generators.write import write_generated
from facefoundry.sampling import IdentityPCA, perturb
from facefoundry.sampling.mixup import draw_partners, mix_vectors, ratio_grid

FORMAT_VERSION = 1  # bump when generation changes, so an old partial run is not resumed


def identity_pca(vectors: np.ndarray, components: int | None) -> IdentityPCA:
    k = min(components or vectors.shape[1], len(vectors) - 1, vectors.shape[1])
    return IdentityPCA(k).fit(vectors)


def sample_vectors(
    pca: IdentityPCA,
    identities: int,
    per_identity: int,
    noise_variance: float,
    rng_centres: np.random.Generator,
    rng_noise: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(unit centres ``[N, D]``, unit image vectors ``[N·per, D]`` in identity order)."""
    centres = pca.sample(identities, rng_centres)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True).clip(1e-12)
    res = perturb(centres, per_identity, rng_noise, sigmas=[math.sqrt(noise_variance)], weights=[1.0])
    return centres.astype(np.float32), res.vectors.astype(np.float32)


def make_sampler(model: IDSync, g: IDSyncGenCfg):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(
        model.scheduler.config, algorithm_type="dpmsolver++", solver_order=g.solver_order
    )


@torch.no_grad()
def sample_images(
    model: IDSync, vectors: torch.Tensor, g: IDSyncGenCfg, generator: torch.Generator, sampler=None
) -> torch.Tensor:
    """Images ``[B, 3, S, S]`` in ``[-1, 1]`` for unit identity ``vectors`` (noise from ``generator``, CPU)."""
    sampler = sampler or make_sampler(model, g)
    dev = model.device
    sampler.set_timesteps(g.steps, device=dev)  # also resets the multistep solver's history
    c = model.unet.config
    lat = torch.randn((len(vectors), c.in_channels, model.latent_size, model.latent_size), generator=generator)
    lat = lat.to(dev) * sampler.init_noise_sigma
    cond = model.condition(vectors.to(dev))
    guided = g.guidance > 1
    if guided:
        cond = torch.cat([model.unconditional().expand_as(cond), cond])
    for t in sampler.timesteps:
        x = torch.cat([lat, lat]) if guided else lat
        x = sampler.scale_model_input(x, t)
        eps = model.unet(x, t, cond).sample
        if guided:
            u, e = eps.chunk(2)
            eps = u + g.guidance * (e - u)
        lat = sampler.step(eps, t, lat).prev_sample
    return model.decode(lat).clamp(-1, 1)


def conditioning_effect(model: IDSync, vectors: torch.Tensor, g: IDSyncGenCfg, seed: int, n: int = 6) -> float:
    """How much the identity moves the pixels, relative to the noise: mean squared difference between images of
    ``n`` identities drawn from one noise, ÷ that between ``n`` noises of one identity. ≈ 0: the model ignores
    its conditioning (an unconditional model); a well-conditioned one is well above 0."""
    n = min(n, len(vectors))
    if n < 2:
        return float("nan")
    v = vectors[:n]
    same_noise = torch.cat(
        [sample_images(model, v[i : i + 1], g, torch.Generator().manual_seed(seed)) for i in range(n)]
    )
    same_id = torch.cat([sample_images(model, v[:1], g, torch.Generator().manual_seed(seed + k)) for k in range(n)])

    def spread(x: torch.Tensor) -> float:
        return float(((x[:, None] - x[None]) ** 2).mean(dim=(2, 3, 4)).sum()) / (len(x) * (len(x) - 1))

    return spread(same_noise) / max(spread(same_id), 1e-12)


def judge_study(images: np.ndarray, labels: np.ndarray, judges: dict) -> dict[str, float]:
    """Intra- and inter-identity cosine of generated images, per judge."""
    from facefoundry.identity.judge import consistency_metrics, identity_similarities

    out: dict[str, float] = {}
    for name, enc in judges.items():
        emb = enc.embed(images, batch_size=64)
        intra, inter = identity_similarities(emb, labels)
        out.update({f"judge_{name}_{k}": v for k, v in consistency_metrics(intra, inter).items()})
    return out


def generate_idsync(cfg: Config, log: Callable[[str], None] = print) -> Path:
    g, gi = cfg.generate, cfg.generate.idsync
    device = resolve_device(cfg.base.device)
    model = load_model_folder(gi.model, device)
    raw, _, mean = load_identity_vectors(gi.model)
    vectors = conditioning_space(raw, mean)  # PCA, sampling and noise all act in the space the model is conditioned on
    seed = cfg.base.seed
    pca = identity_pca(vectors, gi.pca_components)
    per = uniform_count(g)
    centres, vecs = sample_vectors(
        pca, g.identities, per, gi.noise_variance, np.random.default_rng([seed, 41]), np.random.default_rng([seed, 42])
    )
    sim = (vecs * np.repeat(centres, per, 0)).sum(1)
    labels = np.repeat(np.arange(g.identities), per)
    mix = None
    if g.mixup.enabled:  # SynFace identity mixup with the partner's centre, renormalised (own random stream)
        mix = draw_partners(labels, g.identities, ratio_grid(g.mixup.phi), np.random.default_rng([seed, 51]))
        vecs = mix_vectors(vecs, centres[np.maximum(mix.partner, 0)], mix, renormalise=True)
    info = model.info
    assert pca.variances_ is not None  # identity_pca fitted it
    log(
        f"idsync: {len(vectors)} training vectors ({info.get('encoder_name', '?')} space, {vectors.shape[1]}-d"
        f"{', centred' if mean is not None else ''}), "
        f"PCA {len(pca.variances_)} components; {g.identities} identities × {per}, "
        f"noise σ²={gi.noise_variance:g} (cos to centre {sim.mean():.3f}); DPM-Solver++ {gi.steps} steps, "
        f"guidance {gi.guidance:g}"
    )
    meta = {
        "generator": "idsync",
        "num_classes": g.identities,
        "image_size": model.image_size,
        "seed": seed,
        "model": str(gi.model),
        "model_fingerprint": info.get("fingerprint"),
        "encoder": info.get("encoder"),
        "identity_weight": info.get("identity_weight"),
        "identity_loss": info.get("identity_loss"),
        "noise_variance": gi.noise_variance,
        "steps": gi.steps,
        "guidance": gi.guidance,
        "solver": f"dpmsolver++ order {gi.solver_order}",
        "pca_components": len(pca.variances_),
        "centre_vectors": mean is not None,
        "idsync": gi.model_dump(mode="json"),
    }
    if mix is not None:
        meta["mixup"] = {"phi": ratio_grid(g.mixup.phi).tolist(), "mixed_images": int(mix.mixed.sum())}
    sampler = make_sampler(model, gi)

    def batches(start: int):
        for s in range(start, len(vecs), g.batch_size):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + s)
            imgs = to_uint8(sample_images(model, torch.from_numpy(vecs[s : s + g.batch_size]), gi, gen, sampler))
            yield (
                imgs,
                [
                    {"similarity_to_centre": round(float(sim[s + k]), 5), "noise_variance": gi.noise_variance}
                    for k in range(len(imgs))
                ],
            )

    written = write_generated(g, meta, labels, batches, name="idsync", format_version=FORMAT_VERSION, mix=mix, log=log)
    log(
        f"idsync: {written.images} images in {written.seconds:.0f}s ({written.images_per_second:.2f} img/s at "
        f"{gi.steps} steps)"
    )

    if reporting.active():
        from facefoundry.data.sources import open_source
        from facefoundry.plots import image_grid

        src = open_source(g.out)
        rows = []
        for c in range(min(gi.grid_identities, g.identities)):
            idx = np.flatnonzero(src.labels == c)[:8]
            rows.append([src.load(int(i)) for i in idx])
        reporting.image(image_grid(rows), "samples/idsync_grid.png")
        metrics = {
            "generation_images_per_second": written.images_per_second,
            "similarity_to_centre": float(sim.mean()),
            "conditioning_effect": conditioning_effect(model, torch.from_numpy(centres), gi, seed),
        }
        if gi.judge_images:  # an encoder that did not teach this generator first (quality.judge)
            from facefoundry.identity import load_encoder
            from facefoundry.identity.judge import sample_balanced
            from facefoundry.quality.judging import study_judges

            pick = sample_balanced(src.labels, gi.judge_images, np.random.default_rng([seed, 43]))
            imgs = np.stack([src.load(int(i)) for i in pick])
            teacher = info.get("encoder") or info.get("encoder_name")
            names = study_judges(cfg.identity.judges, cfg.quality.judge, cfg.quality.judge_order, teacher)
            judges = {n: load_encoder(n).to(device).eval() for n in names}
            metrics.update(judge_study(imgs, src.labels[pick], judges))
        reporting.metrics(metrics)
    return Path(g.out)
