"""Property-based fuzzing (hypothesis) of every input a user hands the platform: manifest rows, `.bin`
benchmarks, sweep specs and experiment files. Malformed input is always one ``FaceFoundryError`` line
naming the file, never another exception and never a hang (each example has a deadline)."""

from __future__ import annotations

import contextlib
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facefoundry.config import load_config
from facefoundry.data.manifest import MANIFEST, read_manifest
from facefoundry.errors import FaceFoundryError
from facefoundry.sweep.spec import load_spec
from facefoundry.verification.binfile import read_bin, write_bin
from tests.conftest import make_dataset

FUZZ = settings(
    max_examples=30, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def one_line(exc: FaceFoundryError, name: str) -> None:
    text = str(exc)
    assert "\n" not in text.strip() and name in text, text


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (hypothesis reruns the test body; pytest's tmp_path is per test)."""
    folder = Path(tempfile.mkdtemp(prefix="ff_fuzz_"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ok_or_one_line(call: Callable[[], object], name: str, must_fail: bool = False) -> None:
    """``call()`` either succeeds (valid input; not when ``must_fail``) or raises one FaceFoundryError line."""
    try:
        call()
    except FaceFoundryError as exc:
        one_line(exc, name)
        return
    assert not must_fail, f"{name}: accepted"


# -- manifest rows -------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)


@pytest.fixture(scope="module")
def good_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("fuzz") / "ds", identities=3, per_identity=2, size=16)


@FUZZ
@given(
    column=st.sampled_from(["label", "path", "identity", "sha256", "mix_label", "mix_weight", "params", "extra"]),
    value=_VALUES,
    row=st.integers(0, 5),
    drop=st.booleans(),
)
def test_fuzzed_manifest_rows_give_one_line(good_dataset, column, value, row, drop) -> None:
    with scratch() as folder:
        shutil.copytree(good_dataset, folder / "ds")
        table = pq.read_table(folder / "ds" / MANIFEST)
        data = table.to_pydict()
        if drop and column in data:
            del data[column]
        else:
            col = list(data.get(column, [None] * table.num_rows))
            col[row % len(col)] = value
            data[column] = col
        try:
            pq.write_table(pa.table(data), folder / "ds" / MANIFEST)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return  # not representable as a column: no file to read
        ok_or_one_line(lambda: read_manifest(folder / "ds"), "ds")


@FUZZ
@given(blob=st.binary(max_size=256))
def test_random_bytes_as_a_manifest_give_one_line(blob) -> None:
    with scratch() as folder:
        (folder / "ds").mkdir()
        (folder / "ds" / MANIFEST).write_bytes(blob)
        ok_or_one_line(lambda: read_manifest(folder / "ds"), MANIFEST, must_fail=True)


# -- .bin benchmarks -----------------------------------------------------------------------------


def _good_bin(path: Path) -> bytes:
    rng = np.random.default_rng(0)
    write_bin(path, rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), [True, False])
    return path.read_bytes()


@FUZZ
@given(cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_truncated_or_corrupted_bins_give_one_line(cut, flips) -> None:
    with scratch() as folder:
        raw = bytearray(_good_bin(folder / "good.bin"))
        raw = raw[: min(cut, len(raw))] if cut < len(raw) else raw
        for pos, val in flips:
            if raw:
                raw[pos % len(raw)] = val
        (folder / "bad.bin").write_bytes(bytes(raw))
        ok_or_one_line(lambda: read_bin(folder / "bad.bin"), "bad.bin")


_PICKLABLE = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=20), st.booleans(), st.floats()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner)),
    max_leaves=10,
)


@FUZZ
@given(obj=_PICKLABLE)
def test_bins_of_wrong_structure_give_one_line(obj) -> None:
    with scratch() as folder:
        (folder / "odd.bin").write_bytes(pickle.dumps(obj))
        ok_or_one_line(lambda: read_bin(folder / "odd.bin"), "odd.bin", must_fail=True)


# -- experiment files and sweep specs ------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "base",
        "train",
        "generate",
        "evaluate",
        "vec2face",
        "nonsense",
        "train.lr",
        "epochs",
        "name",
        "space",
        "search",
        "objective",
        "resources",
        "trials",
        "params",
    ]
)
_YAML_TREE = st.recursive(
    _VALUES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)


@FUZZ
@given(tree=_YAML_TREE)
def test_fuzzed_experiment_files_give_one_line(tree) -> None:
    with scratch() as folder:
        path = folder / "exp.yaml"
        path.write_text(yaml.safe_dump(tree))
        ok_or_one_line(lambda: load_config(folder / "none.yaml", [path], required=False), "exp.yaml")


@FUZZ
@given(text=st.text(max_size=120))
def test_arbitrary_text_as_an_experiment_file_gives_one_line(text) -> None:
    with scratch() as folder:
        path = folder / "exp.yaml"
        path.write_bytes(text.encode("utf-8", "replace"))
        ok_or_one_line(lambda: load_config(folder / "none.yaml", [path], required=False), "exp.yaml")


SMOKE = Path(__file__).resolve().parents[1] / "experiments" / "sweep_smoke.yaml"


@FUZZ
@given(
    section=st.sampled_from(["space", "search", "objective", "resources", "base", "name", "trials", "extra"]),
    value=_YAML_TREE,
)
def test_fuzzed_sweep_specs_give_one_line(section, value) -> None:
    with scratch() as folder:
        spec = yaml.safe_load(SMOKE.read_text())
        spec[section] = value
        path = folder / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        ok_or_one_line(lambda: load_spec(path, out=str(folder / "out")), "spec.yaml")
