"""``voip-probe serve``: run the collector (FastAPI on uvicorn, the ``collector`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from probe.cli.app import app
from probe.cli.common import UsageError, command_boundary, parse_duration, stderr_console

if TYPE_CHECKING:
    from probe.collector.storage import Storage


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="Where stored files (and the SQLite database) live.")] = Path(
        "collector-data"),
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="VOIP_PROBE_DATABASE_URL",
        help="postgresql://user:pass@host/db (psycopg 3). Default: SQLite in --data-dir.")
    ] = None,
    blobs: Annotated[str | None, typer.Option(
        "--blobs", help="Where raw results files are kept: database or files. Default: the "
        "database with PostgreSQL (collectors behind one load balancer share it and keep "
        "nothing of their own), files in --data-dir with SQLite.")] = None,
    admin_token: Annotated[str | None, typer.Option(
        "--admin-token", envvar="VOIP_PROBE_ADMIN_TOKEN",
        help="Enables export and delete (Authorization: Bearer TOKEN). Prefer the env var.")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(
        min=0.001, help="Largest results file accepted, inflated, in MiB; a file may take "
        "at most twice this on disk (the file and the indexed copy of its records).")] = 16,
    rate_limit: Annotated[float, typer.Option(
        min=0, help="Requests per minute per client address (0: no limit).")] = 600,
    daily_quota_mb: Annotated[float, typer.Option(
        "--daily-quota-mb", min=0,
        help="MiB of new results files (inflated) one client address may have stored per "
             "UTC day; past it, uploads get 429 until midnight UTC (0: no quota).")] = 256,
    upload_slots: Annotated[int, typer.Option(
        "--upload-slots", min=1,
        help="Uploads received and validated at once; the others wait their turn.")] = 4,
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        "--forwarded-allow-ips",
        help="Addresses (or networks) of the reverse proxies whose X-Forwarded-For / "
             "X-Forwarded-Proto are believed, comma-separated; '*' trusts any peer (only "
             "when nothing else can reach the collector). Default: none, so the per-client "
             "limits key on the TCP peer's address.")] = None,
    reflector_ports: Annotated[str | None, typer.Option(
        "--reflector-ports",
        help="Also run the reflector (UDP echo and STUN responder, as `voip-probe reflector`) "
             "on these UDP ports, e.g. 443,3478-3481,19302-19309,4244,5242,5243,7985,7987.")
    ] = None,
    reflector_host: Annotated[str | None, typer.Option(
        "--reflector-host", help="Address for the reflector. Default: --host.")] = None,
    reflector_name: Annotated[str | None, typer.Option(
        "--reflector-name", help="Name (or address) probes should use for the reflector, "
        "as GET /api/v1/reflector advertises it. Default: the host name a probe used to "
        "reach this collector.")] = None,
    confirm_probes: Annotated[int, typer.Option(
        "--confirm-probes", min=1,
        help="Status page: an event is confirmed when this many independent probes (steady "
             "ones weigh 1) saw it.")] = 2,
    confirm_window: Annotated[str, typer.Option(
        "--confirm-window",
        help="Status page: probes agree when they saw a change within this (e.g. 24h, "
             "90m, 2d); a probe's change must also last this long.")] = "24h",
    page_cache: Annotated[float, typer.Option(
        "--page-cache", min=0,
        help="Status page: render a page again at most every this many seconds.")] = 5,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    check: Annotated[bool, typer.Option(
        "--check",
        help="Check the storage and exit instead of serving: every acknowledged upload has "
             "its file, intact (its SHA-256) and fully indexed, and every stored file its "
             "index row. Exit 0 when all is consistent, 1 with a line per problem. Starting "
             "clears what a crash left, as a start of the collector does.")] = False,
) -> None:
    """Run the collector: receive, validate and store results files; answer queries;
    show the status page.

    Status page at /, API: POST /api/v1/results, GET /api/v1/measurements,
    GET /api/v1/summary, GET /api/v1/events, GET /api/v1/reflector (the reflector it
    runs, which probes configured with this collector use); OpenAPI at /openapi.json,
    docs at /docs. Client addresses are neither stored nor logged.
    """
    with command_boundary():
        import logging

        try:
            import uvicorn

            from probe.analysis.crowd import Rule
            from probe.collector.app import create_app
            from probe.collector.config import CollectorConfig
            from probe.collector.storage import Storage, StorageUnavailable
        except ImportError as exc:
            raise UsageError(
                f"the collector needs its extra: pip install 'voip-probe[collector]' ({exc})"
            ) from None
        ports: list[int] = []
        if reflector_ports is not None:
            from probe.reflector import parse_ports

            try:
                ports = parse_ports(reflector_ports)
            except ValueError as exc:
                raise UsageError(f"--reflector-ports: {exc}") from None
        if reflector_name is not None:
            from probe.hostnames import valid_hostname

            if not valid_hostname(reflector_name):
                raise UsageError(f"--reflector-name must be a host name or an address, got "
                                 f"{reflector_name!r}")
        trusted = _forwarded_allow_ips(forwarded_allow_ips)
        if admin_token is not None and len(admin_token) < 16:
            raise UsageError("--admin-token must be at least 16 characters")
        rule = Rule(probes=confirm_probes,
                    window_s=parse_duration(confirm_window, "--confirm-window", "h"))
        try:
            storage = Storage(data_dir, database_url, rule, blobs=blobs)
            storage.open()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except StorageUnavailable as exc:
            raise UsageError(f"cannot open the database: {exc}") from None
        except OSError as exc:
            raise UsageError(f"cannot use --data-dir {data_dir}: {exc}") from None
        if check:
            _check_storage(storage)
        cfg = CollectorConfig(max_bytes=int(max_upload_mb * 1024 * 1024),
                              daily_quota_bytes=int(daily_quota_mb * 1024 * 1024),
                              max_inflating=upload_slots,
                              admin_token=admin_token, rate_limit_per_min=rate_limit,
                              reflector_host=reflector_host or host, reflector_ports=ports,
                              reflector_name=reflector_name, page_cache_s=page_cache)
        stderr_console().print(
            f"collector and status page on http://{host}:{port} (storage: "
            f"{storage.db.describe()}, {storage.blobs.describe()}); admin endpoints "
            f"{'enabled' if admin_token else 'disabled'}"
            + (f"; reflector on UDP {reflector_host or host} ports {reflector_ports}"
               if ports else ""), highlight=False)
        logging.basicConfig(level=log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            uvicorn.run(create_app(storage, cfg), host=host, port=port,
                        access_log=False,  # the access log would hold client addresses
                        log_level=log_level.lower(), server_header=False,
                        # Forwarding headers only from the proxies the operator named
                        # (uvicorn's default believes any from loopback).
                        proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None)
        finally:
            storage.close()


def _check_storage(storage: Storage) -> NoReturn:
    """``serve --check``: :meth:`Storage.check`, a line per problem, then exit."""
    from probe.cli.common import EXIT_FOUND, EXIT_OK

    console = stderr_console()
    try:
        with console.status("checking every stored upload ..."):
            uploads, problems = storage.check()
    finally:
        storage.close()
    for problem in problems:
        typer.echo(problem)
    console.print(f"storage ({storage.db.describe()}, {storage.blobs.describe()}): "
                  f"{uploads} uploads, "
                  + (f"{len(problems)} problems" if problems else "consistent"),
                  highlight=False, markup=False)
    raise typer.Exit(EXIT_FOUND if problems else EXIT_OK)


def _forwarded_allow_ips(value: str | None) -> list[str]:
    """The ``--forwarded-allow-ips`` list: addresses or networks, or ``*``."""
    if value is None:
        return []
    import ipaddress

    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise UsageError(f"--forwarded-allow-ips: {item!r} is not an address or a "
                             "network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
    return items
