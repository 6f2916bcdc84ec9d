"""``voip-probe watch``: the schedule (fake clock) and interval parsing."""

from __future__ import annotations

import pytest

from probe.cli.common import UsageError
from probe.cli.watch import Watcher, parse_interval


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("2h", 7200), ("90s", 90),
                                          ("1.5h", 5400), ("15", 900), (" 1 d ", 86400)])
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0s", "10 weeks"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--every"):
        parse_interval(text)


def test_runs_start_every_interval_from_the_previous_start() -> None:
    fake = FakeClock()
    starts: list[float] = []

    def run(n: int) -> None:
        starts.append(fake.now)
        fake.now += 100  # each run takes 100 s

    w = Watcher(1800, count=3, clock=fake.clock, sleep=fake.sleep)
    assert w.loop(run) == 3
    assert starts == [1000, 2800, 4600]
    assert fake.sleeps == [1700, 1700] and w.late == []


def test_a_run_longer_than_the_interval_is_followed_at_once() -> None:
    fake = FakeClock()
    starts: list[float] = []
    durations = iter([50, 400, 50])

    def run(n: int) -> None:
        starts.append(fake.now)
        fake.now += next(durations)

    w = Watcher(300, count=3, clock=fake.clock, sleep=fake.sleep)
    w.loop(run)
    assert starts == [1000, 1300, 1700] and w.late == [2]


def test_ctrl_c_while_waiting_propagates_after_counting_runs() -> None:
    fake = FakeClock()

    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    w = Watcher(60, clock=fake.clock, sleep=sleep)
    with pytest.raises(KeyboardInterrupt):
        w.loop(lambda n: None)
    assert w.runs == 1


def test_watch_takes_every_option_of_run() -> None:
    """A watch run is a `run`: its options must not drift apart."""
    from probe.cli import _load_commands, app

    _load_commands()
    import typer.main

    group = typer.main.get_command(app)
    options = {name: {o for p in cmd.params for o in getattr(p, "opts", [])}
               for name, cmd in group.commands.items()  # type: ignore[attr-defined]
               if name in ("run", "watch")}
    missing = options["run"] - options["watch"] - {"--json"}
    assert missing == set()
    assert {"--every", "--count", "--collector", "--upload"} <= options["watch"]
