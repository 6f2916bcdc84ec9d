"""Exit codes and error handling shared by every command.

Exit codes (DESIGN.md): 0 completed, nothing blocked; 1 completed, blocking or
impairment found; 2 usage or configuration error; 3 completed but inconclusive
(network offline); 4 internal error.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3
EXIT_INTERNAL = 4

T = TypeVar("T")


class UsageError(Exception):
    """Bad options, files or configuration: reported in one line, exit 2."""


def stderr_console() -> Any:
    from rich.console import Console

    # soft_wrap: messages stay on one line in logs and pipes (tables still fit the width).
    return Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    stderr_console().print(f"[bold red]error:[/] {message}", highlight=False)
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
