"""The ``voip-probe`` command line (typer).

One thin module per command: parse options, call the library, render. Each module
registers its commands on :data:`probe.cli.app.app` when imported; heavy libraries
(scapy, httpx, fastapi, uvicorn) are imported inside the command functions so that
``voip-probe --help`` stays fast. Errors are turned into the documented exit codes at
the command boundary (see :mod:`probe.cli.common`).
"""

from __future__ import annotations

import importlib

from probe.cli.app import app

# Command modules, in the order their commands appear in --help. Add new ones here.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "targets_cmd",
    "reflector",
    "upload",
    "serve",
    "compare",
    "timeline",
    "report",
    "watch",
    "locate",
    "lab",
)


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"probe.cli.{name}")


def main() -> None:
    _load_commands()
    try:
        app()
    finally:
        end_quickly()


def end_quickly() -> None:
    """Spare the process's exit the interpreter's teardown collections.

    When a process ends, CPython runs full garbage collections over every object still
    alive; after a full scan that is ~55,000 objects and ~0.2 s of CPU (measured in the lab,
    ``benchmarks/scan_speed.py`` prints it), spent after the results are written, with the
    user waiting and the scan's two-budget bound running out. Freezing the heap leaves
    those objects out of them; the operating system takes the memory back anyway.
    Everything still runs as before: the commands close their files themselves, atexit
    handlers and threads are unchanged, and objects freed by reference counting are still
    finalized. Called only from the console entry point, as the process ends."""
    import gc

    gc.freeze()


__all__ = ["app", "main"]
