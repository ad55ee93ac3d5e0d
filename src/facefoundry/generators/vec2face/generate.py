"""``facefoundry generate --generator vec2face``: new identities from a trained Vec2Face.

As in the official ``image_generation.py`` (HaiyuWu/Vec2Face), in this order:

1. **Identities** — PCA on the training identity centres (saved in the model folder), a
   multivariate normal in PCA space, inverse transform, then the τ filter: a vector is kept only
   if its cosine to every kept one, and to every training photo's vector, is ≤ τ (no real person
   is copied). ``centred``: τ is measured on the vectors' part orthogonal to the training mean.
   dlib's space has a large component shared by all faces (different people have cosine ≈ 0.8
   there), so a raw τ = 0.3 would be unreachable; centred, different people sit near cosine 0,
   as in ArcFace's space.
2. **AttrOP** (optional) on each centre: Adam on the vector until identity, |yaw| and quality
   targets are met, bounded by ``attrop.max_iters``; what was reached is recorded.
3. **Variations** — v + N(0, σ²) per dimension, σ per image from the mixture (0.3/0.5/0.7 at
   0.4/0.4/0.2), rescaled to the centre's norm, with a floor on the cosine to the centre. The
   paper's σ acts on un-normalised 512-d ArcFace features of norm ≈ 25; here the (centred)
   vector is scaled to ``reference_norm·√(D/512)`` first, which keeps the paper's expected
   cosines (0.96/0.91/0.85) in any dimension D.
4. **Images** — the generator with its generation mask-ratio distribution (min 0.1, mean 0.15,
   σ 0.25), batch by batch, each batch seeded by its offset, through the resumable dataset
   writer: a killed run resumes to the same dataset.

Each image's manifest row records σ, its cosine to the centre, τ and the AttrOP target and
what was reached; the manifest's meta records the settings and the judges' σ study. When an
MLflow run is active, the σ grid (rows identities, columns σ) and the judge metrics go to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facefoundry import reporting
from facefoundry.config import AttrOPCfg, Config, Vec2FaceGenCfg
from facefoundry.device import resolve_device
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.feed import to_uint8
from facefoundry.generators.sampling import uniform_count
from facefoundry.generators.vec2face.artifacts import ID_LABELS, ID_VECTORS, NUISANCE_BANK
from facefoundry.generators.vec2face.model import Vec2Face, load_model_folder
from facefoundry.generators.write import write_generated
from facefoundry.progress import track
from facefoundry.sampling import perturb, sample_identities
from facefoundry.sampling.mixup import draw_partners, mix_vectors, ratio_grid

FORMAT_VERSION = 1  # bump when generation changes, so an old partial run is not resumed


# -- the identity space --------------------------------------------------------------------------


class IdentitySpace:
    """Training identity centres and the map between unit vectors and the space τ and σ act in."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, centred: bool = True):
        v = np.asarray(vectors, np.float64)
        labels = np.asarray(labels)
        uniq, inv = np.unique(labels, return_inverse=True)
        sums = np.zeros((len(uniq), v.shape[1]))
        np.add.at(sums, inv, v)
        self.centres = sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)  # per-identity, unit
        self.mean = self.centres.mean(0) if centred else np.zeros(v.shape[1])
        norm = np.linalg.norm(self.mean)
        self.axis = self.mean / norm if norm > 0 else None  # the shared direction, projected out
        self.photos = v  # every training photo's vector (the τ filter keeps new identities away from them)

    @property
    def dim(self) -> int:
        return self.centres.shape[1]

    def project(self, x: np.ndarray) -> np.ndarray:
        """Remove the component along the training mean (identity when not centred)."""
        x = np.asarray(x, np.float64)
        return x if self.axis is None else x - (x @ self.axis)[..., None] * self.axis

    def to_space(self, unit: np.ndarray) -> np.ndarray:
        """Unit vectors → the space τ and σ act in: the part orthogonal to the training mean.

        ``to_space(to_unit(x))`` is a positive multiple of ``x`` for any ``x`` in that space, so
        cosines measured there survive the trip to unit vectors and back."""
        return self.project(unit)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        u = self.project(x) + self.mean
        return (u / np.linalg.norm(u, axis=-1, keepdims=True).clip(1e-12)).astype(np.float32)


def load_identity_space(model_dir: str | Path, centred: bool) -> IdentitySpace:
    model_dir = Path(model_dir)
    path = model_dir / ID_VECTORS
    if not path.is_file():
        raise FaceFoundryError(
            f"{path}: missing; the Vec2Face model folder must come from train-vec2face "
            "(it saves the training identity vectors there)"
        )
    vectors = np.load(path)
    lp = model_dir / ID_LABELS
    labels = np.load(lp) if lp.is_file() else np.arange(len(vectors))
    return IdentitySpace(vectors, labels, centred)


def new_identities(space: IdentitySpace, n: int, g: Vec2FaceGenCfg, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit identity vectors, pairwise (and to every training photo) ≤ τ in the chosen space."""
    centres = space.to_space(space.centres)
    avoid = space.to_space(space.photos) if g.avoid_training else None
    new = sample_identities(centres, n, g.tau, rng, avoid=avoid, norm="mean", n_components=g.pca_components)
    return space.to_unit(new)


def variations(
    space: IdentitySpace, centres: np.ndarray, per_centre: int, g: Vec2FaceGenCfg, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit vectors [N·per_centre, D], σ per image, cosine to the centre in the σ space)."""
    c = space.to_space(centres)
    norms = np.linalg.norm(c, axis=1, keepdims=True).clip(1e-12)
    ref = g.reference_norm * math.sqrt(space.dim / 512)
    res = perturb(c / norms * ref, per_centre, rng, g.sigmas, g.sigma_weights, g.min_similarity)
    back = space.project(res.vectors.astype(np.float64) / ref * norms[res.centre_index])
    base = c[res.centre_index]
    sim = (back * base).sum(1) / (np.linalg.norm(back, axis=1) * np.linalg.norm(base, axis=1)).clip(1e-12)
    return space.to_unit(back), res.sigma, sim  # projection only shortens the noise: the floor still holds


def nuisance_bank_codes(model_dir: Path, n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training photo index, its nuisance code ``[dim]``) for each of ``n`` images, photos drawn uniformly."""
    path = model_dir / NUISANCE_BANK
    if not path.is_file():
        raise FaceFoundryError(
            f"{path}: missing; generate.vec2face.nuisance_sampling=bank needs a model folder "
            "written by train-vec2face with vec2face.nuisance_codes > 0 (retrain or use posterior)"
        )
    try:
        bank = np.load(path)
    except (OSError, ValueError) as exc:
        raise FaceFoundryError(f"{path}: unreadable nuisance codes ({exc})") from None
    if bank.ndim != 2 or bank.shape[1] != dim or not len(bank) or not np.isfinite(bank).all():
        raise FaceFoundryError(f"{path}: expected finite codes [N, {dim}], got shape {list(bank.shape)}")
    pick = rng.integers(0, len(bank), size=n)
    return pick, bank[pick].astype(np.float32)


# -- AttrOP ------------------------------------------------------------------------------------


def _pose_model(a: AttrOPCfg, cache: Path, seed: int, log: Callable[[str], None]):
    from facefoundry.generators.render.pose_set import train_pose_regressor
    from facefoundry.identity.pose import PoseRegressor

    folder = Path(a.pose_model) if a.pose_model else cache
    if (folder / "config.json").is_file():
        return PoseRegressor.from_pretrained(folder).eval()
    if a.pose_model:
        raise FaceFoundryError(f"{folder}: not a PoseRegressor folder (generate.vec2face.attrop.pose_model)")
    log("AttrOP: training the default pose regressor on renders (known poses)")
    model = train_pose_regressor(seed=seed, log=log)
    model.save_pretrained(folder)
    return model


def run_attrop(
    model: Vec2Face,
    encoder,
    centres: np.ndarray,
    a: AttrOPCfg,
    rng: np.random.Generator,
    pose,
    device: torch.device,
    mask_ratio: float,
    seed: int,
    log: Callable[[str], None],
) -> tuple[np.ndarray, list[dict]]:
    """Optimise each centre (official ``gen_image``); returns the new centres and a record per identity."""
    from facefoundry.identity.pose import sharpness_quality
    from facefoundry.sampling import AttrOPTargets, attrop

    yaw_targets = (
        np.asarray(a.yaw_targets, np.float64)[rng.integers(len(a.yaw_targets), size=len(centres))]
        if a.yaw_targets
        else None
    )
    out = centres.copy()
    records: list[dict] = []
    for s in track(range(0, len(centres), a.batch_size), desc="AttrOP", unit="batch"):
        sl = slice(s, s + a.batch_size)
        gen = torch.Generator(device="cpu").manual_seed(seed + s)

        def decode(v: torch.Tensor, gen: torch.Generator = gen, offset: int = s) -> torch.Tensor:
            gen.manual_seed(seed + offset)  # the same mask at every step: only the vector moves
            return (model(v, mask_ratio=mask_ratio, generator=gen).images.clamp(-1, 1) + 1) / 2

        targets = AttrOPTargets(
            yaw=None if yaw_targets is None else yaw_targets[sl].tolist(),
            yaw_tolerance=a.yaw_tolerance,
            min_identity=a.min_identity,
            quality=a.quality,
            identity_weight=a.identity_weight,
        )
        v = torch.from_numpy(centres[sl]).float().to(device)
        res = attrop(
            v,
            decode,
            encoder,
            targets,
            identity=v,
            pose_fn=pose.yaw if pose is not None else None,
            quality_fn=sharpness_quality if a.quality is not None else None,
            lr=a.lr,
            max_iters=a.max_iters,
        )
        out[sl] = torch.nn.functional.normalize(res.vectors.float(), dim=1).cpu().numpy()
        records.extend(
            {
                "yaw_target": None if yaw_targets is None else float(yaw_targets[s + k]),
                "quality_target": a.quality,
                "identity_reached": _num(res.identity[k]),
                "yaw_reached": _num(res.yaw[k]),
                "quality_reached": _num(res.quality[k]),
                "iterations": int(res.iterations[k]),
                "converged": bool(res.converged[k]),
            }
            for k in range(len(res.iterations))
        )
    conv = np.mean([r["converged"] for r in records])
    log(f"AttrOP: {len(records)} identities, {conv:.0%} met all targets within {a.max_iters} iterations")
    return out, records


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)


# -- judges ------------------------------------------------------------------------------------


def sigma_study(
    model: Vec2Face,
    space: IdentitySpace,
    centres: np.ndarray,
    g: Vec2FaceGenCfg,
    judges: dict,
    device: torch.device,
    seed: int,
    repeats: int = 4,
) -> dict[str, float]:
    """Judge metrics: images of one vector vs of different vectors, and same-identity similarity per σ.

    For ``k`` identities (≈ ``judge_images`` images in all): ``repeats`` images of the centre
    itself (only the mask differs) and ``repeats`` images per σ of the mixture.
    """
    cols = 1 + len(g.sigmas)
    k = max(2, min(len(centres), g.judge_images // (repeats * cols)))
    rng = np.random.default_rng([seed, 31])
    rows, groups, labels = [], [], []
    for i in range(k):
        rows.append(np.repeat(centres[i : i + 1], repeats, 0))
        groups += [0.0] * repeats
        labels += [i] * repeats
        for s in g.sigmas:
            one = g.model_copy(update={"sigmas": [s], "sigma_weights": [1.0]})
            rows.append(variations(space, centres[i : i + 1], repeats, one, rng)[0])
            groups += [float(s)] * repeats
            labels += [i] * repeats
    vecs = torch.from_numpy(np.concatenate(rows)).float().to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed + 7)
    images = (model.generate(vecs, mask_ratio=g.mask_ratio, generator=gen) + 1) / 2
    labels_a, groups_a = np.asarray(labels), np.asarray(groups)
    out: dict[str, float] = {}
    for name, enc in judges.items():
        emb = enc.embed(images.cpu(), batch_size=64)
        sim = emb @ emb.T
        same = labels_a[:, None] == labels_a[None, :]
        zero = (groups_a[:, None] == 0) & (groups_a[None, :] == 0)
        off = ~np.eye(len(emb), dtype=bool)
        out[f"judge_{name}_same_vector"] = float(sim[same & zero & off].mean())
        out[f"judge_{name}_different_vectors"] = float(sim[~same & zero].mean())
        for s in g.sigmas:
            both = (groups_a[:, None] == s) & (groups_a[None, :] == s)
            out[f"judge_{name}_intra_sigma_{s:g}"] = float(sim[same & both & off].mean())
    return out


def sigma_grid(
    model: Vec2Face, space: IdentitySpace, centres: np.ndarray, g: Vec2FaceGenCfg, device: torch.device, seed: int
) -> list[list[np.ndarray]]:
    """Rows = identities, columns = σ = 0 (the centre), then each σ of the mixture."""
    rng = np.random.default_rng([seed, 37])
    rows = []
    gen = torch.Generator(device="cpu").manual_seed(seed + 11)
    for i in range(min(g.grid_identities, len(centres))):
        vecs = [centres[i : i + 1]]
        for s in g.sigmas:
            one = g.model_copy(update={"sigmas": [s], "sigma_weights": [1.0]})
            vecs.append(variations(space, centres[i : i + 1], 1, one, rng)[0])
        imgs = model.generate(
            torch.from_numpy(np.concatenate(vecs)).float().to(device), mask_ratio=g.mask_ratio, generator=gen
        )
        rows.append(list(to_uint8(imgs)))
    return rows


# -- the generator -------------------------------------------------------------------------------


def generate_vec2face(cfg: Config, log: Callable[[str], None] = print) -> Path:
    g, gv = cfg.generate, cfg.generate.vec2face
    device = resolve_device(cfg.base.device)
    model, index = load_model_folder(gv.model, map_location=device)
    space = load_identity_space(gv.model, gv.centred)
    seed = cfg.base.seed
    log(
        f"vec2face: {space.centres.shape[0]} training identities ({index.get('encoder_name', '?')} space, "
        f"{space.dim}-d); sampling {g.identities} at τ={gv.tau}{' (centred)' if gv.centred else ''}"
    )
    t0 = time.perf_counter()
    centres = new_identities(space, g.identities, gv, np.random.default_rng([seed, 21]))
    log(f"vec2face: {g.identities} identities in {time.perf_counter() - t0:.1f}s")
    encoder = None

    def get_encoder():
        nonlocal encoder
        if encoder is None:
            from facefoundry.identity import load_encoder

            encoder = load_encoder(index.get("encoder_name") or cfg.identity.encoder).to(device).eval()
        return encoder

    records: list[dict] = [{} for _ in range(g.identities)]
    if gv.attrop.enabled:
        pose = (
            _pose_model(gv.attrop, Path(gv.model).parent / "pose_regressor", seed, log)
            if gv.attrop.yaw_targets
            else None
        )
        mask = gv.mask_ratio if gv.mask_ratio is not None else model.generate_sampler.expected()
        centres, records = run_attrop(
            model,
            get_encoder(),
            centres,
            gv.attrop,
            np.random.default_rng([seed, 22]),
            pose.to(device) if pose is not None else None,
            device,
            mask,
            seed,
            log,
        )
    per = uniform_count(g)
    vecs, sigma, sim = variations(space, centres, per, gv, np.random.default_rng([seed, 23]))
    labels = np.repeat(np.arange(g.identities), per)
    mix = None
    if g.mixup.enabled:  # SynFace identity mixup with the partner's centre, renormalised (own random stream)
        mix = draw_partners(labels, g.identities, ratio_grid(g.mixup.phi), np.random.default_rng([seed, 51]))
        vecs = mix_vectors(vecs, centres[np.maximum(mix.partner, 0)], mix, renormalise=True)
        log(f"vec2face: identity mixup, {int(mix.mixed.sum())} of {len(vecs)} images mixed (φ from {g.mixup.phi})")
    geometry = borrowed = None
    code_kind = "nuisance" if index.get("nuisance_codes") else "geometry"
    if gv.nuisance_sampling == "bank" and code_kind != "nuisance":
        raise FaceFoundryError(
            f"{gv.model}: generate.vec2face.nuisance_sampling=bank needs a model trained with "
            "vec2face.nuisance_codes > 0"
        )
    if model.attr_dim and gv.nuisance_sampling == "bank":  # one training photo's nuisance code per image
        borrowed, geometry = nuisance_bank_codes(
            Path(gv.model), len(vecs), model.attr_dim, np.random.default_rng([seed, 25])
        )
        log(f"vec2face: {model.attr_dim} nuisance codes per image, each a training photo's")
    elif model.attr_dim:  # each image its own code: pose and expression (geometry) or learned nuisance, N(0, I)
        from facefoundry.identity.attributes import sample_codes

        geometry = sample_codes(len(vecs), model.attr_dim, np.random.default_rng([seed, 24]), gv.geometry_scale)
        if code_kind == "nuisance" and index.get("nuisance_code_std"):  # the training photos' aggregate posterior
            geometry = (
                np.asarray(index["nuisance_code_mean"], np.float32)
                + np.asarray(index["nuisance_code_std"], np.float32) * geometry
            ).astype(np.float32)
        log(f"vec2face: {model.attr_dim} {code_kind} codes per image, spread {gv.geometry_scale:g}")

    judges = {}
    if gv.judge_images:  # the σ study: an encoder that did not teach this generator first (quality.judge)
        from facefoundry.identity import load_encoder
        from facefoundry.quality.judging import study_judges

        teacher = index.get("encoder") or index.get("encoder_name")
        names = study_judges(cfg.identity.judges, cfg.quality.judge, cfg.quality.judge_order, teacher)
        judges = {name: load_encoder(name).to(device).eval() for name in names}
    study = sigma_study(model, space, centres, gv, judges, device, seed) if judges else {}
    for k, val in study.items():
        log(f"vec2face judge: {k} = {val:.4f}")

    mask_note = gv.mask_ratio if gv.mask_ratio is not None else list(map(float, model.config["generate_mask"]))
    meta = {
        "generator": "vec2face",
        "num_classes": g.identities,
        "image_size": model.image_size,
        "seed": seed,
        "model": str(gv.model),
        "model_fingerprint": index.get("fingerprint"),
        "encoder": index.get("encoder"),
        "vec2face": gv.model_dump(mode="json"),
        "mask_ratio": mask_note,
        "judge": study,
    }
    if mix is not None:
        meta["mixup"] = {"phi": ratio_grid(g.mixup.phi).tolist(), "mixed_images": int(mix.mixed.sum())}

    def batches(start: int):
        for s in range(start, len(vecs), g.batch_size):
            gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + s)
            batch = torch.from_numpy(vecs[s : s + g.batch_size]).to(device)
            attrs = None if geometry is None else torch.from_numpy(geometry[s : s + g.batch_size]).to(device)
            imgs = to_uint8(
                model.generate(
                    batch, mask_ratio=gv.mask_ratio, generator=gen, batch_size=g.batch_size, attributes=attrs
                )
            )
            yield imgs, [image_params(s + k) for k in range(len(imgs))]

    def image_params(j: int) -> dict:
        params = {
            "sigma": float(sigma[j]),
            "similarity_to_centre": round(float(sim[j]), 5),
            "tau": gv.tau,
            "attrop": records[int(labels[j])],
        }
        if geometry is not None:
            params[code_kind] = [round(float(c), 3) for c in geometry[j]]
        if borrowed is not None:
            params["nuisance_photo"] = int(borrowed[j])
        return params

    written = write_generated(
        g, meta, labels, batches, name="vec2face", format_version=FORMAT_VERSION, mix=mix, log=log
    )
    log(f"vec2face: {written.images} images in {written.seconds:.0f}s ({written.images_per_second:.1f} img/s)")

    if reporting.active():
        from facefoundry.plots import image_grid

        reporting.image(image_grid(sigma_grid(model, space, centres, gv, device, seed)), "samples/sigma_grid.png")
        metrics = dict(study)
        metrics["generation_images_per_second"] = written.images_per_second
        for s in gv.sigmas:
            metrics[f"similarity_to_centre_sigma_{s:g}"] = float(sim[sigma == s].mean()) if (sigma == s).any() else 0
        if gv.attrop.enabled:
            metrics["attrop_converged"] = float(np.mean([r["converged"] for r in records]))
            metrics["attrop_iterations"] = float(np.mean([r["iterations"] for r in records]))
        reporting.metrics(metrics)
    return Path(g.out)
