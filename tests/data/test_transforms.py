"""FaceAugment: off by default, reproducible under a seed, each transform does what it says."""

import torch

from facefoundry.config import AugmentCfg
from facefoundry.data.transforms import FaceAugment


def batch(n: int = 16, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_default_config_changes_nothing() -> None:
    x = batch()
    aug = FaceAugment(AugmentCfg())
    assert not aug.active and aug(x) is x


def test_reproducible_under_the_global_seed_and_in_range() -> None:
    aug = FaceAugment(affine_prob=0.5, color_prob=0.5, grey_prob=0.3, blur_prob=0.3)
    x = batch()
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    assert a.min() >= -1 - 1e-5 and a.max() <= 1 + 1e-5


def test_each_transform() -> None:
    x = batch()
    grey = FaceAugment(grey_prob=1.0)(x)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    blur = FaceAugment(blur_prob=1.0, blur_sigma=(1.0, 1.0))(x)
    assert blur.std() < x.std() * 0.7  # noise loses most of its variance
    assert torch.allclose(blur.mean(), x.mean(), atol=0.02)
    still = FaceAugment(affine_prob=1.0, rotate=0.0, scale=(1.0, 1.0), translate=0.0)(x)
    assert torch.allclose(still, x, atol=1e-5)  # the identity transform is exact (align_corners=False)
    shifted = FaceAugment(affine_prob=1.0, rotate=0.0, scale=(1.0, 1.0), translate=0.2)(x)
    assert not torch.allclose(shifted, x, atol=1e-3)
    dark = FaceAugment(color_prob=1.0, brightness=0.0, contrast=0.0, saturation=1.0)(torch.zeros(4, 3, 8, 8))
    assert torch.allclose(dark, torch.zeros(4, 3, 8, 8))  # a grey image has no saturation to change
