"""`reco serve`: ranked lists over HTTP, events and feedback in, durably (docs/serve.md)."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from lakehouse.errors import RecoError
from lakehouse.landing import check_landing_target
from recocli.commands.options import ConfigOption, WarehouseOption, settings_from
from recocli.config import Settings
from recocli.console import out


def serve(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    landing: Annotated[
        Path | None, typer.Option(help="Landing folder POSTed records go to [default: ./landing].")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port [default: 8000].")] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Accept writes without a bearer token (only on a loopback host)."),
    ] = False,
) -> None:
    """Serve GET /recommendations/{user_id} (scored live with the newest events), POST /events and
    /feedback (checked as `reco ingest` checks them, landed durably before 202), /healthz, /metrics
    and the OpenAPI page at /docs. Writes need `Authorization: Bearer <serve.token>`
    (RECO_SERVE_TOKEN). A new model version or a rollback is picked up without a restart."""
    overrides = {"ingest.landing": landing and str(landing), "serve.host": host, "serve.port": port}
    settings = settings_from(config, warehouse, **overrides)
    token = check_settings(settings, no_auth)

    import torch
    import uvicorn

    from recocli.serve.app import Service, create_app

    torch.set_num_threads(1)  # one small matrix product per request: threads only contend
    app = create_app(Service(settings, token))
    cfg = settings.serve
    auth = "bearer token" if token else "no auth"
    out.print(f"reco serve: http://{cfg.host}:{cfg.port} ({auth}; landing {settings.ingest.landing})")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)


def check_settings(settings: Settings, no_auth: bool) -> str | None:
    """The write token (None with --no-auth), after every setting the service needs is checked."""
    cfg = settings.serve
    try:
        datetime.fromisoformat(settings.ingest.min_event_time)
    except ValueError:
        raise RecoError(
            f"ingest.min_event_time is not an ISO-8601 time: {settings.ingest.min_event_time!r}"
        ) from None
    check_landing_target(settings.ingest.landing)  # POSTs land there
    if no_auth:
        if not _loopback(cfg.host):
            raise RecoError(f"--no-auth only on a loopback host (127.0.0.1, ::1, localhost), not {cfg.host}")
        return None
    if not cfg.token:
        raise RecoError("no write token: set serve.token or RECO_SERVE_TOKEN, or pass --no-auth on loopback")
    return cfg.token


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
