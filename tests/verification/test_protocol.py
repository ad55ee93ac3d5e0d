import numpy as np
import pytest
import torch

from facefoundry.data.transforms import Preprocess
from facefoundry.verification.protocol import EUCLIDEAN_GRID, embed, evaluate_pairs, kfold_accuracy, roc, tar_at_far


def test_kfold_matches_hand_computation():
    # Worked by hand: fold 0 (pairs 0,1) picks thr 0.21 from a tie, fold 1 and 2 pick 0.51.
    scores = np.array([0.5, 0.55, 1.0, 2.0, 0.7, 0.2])
    same = np.array([True, False, True, False, False, True])
    accs, thrs = kfold_accuracy(scores, same, EUCLIDEAN_GRID, nfolds=3)
    assert accs.tolist() == [0.5, 0.5, 1.0]
    assert thrs == pytest.approx([0.21, 0.51, 0.51])


def test_tar_at_far_hand_case():
    neg = [0.1, 0.4, 0.9, 1.5, 2.0, 2.5, 3.0, 3.1, 3.2, 3.3]
    pos = [0.05, 0.2, 0.5, 1.0]
    scores = np.array(pos + neg)
    same = np.array([True] * 4 + [False] * 10)
    out = tar_at_far(scores, same, [0.2, 0.1, 0.01])
    assert out == {0.2: 0.75, 0.1: 0.5}  # FAR 0.01 needs ≥ 100 negatives: not reported


def test_roc_ends_and_perfect_auc():
    scores = np.array([0.1, 0.2, 3.0, 3.5])
    same = np.array([True, True, False, False])
    fpr, tpr, _ = roc(scores, same)
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(1.0)


def test_embed_sums_flipped_then_normalises():
    # forward = mean of the left half of each channel → flipping changes the embedding
    def forward(x):
        return x[..., : x.shape[-1] // 2].mean((2, 3))

    img = np.zeros((2, 4, 4, 3), np.uint8)
    img[:, :, :2, 0] = 255  # red on the left
    pre = Preprocess(image_size=4)
    e = embed(forward, img, pre, flip=True)
    x = pre(torch.from_numpy(img))
    expect = torch.nn.functional.normalize(forward(x) + forward(x.flip(-1)), dim=1).numpy()
    assert np.allclose(e, expect) and np.allclose(np.linalg.norm(e, axis=1), 1)
    assert not np.allclose(embed(forward, img, pre, flip=False), e)


def test_evaluate_pairs_returns_every_metric():
    rng = np.random.default_rng(0)
    ids = rng.normal(size=(100, 16))
    emb = np.concatenate(
        [
            np.stack([ids[i], ids[i] + 0.3 * rng.normal(size=16)])
            if i % 2 == 0
            else np.stack([ids[i], ids[(i + 1) % 100]])
            for i in range(100)
        ]
    )
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    same = np.array([i % 2 == 0 for i in range(100)])
    res = evaluate_pairs("toy", emb, same, nfolds=10, fars=[0.1])
    m = res.metrics()
    assert res.accuracy > 0.95 and len(res.fold_accuracies) == 10
    assert {"toy/accuracy", "toy/accuracy_std", "toy/threshold", "toy/auc", "toy/tar_at_far_1e-01"} <= set(m)
    assert all(np.isfinite(v) for v in m.values())
