"""The community verification protocol as pure functions: embed → distances → k-fold.

Matches insightface's ``verification.py``: embeddings of an image and its mirror are
summed then ℓ2-normalised; squared euclidean distance is thresholded on the grid
``arange(0, 4, 0.01)``; 10 contiguous folds, the threshold chosen on 9 and accuracy
measured on the held-out one. TAR@FAR and ROC are computed on all pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from facefoundry.data.transforms import Preprocess
from facefoundry.progress import track

EUCLIDEAN_GRID = np.arange(0, 4, 0.01)
COSINE_GRID = np.arange(-1, 1, 0.005)


@torch.no_grad()
def embed(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    preprocess: Preprocess,
    batch_size: int = 256,
    flip: bool = True,
    device: str | torch.device = "cpu",
    desc: str = "",
) -> np.ndarray:
    """Unnormalised embeddings of images (+ mirrored images), summed and ℓ2-normalised.

    A ``desc`` shows progress under that name (output only; the result is the same).
    """
    out = []
    with track(total=len(images), desc=desc, unit="img", disable=not desc) as bar:
        for start in range(0, len(images), batch_size):
            x = preprocess(torch.from_numpy(images[start : start + batch_size])).to(device)
            e = forward(x)
            if flip:
                e = e + forward(x.flip(-1))
            out.append(torch.nn.functional.normalize(e.float(), dim=1).cpu())
            bar.update(len(x))
    return torch.cat(out).numpy()


def pair_scores(emb: np.ndarray, distance: str = "euclidean") -> np.ndarray:
    """Per-pair score where *lower means same* (squared distance, or negated cosine)."""
    a, b = emb[0::2], emb[1::2]
    scores: np.ndarray
    if distance == "euclidean":
        scores = np.sum((a - b) ** 2, axis=1)
        return scores
    scores = -np.sum(a * b, axis=1)
    return scores


def _acc(scores: np.ndarray, issame: np.ndarray, thr: float) -> float:
    return float(np.mean((scores < thr) == issame))


def kfold_accuracy(
    scores: np.ndarray, issame: np.ndarray, thresholds: np.ndarray, nfolds: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold test accuracy and the threshold picked on the other folds.

    Folds are contiguous (sklearn ``KFold(shuffle=False)``), so results match the
    insightface scripts on the same embeddings.
    """
    n = len(scores)
    if n < nfolds:
        raise ValueError(f"{n} pairs cannot be split into {nfolds} folds")
    folds = np.array_split(np.arange(n), nfolds)
    accs, thrs = np.zeros(nfolds), np.zeros(nfolds)
    for k, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        train_acc = [_acc(scores[train], issame[train], t) for t in thresholds]
        best = thresholds[int(np.argmax(train_acc))]
        thrs[k] = best
        accs[k] = _acc(scores[test], issame[test], best)
    return accs, thrs


def roc(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FPR, TPR, thresholds) sweeping the acceptance threshold over every score."""
    order = np.argsort(scores, kind="mergesort")
    s, same = scores[order], issame[order]
    tp = np.cumsum(same)
    fp = np.cumsum(~same)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # one point per distinct score
    tpr = np.r_[0.0, tp[last] / max(1, same.sum())]
    fpr = np.r_[0.0, fp[last] / max(1, (~same).sum())]
    return fpr, tpr, np.r_[-np.inf, s[last]]


def tar_at_far(scores: np.ndarray, issame: np.ndarray, fars: list[float]) -> dict[float, float]:
    """TAR at each FAR that the negatives can resolve (FAR ≥ 1 / #negatives)."""
    neg = np.sort(scores[~issame])
    pos = scores[issame]
    out = {}
    for far in fars:
        allowed = int(np.floor(far * len(neg)))
        if allowed < 1:
            continue
        thr = neg[allowed]  # accept score < thr: exactly `allowed` negatives pass (ties aside)
        out[far] = float(np.mean(pos < thr))
    return out


@dataclass
class VerificationResult:
    name: str
    pairs: int
    accuracy: float
    accuracy_std: float
    threshold: float
    fold_accuracies: list[float]
    auc: float
    tar_at_far: dict[float, float]
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    pos_scores: np.ndarray = field(repr=False)
    neg_scores: np.ndarray = field(repr=False)
    embed_seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        m = {
            f"{self.name}/accuracy": self.accuracy,
            f"{self.name}/accuracy_std": self.accuracy_std,
            f"{self.name}/threshold": self.threshold,
            f"{self.name}/auc": self.auc,
        }
        for far, tar in self.tar_at_far.items():
            m[f"{self.name}/tar_at_far_{far:.0e}"] = tar
        return m


def evaluate_pairs(
    name: str,
    emb: np.ndarray,
    issame: np.ndarray,
    nfolds: int = 10,
    distance: str = "euclidean",
    fars: list[float] | None = None,
) -> VerificationResult:
    scores = pair_scores(emb, distance)
    grid = EUCLIDEAN_GRID if distance == "euclidean" else COSINE_GRID
    accs, thrs = kfold_accuracy(scores, issame, grid, nfolds)
    fpr, tpr, _ = roc(scores, issame)
    return VerificationResult(
        name=name,
        pairs=len(issame),
        accuracy=float(accs.mean()),
        accuracy_std=float(accs.std()),
        threshold=float(np.mean(thrs)),
        fold_accuracies=accs.tolist(),
        auc=float(np.trapezoid(tpr, fpr)),
        tar_at_far=tar_at_far(scores, issame, fars or []),
        fpr=fpr,
        tpr=tpr,
        pos_scores=scores[issame],
        neg_scores=scores[~issame],
    )
