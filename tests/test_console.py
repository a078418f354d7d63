"""Output that is not a terminal: no hard-wrapped paths, plain periodic progress lines."""

from __future__ import annotations

import io
import re
import sys

import pytest

from synspill import console as con

LONG = "/tmp/pytest-of-someone/pytest-123/test_a_rather_long_test_name_0/out/runs/yolo/weights/best.pt"


class _Captured:
    """stdout + stderr of the test as pytest captured them (not a TTY)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        r = self.capsys.readouterr()
        return r.out + r.err


@pytest.fixture
def captured(capsys):
    assert not sys.stderr.isatty()
    return _Captured(capsys)


@pytest.mark.parametrize("columns", [None, "40", "80"])
def test_paths_are_never_broken_when_not_a_terminal(captured, monkeypatch, columns):
    from rich.table import Table

    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    c = con._Console(stderr=True, soft_wrap=True)  # as the module's consoles are made
    c.print(f"wrote {LONG} and {LONG}")
    t = Table(title="Where everything is", show_header=False)
    t.add_row("weights", LONG)
    c.print(t)
    out = captured.getvalue()
    assert f"wrote {LONG} and {LONG}\n" in out
    assert LONG in out.split("Where everything is")[1]  # the table cell holds the whole path on one line


def test_log_lines_are_plain_and_whole(captured):
    import logging

    con.setup_logging(False)
    logging.getLogger("synspill.test").info("YOLO data: %s", LONG)
    line = [s for s in captured.getvalue().splitlines() if "YOLO data" in s]
    assert line == [f"INFO YOLO data: {LONG}"]


def test_plain_progress_prints_periodic_lines_with_eta(captured, monkeypatch):
    from rich.markup import escape

    clock = [100.0]
    monkeypatch.setattr(con.time, "monotonic", lambda: clock[0])
    p = con.make_progress()
    assert isinstance(p, con.PlainProgress)  # stderr is not a terminal
    with p:
        p.interval = 30
        t = p.add_task("train [bold]yolo[/]", total=100)
        for i in range(1, 101):
            clock[0] += 1.0  # one step per second
            p.update(t, completed=i, description=escape(f"train yolo [epoch {i // 10 + 1}]"))
    lines = captured.getvalue().splitlines()
    # first update, then every 30 s, then the end
    assert [re.search(r"(\d+)/100", s).group(1) for s in lines] == ["1", "31", "61", "91", "100"]
    assert "eta 0:00:30" in lines[2] or "eta 0:00:39" in lines[2]
    assert lines[1].startswith("[progress] train yolo [epoch 4] 31/100 (31%) elapsed 0:00:31 eta 0:01:09")
    assert "eta" not in lines[-1]


def test_plain_progress_without_total_and_markup(captured):
    p = con.PlainProgress(con.console, interval=0)
    with p:
        t = p.add_task("[bold]reading[/] exports", total=None)
        p.advance(t, 3)
    assert captured.getvalue().splitlines() == ["[progress] reading exports 3 elapsed 0:00:00"]


def test_error_line_stands_alone_after_a_live_bar(monkeypatch):
    """On a terminal, an error clears the bars (no spinner frame left above the error line)."""
    from rich.console import Console

    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, width=80)
    monkeypatch.setattr(con, "console", term)
    with pytest.raises(RuntimeError):
        with con.make_progress() as p:
            p.add_task("working", total=10)
            raise RuntimeError("boom")
    assert p.live.transient
