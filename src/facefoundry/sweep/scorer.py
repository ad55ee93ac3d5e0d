"""Per-epoch validation of a sweep trial: the backbone's accuracy on the validation benchmark after each
epoch, which the trial reports to Ray Tune so ASHA can stop it early.
"""

from __future__ import annotations

import time

from facefoundry.config import Config


class EpochScorer:
    """The current backbone's k-fold accuracy on the validation benchmark (pure: no tracking, no RNG).

    Runs in eval mode under ``no_grad`` and restores the mode, so training continues exactly as it
    would have without it (the trainer re-seeds every epoch).
    """

    def __init__(self, cfg: Config, name: str, path: str, pairs: int = 0, flip: bool | None = None):
        from facefoundry.verification.binfile import read_bin

        self.cfg, self.name = cfg, name
        ps = read_bin(path)
        if pairs and pairs < len(ps.issame):
            ps.images, ps.issame = ps.images[: 2 * pairs], ps.issame[:pairs]
        self.pairs = ps
        self.flip = cfg.evaluate.flip if flip is None else flip
        self.seconds = 0.0

    def __call__(self, trainer) -> float:
        import torch

        from facefoundry.data.transforms import resize_uint8
        from facefoundry.verification.protocol import embed, evaluate_pairs

        t0 = time.perf_counter()
        e = self.cfg.evaluate
        model = trainer.backbone
        was = model.training
        model.eval()
        try:
            images = self.pairs.images
            if images.shape[1] != trainer.size:
                images = resize_uint8(images, trainer.size)
            with torch.no_grad():
                emb = embed(model.embed_raw, images, trainer.preprocess, e.batch_size, self.flip, trainer.device)
        finally:
            model.train(was)
        res = evaluate_pairs(self.name, emb, self.pairs.issame, e.nfolds, e.distance, e.far_targets)
        self.seconds += time.perf_counter() - t0
        return float(res.accuracy)
