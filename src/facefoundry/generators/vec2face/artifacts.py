"""What a Vec2Face training run leaves and how it is identified: the file names of the model folder beyond
its networks (the training identity space, the geometry PCA, the nuisance bank), the fingerprint of the
settings, data and encoder a checkpoint or model was made from, and ``reconstruction_grid``, which shows
a model folder's images of its own training identities.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from facefoundry.config import Config, result_settings
from facefoundry.data.sources import FaceSource
from facefoundry.generators.feed import to_uint8
from facefoundry.train.feed import load_resized

ID_VECTORS, ID_LABELS = "id_vectors.npy", "id_labels.npy"  # in the model folder: the training identity space
GEOMETRY_PCA = "geometry_pca.npz"  # in the model folder when vec2face.geometry_codes > 0
NUISANCE_BANK = "nuisance_codes.npy"  # in the model folder when vec2face.nuisance_codes > 0: each photo's code


def fingerprint(cfg: Config, dataset_digest: str, encoder_spec: dict) -> str:
    v = result_settings(cfg.vec2face)  # what changes what is learned (the schema's marks say)
    if not v.get("geometry_codes"):  # off (the paper): fingerprints stay those of models made before the option
        v.pop("geometry_codes", None)
    if not v.get("nuisance_codes"):  # likewise
        for key in ("nuisance_codes", "nuisance_kl_weight", "nuisance_kl_warmup_epochs", "nuisance_channels"):
            v.pop(key, None)
    for key in ("nuisance_free_bits", "nuisance_swap_fraction"):  # added later: at 0 the earlier fingerprints hold
        if not v.get(key):
            v.pop(key, None)
    blob = json.dumps(
        {"vec2face": v, "seed": cfg.base.seed, "data": dataset_digest, "encoder": encoder_spec}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reconstruction_grid(
    model_dir: str | Path, source: FaceSource, n: int = 8, variations: int = 3, seed: int = 0
) -> list[list[np.ndarray]]:
    """Rows of [training photo, ``variations`` images generated from that photo's identity vector]."""
    from facefoundry.generators.vec2face.model import load_model_folder

    model, _ = load_model_folder(model_dir)
    vectors = torch.from_numpy(np.load(Path(model_dir) / ID_VECTORS))
    pick = np.random.default_rng(seed).choice(len(source), size=min(n, len(source)), replace=False)
    g = torch.Generator().manual_seed(seed)
    gen = [to_uint8(model.generate(vectors[pick], generator=g)) for _ in range(variations)]
    return [
        [load_resized(source, int(i), model.image_size)] + [gen[k][r] for k in range(variations)]
        for r, i in enumerate(pick)
    ]
