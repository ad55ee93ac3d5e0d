import pytest

from facefoundry.io import atomic_dir, atomic_write_text


def test_atomic_dir_keeps_previous_on_failure(tmp_path):
    out = tmp_path / "ds"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-way")
    assert (out / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp debris


def test_atomic_dir_replaces_on_success(tmp_path):
    out = tmp_path / "ds"
    for text in ("one", "two"):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text(text)
    assert (out / "a.txt").read_text() == "two"


def test_atomic_write_text(tmp_path):
    atomic_write_text(tmp_path / "x" / "y.txt", "hello")
    assert (tmp_path / "x" / "y.txt").read_text() == "hello"
    assert len(list((tmp_path / "x").iterdir())) == 1
