"""Exit codes and error handling shared by every command.

Exit codes (DESIGN.md): 0 completed, nothing blocked; 1 completed, blocking or
impairment found; 2 usage or configuration error; 3 completed but inconclusive
(network offline); 4 internal error.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from probe.analysis.summaries import RunSummary

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3
EXIT_INTERNAL = 4

T = TypeVar("T")


class UsageError(Exception):
    """Bad options, files or configuration: reported in one line, exit 2."""


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_duration(text: str, option: str, bare_unit: str = "m") -> float:
    """``30m``, ``1h``, ``90s``, ``1.5h``, ``2d`` -> seconds (a bare number is in
    ``bare_unit``); a :class:`UsageError` naming ``option`` otherwise."""
    match = _DURATION_RE.match(text)
    if not match:
        raise UsageError(f"{option} {text!r}: give a duration such as 30m, 2h or 90s")
    seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or bare_unit).lower()]
    if seconds <= 0:
        raise UsageError(f"{option} {text!r}: the duration must be more than zero")
    return seconds


def stderr_console() -> Any:
    from rich.console import Console

    # soft_wrap: messages stay on one line in logs and pipes (tables still fit the width).
    return Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One ``error:`` line; the message is text (it often quotes a file, a server or an
    exception), never markup."""
    from rich.markup import escape

    stderr_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def command_boundary() -> Iterator[None]:
    """Turn library exceptions into documented exit codes and one clear message."""
    from probe.targets import TargetsError

    try:
        yield
    except typer.Exit:
        raise
    except (UsageError, TargetsError) as exc:
        fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        stderr_console().print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: say so, keep the traceback for the report
        traceback.print_exc(file=sys.stderr)
        fail(f"internal error: {exc!r} (please report this with the traceback above)",
             EXIT_INTERNAL)


def run_guarded(fn: Callable[[], T]) -> T:
    with command_boundary():
        return fn()
    raise AssertionError("unreachable")


def warner(console: Console) -> Callable[[str], None]:
    """A ``warn(message)`` that prints one yellow warning line on ``console``."""

    def warn(message: str) -> None:
        from rich.markup import escape

        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    return warn


def load_run(path: Path, warn: Callable[[str], None]) -> RunSummary:
    """The run summary of one results file (recomputed if it has none); a usage error when
    the file cannot be read or no summary can be had (after ``warn`` said why)."""
    from probe.analysis.summaries import load_summary
    from probe.results import ResultsError

    try:
        summary = load_summary(path, warn)
    except (ResultsError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if summary is None:
        raise UsageError(f"{path}: no run summary could be read (see the warning)")
    return summary


def tracked_files(paths: list[Path], console: Console) -> tuple[list[Path], Iterable[Path]]:
    """The results files PATHS name (a usage error when a path is missing or there is none),
    and the same files behind a progress bar on ``console`` for reading their summaries."""
    from rich.progress import track

    from probe.results import ResultsError, expand_paths

    try:
        files = expand_paths(paths)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    if not files:
        raise UsageError(f"no results files (*.jsonl, *.jsonl.gz) in "
                         f"{', '.join(map(str, paths))}")
    return files, track(files, description="reading run summaries", console=console,
                        transient=True, disable=not console.is_terminal)
