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
    app()


__all__ = ["app", "main"]
