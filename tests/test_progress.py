"""Progress lines when stderr is not a terminal."""

from __future__ import annotations

import io

from probe.progress import LineProgress, NoProgress, progress_bar


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_at_most_every_few_seconds_and_at_the_end():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(40, "sweep", "runs", every=5.0, stream=out, clock=clock)
    for t in range(1, 13):  # one update per second
        clock.now = float(t)
        bar.update()
    bar.close()
    bar.close()  # closing twice prints once
    assert out.getvalue().splitlines() == ["sweep: 5/40 runs (12%), 5 s", "sweep: 10/40 runs (25%), 10 s",
                                           "sweep: 12/40 runs (30%), 12 s"]


def test_not_a_terminal_gives_lines_and_disabled_gives_nothing(capsys):
    assert isinstance(progress_bar(3, "analyze", "analyses", enabled=False), NoProgress)
    bar = progress_bar(3, "analyze", "analyses")  # pytest captures stderr: not a terminal
    assert isinstance(bar, LineProgress)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err.strip().startswith("analyze: 3/3 analyses (100%)")
