"""``voip-probe reflector``: run the UDP echo and STUN responder (DESIGN.md "Reflector")."""

from __future__ import annotations

import typer

from probe.cli.app import app
from probe.cli.common import EXIT_USAGE, UsageError, command_boundary, fail, stderr_console
from probe.model import REFLECTOR_DEFAULT_BURST as DEFAULT_BURST
from probe.model import REFLECTOR_DEFAULT_PORTS as DEFAULT_PORTS
from probe.model import REFLECTOR_DEFAULT_RATE as DEFAULT_RATE


@app.command("reflector")
def reflector_command(
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),
    ports: str = typer.Option(DEFAULT_PORTS, "--ports",
                              help="UDP ports: comma-separated numbers and ranges."),
    rate: float = typer.Option(DEFAULT_RATE, "--rate", min=0.001,
                               help="Datagrams per second answered per proven source address."),
    burst: float = typer.Option(DEFAULT_BURST, "--burst", min=1,
                                help="Token-bucket burst per source address."),
    stats_interval: float = typer.Option(60.0, "--stats-interval", min=0.1,
                                         help="Seconds between counter lines on stderr."),
) -> None:
    """Answer STUN Binding requests and echo other datagrams on the given UDP ports, to a
    probe that proved it receives at its address (a cookie, then a token in each datagram).

    Run by the collector's operator abroad; probes point `voip-probe run --reflector` at it.
    Forged sources get no echo; it never sends more bytes than it received, never answers
    a source port below 1024, rate-limits each proven source address, and logs only
    counters, never client addresses.
    """
    import asyncio
    import logging

    from rich.markup import escape

    from probe import reflector

    with command_boundary():
        try:
            port_list = reflector.parse_ports(ports)
        except ValueError as exc:
            raise UsageError(f"--ports: {exc}") from None
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        console = stderr_console()

        async def main() -> None:
            r = await reflector.start(host, port_list, rate=rate, burst=burst)
            for port, reason in sorted(r.failed.items()):
                console.print(f"[yellow]warning:[/] cannot listen on UDP {host}:{port}: "
                              f"{escape(str(reason))}", highlight=False)
            if not r.ports:
                fail(f"could not listen on any port of {host}", EXIT_USAGE)
            console.print(f"reflector listening on {host} UDP ports "
                          f"{','.join(map(str, r.ports))} (rate {rate:g}/s, burst {burst:g} "
                          f"per source)", highlight=False)
            await reflector.serve_forever(r, stats_interval)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            console.print("reflector stopped")
