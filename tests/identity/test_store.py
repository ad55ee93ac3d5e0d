"""The content-addressed embedding store: an image is embedded once per encoder, and a stored vector is the
vector the encoder computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facefoundry.data.sources import open_source
from facefoundry.identity.base import EncoderInput, IdentityEncoder
from facefoundry.identity.store import EmbeddingStore, embed_rows, source_keys
from tests.conftest import make_dataset


class CountingEncoder(IdentityEncoder):
    """Mean colour per image quadrant, unit-normalised; counts the images it embeds."""

    name = "counting"

    def __init__(self):
        super().__init__()
        self.dim = 12
        self.input = EncoderInput("RGB", 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "template")
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += len(images)
        q = torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)
        return torch.nn.functional.normalize(q, dim=1)

    def spec(self) -> dict:
        return {"name": self.name, "dim": self.dim}


@pytest.fixture
def store_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFOUNDRY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"


def test_second_ask_reads_the_store_and_equals_a_fresh_embedding(tmp_path, store_root):
    src = open_source(make_dataset(tmp_path / "ds", 4, 5))
    enc = CountingEncoder()
    rows = np.arange(len(src))
    first = embed_rows(src.load, rows, enc, 7, "", source_keys(src, rows))
    assert enc.calls == 21 and len(list(store_root.glob("counting-*.sqlite"))) == 1  # 20 + a full last batch
    again = embed_rows(src.load, rows[::-1], enc, 7, "", source_keys(src, rows[::-1]))  # another order
    assert enc.calls == 21  # nothing embedded twice
    assert np.array_equal(again, first[::-1])
    assert np.array_equal(embed_rows(src.load, rows[:3], enc, 7, "", source_keys(src, rows[:3])), first[:3])
    fresh = enc.embed(np.stack([src.load(int(i)) for i in rows]), 64)
    assert np.array_equal(first, fresh) and enc.calls == 41


def test_a_copy_of_an_image_in_another_dataset_shares_its_vector(tmp_path, store_root):
    a = open_source(make_dataset(tmp_path / "a", 3, 4, seed=1))
    b = open_source(make_dataset(tmp_path / "b", 3, 4, seed=1))  # the same bytes under another folder
    enc = CountingEncoder()
    embed_rows(a.load, np.arange(len(a)), enc, 8, "", source_keys(a, np.arange(len(a))))
    embed_rows(b.load, np.arange(len(b)), enc, 8, "", source_keys(b, np.arange(len(b))))
    assert enc.calls == 16  # a's 12 images in two full batches of 8; b's all from the store


def test_rows_without_a_recorded_hash_are_computed_each_time(tmp_path, store_root):
    src = open_source(make_dataset(tmp_path / "ds", 2, 3))
    enc = CountingEncoder()
    keys = [None] * len(src)
    embed_rows(src.load, np.arange(len(src)), enc, 8, "", keys)
    embed_rows(src.load, np.arange(len(src)), enc, 8, "", keys)
    assert enc.calls == 12


def test_an_unreadable_store_means_computing_again(tmp_path, store_root):
    src = open_source(make_dataset(tmp_path / "ds", 2, 3))
    enc = CountingEncoder()
    path = EmbeddingStore(enc, 8).path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database")
    rows = np.arange(len(src))
    out = embed_rows(src.load, rows, enc, 8, "", source_keys(src, rows))
    assert enc.calls == 8 and np.allclose(np.linalg.norm(out, axis=1), 1)  # 6 in one full batch of 8
