"""The typer application object shared by the command modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="voip-probe",
    help=(
        "Measure whether WhatsApp, Skype/Teams, Viber and Google Meet calls are blocked on this "
        "network, and how. Start with `voip-probe run`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: rich help formatting costs ~0.3 s of start-up on every command.
    rich_markup_mode=None,
)
