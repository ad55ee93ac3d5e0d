import numpy as np
import pytest

from facefoundry.errors import FaceFoundryError
from facefoundry.fusion.select import SourceIdentities, candidate_order, quotas, select


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _source(name: str, centres: np.ndarray, variance=None) -> SourceIdentities:
    n = len(centres)
    return SourceIdentities(
        name, np.arange(n), _unit(centres), np.zeros(n) if variance is None else np.asarray(variance)
    )


def test_quotas_shares_add_up_exactly_and_counts_pass_through():
    assert quotas({"a": 50, "b": 50}, {}, {"a": 0.5, "b": 0.5}, 10) == {"a": 5, "b": 5}
    assert quotas({"a": 50, "b": 50, "c": 50}, {}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10) in (
        {"a": 4, "b": 3, "c": 3},
        {"a": 3, "b": 4, "c": 3},
        {"a": 3, "b": 3, "c": 4},
    )
    assert sum(quotas({"a": 9, "b": 9}, {}, {"a": 0.3, "b": 0.7}, 7).values()) == 7
    assert quotas({"a": 9, "b": 4}, {"a": 2}, {}, None) == {"a": 2, "b": 4}  # b: all it has


def test_intra_variance_strategy_takes_the_most_varied_first():
    src = _source("a", np.eye(4), variance=[0.1, 0.4, 0.2, 0.3])
    assert candidate_order(src, "intra_variance", np.random.default_rng(0)) == [1, 3, 2, 0]
    src.excluded = {1}
    assert candidate_order(src, "intra_variance", np.random.default_rng(0)) == [3, 2, 0]


def _overlapping_pair():
    a = _source("a", np.eye(6)[:3])  # identities along axes 0, 1, 2
    b_c = np.eye(6)[[1, 3, 4, 5]].copy()
    b_c[0] += 0.05 * np.eye(6)[5]  # b's identity 0 is a's identity 1
    return a, _source("b", b_c)


def test_drop_replaces_an_overlapping_identity_and_keeps_the_count():
    a, b = _overlapping_pair()
    sel = select([a, b], {"a": 3, "b": 3}, "intra_variance", "drop", 0.65, seed=0)
    assert sel.taken["b"] == [1, 2, 3] and sel.dropped["b"] == [0]
    assert sel.num_classes == 6
    assert [(p["a_label"], p["b_label"]) for p in sel.overlaps] == [(1, 0)]
    assert sorted(v for t in sel.target.values() for v in t.values()) == list(range(6))  # one contiguous range


def test_merge_gives_the_overlapping_identity_the_earlier_label():
    a, b = _overlapping_pair()
    sel = select([a, b], {"a": 3, "b": 4}, "intra_variance", "merge", 0.65, seed=0)
    assert sel.merged["b"] == [0] and sel.target["b"][0] == sel.target["a"][1]
    assert sel.num_classes == 6


def test_keep_keeps_both_and_too_few_identities_is_a_clear_error():
    a, b = _overlapping_pair()
    assert select([a, b], {"a": 3, "b": 4}, "uniform", "keep", 0.65, seed=0).num_classes == 7
    with pytest.raises(FaceFoundryError, match=r"fuse.sources.b: 4 identities wanted, only 3 available"):
        select([a, b], {"a": 3, "b": 4}, "uniform", "drop", 0.65, seed=0)
    # all of b (neither a count nor a share): what the overlap check leaves of it, no error
    every = select([a, b], {"a": 3, "b": 4}, "uniform", "drop", 0.65, seed=0, every=frozenset({"b"}))
    assert len(every.taken["b"]) == 3 and len(every.dropped["b"]) == 1 and every.num_classes == 6


def test_identities_alike_within_one_source_are_not_an_overlap():
    a = _source("a", np.eye(4)[[0, 0, 1, 2]] + 0.01 * np.eye(4)[[1, 2, 3, 3]])  # a's 0 and 1 nearly equal
    b = _source("b", np.eye(4)[[3]])
    sel = select([a, b], {"a": 4, "b": 1}, "uniform", "drop", 0.65, seed=0)
    assert sel.num_classes == 5 and sel.dropped == {"a": [], "b": []}
