import re

import pytest

from facefoundry import progress as progress_mod
from facefoundry.progress import track, write_line


@pytest.fixture
def lines(monkeypatch):
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS", "lines")
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS_EVERY", "0")


def test_iterator_yields_exactly_the_items(lines, capfd):
    items = [3, 1, 4, 1, 5]
    assert list(track(items, desc="x")) == items
    assert list(track(iter(items), desc="gen")) == items  # no len(): still every item
    assert list(track([], desc="empty")) == []


def test_lines_carry_count_total_rate_eta_and_a_final_line(lines, capfd):
    for _ in track(range(4), desc="validate render", unit="img"):
        pass
    out, err = capfd.readouterr()
    assert out == ""
    rows = err.strip().splitlines()
    assert len(rows) == 4  # 3 periodic (interval 0; none at 4/4) + the final line
    assert re.match(
        r"\[\d\d:\d\d:\d\d\] validate render: 1/4 img \(25%\), [\d.]+ (img/s|s/img), ETA \d+:\d\d:\d\d$", rows[0]
    )
    assert "4/4 img (100%)" in rows[-1] and "done in 0:00:00" in rows[-1]


def test_context_manager_update_initial_and_postfix(lines, capfd):
    with track(total=10, initial=4, desc="align", unit="photo") as bar:
        bar.update(3)
        bar.set_postfix(misses=2)
        bar.update(3)
    rows = capfd.readouterr().err.strip().splitlines()
    assert "align: 7/10 photo (70%)" in rows[0] and "ETA" in rows[0]
    assert "10/10 photo (100%)" in rows[-1] and rows[-1].endswith("misses=2")
    assert len(rows) == 2


def test_lines_are_periodic(monkeypatch, capfd):
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS", "lines")
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS_EVERY", "3600")
    list(track(range(100), desc="quick"))
    assert capfd.readouterr().err == ""  # work shorter than one interval prints nothing, not even a final line


def test_no_final_line_after_an_error(lines, capfd):
    with pytest.raises(RuntimeError), track(total=5, desc="boom") as bar:
        bar.update(1)
        raise RuntimeError
    assert "done in" not in capfd.readouterr().err


def test_off_and_disable_print_nothing(monkeypatch, capfd):
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS", "off")
    assert list(track(range(3), desc="quiet")) == [0, 1, 2]
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS", "lines")
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS_EVERY", "0")
    with track(total=2, desc="quiet", disable=True) as bar:
        bar.update(2)
    assert capfd.readouterr() == ("", "")


def test_default_mode_follows_the_terminal(monkeypatch):
    monkeypatch.delenv("FACEFOUNDRY_PROGRESS", raising=False)

    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(progress_mod.sys, "stderr", Tty())
    assert progress_mod.progress_mode() == "bar"
    monkeypatch.setattr(progress_mod.sys, "stderr", object())  # no isatty: a log or a pipe
    assert progress_mod.progress_mode() == "lines"
    monkeypatch.setenv("FACEFOUNDRY_PROGRESS", "off")
    assert progress_mod.progress_mode() == "off"


def test_bar_mode_uses_tqdm(monkeypatch, capfd):
    import tqdm

    monkeypatch.setenv("FACEFOUNDRY_PROGRESS", "bar")
    made = []

    class Spy(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", Spy)
    with track(total=3, desc="bar test", unit="img", leave=True) as bar:  # a kept bar shows its end state
        bar.set_postfix(loss="0.5")
        write_line("a log line")  # goes above the bar
        bar.update(3)
    assert made and made[0]["total"] == 3 and made[0]["desc"] == "bar test" and made[0]["unit"] == "img"
    assert list(track([1, 2], desc="it")) == [1, 2]
    err = capfd.readouterr().err
    assert "bar test" in err and "3/3" in err and "img/s" in err and "a log line" in err
    assert progress_mod._screen["bars"] == 0
