import pytest

from facefoundry.io import atomic_dir, atomic_write_text


def test_atomic_dir_keeps_previous_on_failure(tmp_path):
    out = tmp_path / "ds"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
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


def test_atomic_write_gives_the_mode_of_a_normal_file(tmp_path):
    import os
    import stat

    from facefoundry.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
