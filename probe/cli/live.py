"""The live view of a run on stderr: progress per pass, what runs, what failed."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from probe.runner import Progress


class LiveView:
    """A rich Live display fed by runner progress events (works without a terminal too:
    then failures are printed as lines and the bar is left out)."""

    def __init__(self, console: Any, max_failures: int = 6) -> None:
        self.console = console
        self.pass_name = "main"
        self.total = 0
        self.done = 0
        self.failed = 0
        self.running: dict[str, float] = {}
        self.failures: deque[str] = deque(maxlen=max_failures)
        self._live: Any = None

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=8,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, ev: Progress) -> None:
        from rich.markup import escape

        if ev.kind == "pass_start":
            if self._live is None and self.total:
                self._print_pass_line()
            self.pass_name, self.total, self.done, self.failed = ev.pass_name, ev.total, 0, 0
            if ev.pass_name == "confirmation":
                self.console.print(f"re-checking {ev.total} failed checks once more "
                                   "(a failure counts only if it repeats)", highlight=False)
        elif ev.kind == "check_start" and ev.endpoint is not None:
            self.running[_label(ev)] = time.monotonic()
        elif ev.kind == "check_done" and ev.endpoint is not None:
            self.running.pop(_label(ev), None)
            self.done += 1
            failure = (ev.record or {}).get("test_keys", {}).get("failure")
            if failure is not None:
                self.failed += 1
                # Targets and failure texts are data (an IPv6 URL's "[...]" included).
                line = f"[red]✗[/] {escape(_label(ev))}  [dim]{escape(str(failure))}[/]"
                self.failures.append(line)
        if self._live is not None:
            self._live.update(self._render())
        elif ev.kind == "check_done" and self.done == self.total:
            self._print_pass_line()

    def _print_pass_line(self) -> None:
        # Without a terminal (logs, cron), one line per pass instead of a live display.
        if self.total and not getattr(self, "_printed_" + self.pass_name, False):
            setattr(self, "_printed_" + self.pass_name, True)
            self.console.print(f"{self.pass_name} pass: {self.done}/{self.total} checks done, "
                               f"{self.failed} failed", highlight=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.markup import escape
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        head = Text.from_markup(
            f"[bold]{self.pass_name} pass[/]  {self.done}/{self.total} checks, "
            f"[red]{self.failed} failed[/]")
        bar = ProgressBar(total=max(self.total, 1), completed=self.done, width=50)
        now = time.monotonic()
        oldest = sorted(self.running.items(), key=lambda kv: kv[1])[:5]
        running = [Text.from_markup(f"[cyan]…[/] {escape(k)} [dim]{now - t:.1f}s[/]")
                   for k, t in oldest]
        if len(self.running) > 5:
            running.append(Text(f"  and {len(self.running) - 5} more running"))
        fails = [Text.from_markup(f) for f in self.failures]
        return Group(head, bar, *running, *fails)


def _label(ev: Progress) -> str:
    ep = ev.endpoint
    assert ep is not None
    return f"{ep.service}/{ep.function} {ep.input}"
