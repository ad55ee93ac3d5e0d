"""Great Expectations quality gates: clean data passes; each kind of bad manifest or metric fails, named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from facefoundry.config import GatesCfg
from facefoundry.data.manifest import Manifest
from facefoundry.errors import FaceFoundryError
from facefoundry.quality import gates as gates_mod
from facefoundry.quality.gates import GateResult, manifest_frame, manifest_suite, metrics_suite, run_gates

SIZE = 32
# every threshold set, so a clean run exercises each metric column
STRICT = GatesCfg(
    min_images_per_identity=2,
    min_identities=5,
    max_duplicate_images=0,
    max_near_duplicate_images=0,
    max_mislabelled_fraction=0.1,
    max_mislabelled_identities=0,
    min_intra_mean=0.3,
    max_inter_mean=0.2,
    min_separability=0.9,
    max_leaked_identities=0,
)
CLEAN = {
    "identities": 5,
    "duplicate_images": 0,
    "near_duplicate_images": 0,
    "mislabelled_fraction": 0.0,
    "mislabelled_identities": 0,
    "intra_mean": 0.6,
    "inter_mean": 0.05,
    "separability": 1.0,
    "leaked_identities": 0,
    "fid": 12.5,
}


def path_of(i: int, j: int) -> str:
    return f"images/{i:06d}/{j:07d}.png"


def make_manifest(counts: tuple[int, ...] = (4, 4, 4, 4, 4)) -> Manifest:
    """Identity i has counts[i] images of SIZE², each with its own made-up sha256."""
    m = Manifest(meta={"num_classes": len(counts), "image_size": SIZE})
    n = 0
    for i, count in enumerate(counts):
        for j in range(count):
            m.path.append(path_of(i, j))
            m.label.append(i)
            m.identity.append(f"person_{i}")
            m.source.append("test")
            m.params.append("{}")
            m.width.append(SIZE)
            m.height.append(SIZE)
            m.sha256.append(f"{n:064x}")
            n += 1
    return m


def run(
    tmp_path: Path, m: Manifest, metrics: dict | None = None, gates: GatesCfg = STRICT, data_docs: bool = False
) -> GateResult:
    return run_gates(
        manifest_frame(m), CLEAN if metrics is None else metrics, gates, SIZE, tmp_path / "gates", data_docs=data_docs
    )


def assert_failed(result: GateResult) -> None:
    """The result fails, counts one unsuccessful expectation per line, and summary() carries every line."""
    assert not result.success
    assert result.statistics["unsuccessful_expectations"] == len(result.failures) > 0
    summary = result.summary()
    assert summary.startswith(
        f"quality gates: {len(result.failures)} of {result.statistics['evaluated_expectations']} expectations failed: "
    )
    assert "\n" not in summary
    for line in result.failures:
        assert line in summary


def only_line(result: GateResult, *words: str) -> str:
    lines = [f for f in result.failures if all(w in f for w in words)]
    assert len(lines) == 1, (words, result.failures)
    return lines[0]


def test_manifest_frame_counts_images_per_identity() -> None:
    frame = manifest_frame(make_manifest((3, 1, 2)))
    assert list(frame.columns) == [
        "path",
        "label",
        "identity",
        "source",
        "width",
        "height",
        "sha256",
        "identity_images",
    ]
    assert frame["identity_images"].tolist() == [3, 3, 3, 1, 2, 2]
    assert frame["path"].tolist()[3] == path_of(1, 0)
    assert len(manifest_frame(Manifest())) == 0


def test_suites_follow_the_thresholds() -> None:
    def types(suite: Any) -> list[tuple[str, str | None]]:
        return [(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations]

    strict = types(manifest_suite(STRICT, SIZE))
    assert ("expect_column_values_to_be_unique", "sha256") in strict
    assert ("expect_column_values_to_be_between", "width") in strict
    loose = types(manifest_suite(GatesCfg(max_duplicate_images=3, image_size=False), SIZE))
    assert ("expect_column_values_to_be_unique", "sha256") not in loose  # the metric's count covers copies
    assert not {"width", "height"} & {c for _, c in loose}
    assert manifest_suite(STRICT, SIZE).name == "manifest"
    metrics = metrics_suite(GatesCfg(max_duplicate_images=None, max_leaked_identities=None))
    assert metrics.name == "metrics"
    assert [c for _, c in types(metrics)] == ["identities"]  # None = not checked
    assert len(metrics_suite(STRICT).expectations) == 9


def test_clean_dataset_passes_and_writes_results_and_docs(tmp_path: Path) -> None:
    result = run(tmp_path, make_manifest(), data_docs=True)
    assert result.success, result.failures
    assert result.failures == []
    stats = result.statistics
    assert stats["unsuccessful_expectations"] == 0
    assert stats["evaluated_expectations"] == stats["successful_expectations"] >= 9 + 10
    assert result.summary() == f"quality gates: all {stats['evaluated_expectations']} expectations passed"
    assert result.result_json == tmp_path / "gates" / "gx_results.json"
    saved = json.loads(result.result_json.read_text())
    assert saved["success"] is True and set(saved["suites"]) == {"manifest", "metrics"}
    assert all(s["success"] for s in saved["suites"].values())
    assert result.docs_dir is not None and (result.docs_dir / "index.html").is_file()
    assert (tmp_path / "gates") in result.docs_dir.parents
    index = (result.docs_dir / "index.html").read_text()
    assert "manifest" in index and "metrics" in index


def test_duplicate_sha256_fails_with_example_paths(tmp_path: Path) -> None:
    m = make_manifest()
    m.sha256[5] = m.sha256[0]  # identity 1's second image is a copy of identity 0's first
    result = run(tmp_path, m, {**CLEAN, "duplicate_images": 1})
    assert_failed(result)
    line = only_line(result, "manifest:", "sha256")
    assert "not unique" in line and "2 rows" in line
    assert path_of(0, 0) in line and path_of(1, 1) in line
    assert "metrics: duplicate_images = 1, expected ≤ 0" in only_line(result, "metrics: duplicate_images")


def test_identity_with_one_image_fails(tmp_path: Path) -> None:
    result = run(tmp_path, make_manifest((4, 4, 4, 4, 1)))
    assert_failed(result)
    line = only_line(result, "identity_images")
    assert line.startswith("manifest: identity_images")
    assert "≥ 2" in line and "observed 1" in line and path_of(4, 0) in line
    assert "min_images_per_identity" in line


def test_wrong_image_size_fails(tmp_path: Path) -> None:
    m = make_manifest()
    m.width[3] = 31
    m.height[9] = 64
    result = run(tmp_path, m)
    assert_failed(result)
    width, height = only_line(result, "manifest: width"), only_line(result, "manifest: height")
    assert "observed 31" in width and path_of(0, 3) in width and str(SIZE) in width
    assert "observed 64" in height and path_of(2, 1) in height
    assert len(result.failures) == 2
    # image_size False: not checked
    assert run(tmp_path, m, gates=STRICT.model_copy(update={"image_size": False})).success


def test_metric_thresholds_fail_with_observed_values(tmp_path: Path) -> None:
    metrics = {k: v for k, v in CLEAN.items() if k != "intra_mean"}
    metrics.update(leaked_identities=1, mislabelled_identities=3)
    result = run(tmp_path, make_manifest(), metrics)
    assert_failed(result)
    assert "metrics: leaked_identities = 1, expected ≤ 0" in only_line(result, "leaked_identities")
    assert "max_leaked_identities" in only_line(result, "leaked_identities")
    assert "metrics: mislabelled_identities = 3, expected ≤ 0" in only_line(result, "mislabelled_identities")
    assert "metrics: intra_mean was not measured (needed by quality.gates.min_intra_mean)" in result.failures
    assert len(result.failures) == 3
    saved = json.loads(result.result_json.read_text())
    assert saved["success"] is False and saved["failures"] == result.failures
    assert not any(f.startswith("manifest:") for f in result.failures)


def test_unset_thresholds_are_not_checked(tmp_path: Path) -> None:
    loose = GatesCfg(max_duplicate_images=None, max_leaked_identities=None)
    result = run(tmp_path, make_manifest(), {"identities": 5, "leaked_identities": 7}, gates=loose)
    assert result.success, result.failures


def test_runs_never_mix(tmp_path: Path) -> None:
    bad = make_manifest()
    bad.width[0] = 1
    assert not run(tmp_path, bad).success
    result = run(tmp_path, make_manifest())
    assert result.success, result.failures
    stored = list((tmp_path / "gates" / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(stored) == 2  # this run's two suites only


def test_disabled_gates_pass_without_gx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_gx(*args: object, **kw: object) -> None:
        raise AssertionError("GX was called")

    monkeypatch.setattr(gates_mod.gx, "get_context", no_gx)
    m = make_manifest((1,))
    m.width[0] = 5
    result = run(tmp_path, m, {}, gates=GatesCfg(enabled=False))
    assert result.success and result.failures == [] and result.docs_dir is None
    assert result.statistics["evaluated_expectations"] == 0
    assert "disabled" in result.summary()
    assert not (tmp_path / "gates" / "gx").exists()


def test_frame_without_manifest_columns_is_a_user_error(tmp_path: Path) -> None:
    frame = manifest_frame(make_manifest()).drop(columns=["identity_images"])
    with pytest.raises(FaceFoundryError, match="identity_images"):
        run_gates(frame, CLEAN, STRICT, SIZE, tmp_path, data_docs=False)
