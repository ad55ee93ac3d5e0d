"""Property-based fuzzing (hypothesis) of every input a user hands the platform: manifest rows, `.bin`
benchmarks, sweep specs and experiment files. Malformed input is always one ``FaceFoundryError`` line
naming the file, never another exception and never a hang (each example has a deadline)."""

from __future__ import annotations

import pickle
import shutil
import tempfile
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

pytestmark = pytest.mark.infra

FUZZ = settings(max_examples=30, deadline=5000, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])


def one_line(exc: FaceFoundryError, name: str) -> None:
    text = str(exc)
    assert "\n" not in text.strip() and name in text, text


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="ff_fuzz_"))


# -- manifest rows -------------------------------------------------------------------------------

_VALUES = st.one_of(st.none(), st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.booleans())


@pytest.fixture(scope="module")
def good_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("fuzz") / "ds", identities=3, per_identity=2, size=16)


@FUZZ
@given(column=st.sampled_from(["label", "path", "identity", "sha256", "mix_label", "mix_weight", "params", "extra"]),
       value=_VALUES, row=st.integers(0, 5), drop=st.booleans())
def test_fuzzed_manifest_rows_give_one_line(good_dataset, column, value, row, drop) -> None:
    folder = scratch()
    try:
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
        try:
            read_manifest(folder / "ds")
        except FaceFoundryError as exc:
            one_line(exc, "ds")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(blob=st.binary(max_size=256))
def test_random_bytes_as_a_manifest_give_one_line(blob) -> None:
    folder = scratch()
    try:
        (folder / "ds").mkdir()
        (folder / "ds" / MANIFEST).write_bytes(blob)
        with pytest.raises(FaceFoundryError) as err:
            read_manifest(folder / "ds")
        one_line(err.value, MANIFEST)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- .bin benchmarks -----------------------------------------------------------------------------

def _good_bin(path: Path) -> bytes:
    rng = np.random.default_rng(0)
    write_bin(path, rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8), [True, False])
    return path.read_bytes()


@FUZZ
@given(cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_truncated_or_corrupted_bins_give_one_line(cut, flips) -> None:
    folder = scratch()
    try:
        raw = bytearray(_good_bin(folder / "good.bin"))
        raw = raw[: min(cut, len(raw))] if cut < len(raw) else raw
        for pos, val in flips:
            if raw:
                raw[pos % len(raw)] = val
        (folder / "bad.bin").write_bytes(bytes(raw))
        try:
            read_bin(folder / "bad.bin")
        except FaceFoundryError as exc:
            one_line(exc, "bad.bin")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_PICKLABLE = st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=20),
                                    st.booleans(), st.floats()),
                          lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner)),
                          max_leaves=10)


@FUZZ
@given(obj=_PICKLABLE)
def test_bins_of_wrong_structure_give_one_line(obj) -> None:
    folder = scratch()
    try:
        (folder / "odd.bin").write_bytes(pickle.dumps(obj))
        with pytest.raises(FaceFoundryError) as err:
            read_bin(folder / "odd.bin")
        one_line(err.value, "odd.bin")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- experiment files and sweep specs ------------------------------------------------------------

_KEYS = st.sampled_from(["base", "train", "generate", "evaluate", "vec2face", "nonsense", "train.lr", "epochs",
                         "name", "space", "search", "objective", "resources", "trials", "params"])
_YAML_TREE = st.recursive(_VALUES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(_KEYS, inner, max_size=4)),
                          max_leaves=12)


@FUZZ
@given(tree=_YAML_TREE)
def test_fuzzed_experiment_files_give_one_line(tree) -> None:
    folder = scratch()
    try:
        path = folder / "exp.yaml"
        path.write_text(yaml.safe_dump(tree))
        try:
            load_config(folder / "none.yaml", [path], required=False)
        except FaceFoundryError as exc:
            one_line(exc, "exp.yaml")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(text=st.text(max_size=120))
def test_arbitrary_text_as_an_experiment_file_gives_one_line(text) -> None:
    folder = scratch()
    try:
        path = folder / "exp.yaml"
        path.write_bytes(text.encode("utf-8", "replace"))
        try:
            load_config(folder / "none.yaml", [path], required=False)
        except FaceFoundryError as exc:
            one_line(exc, "exp.yaml")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


SMOKE = Path(__file__).resolve().parents[2] / "experiments" / "sweep_smoke.yaml"


@FUZZ
@given(section=st.sampled_from(["space", "search", "objective", "resources", "base", "name", "trials", "extra"]),
       value=_YAML_TREE)
def test_fuzzed_sweep_specs_give_one_line(section, value) -> None:
    folder = scratch()
    try:
        spec = yaml.safe_load(SMOKE.read_text())
        spec[section] = value
        path = folder / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        try:
            load_spec(path, out=str(folder / "out"))
        except FaceFoundryError as exc:
            one_line(exc, "spec.yaml")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
