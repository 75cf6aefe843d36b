"""The HTTP service: lists scored live, events and feedback landed durably, health and metrics.

GET /recommendations/{user_id} ranks from LiveState (committed bronze + accepted events); POST
/events and /feedback check every record with lakehouse.contracts (the rules `reco ingest` applies)
and land the whole request or none of it; GET /healthz, GET /metrics; FastAPI serves /docs.
"""

from __future__ import annotations

import gc
import json
import secrets
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import FastAPI, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lakehouse import contracts
from lakehouse.contracts import CONTRACTS, Contract, validate_record
from lakehouse.landing import KINDS, SERVED
from recocli.config import Settings
from recocli.serve.batcher import RankBatcher
from recocli.serve.landing import LandingWriter
from recocli.serve.metrics import Metrics
from recocli.serve.state import LiveState

# The write routes' `Authorization: Bearer <token>` (checked in the route, so a bad one is a 401).
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False))]


class Service:
    """The parts one server process holds: live state, landing writers, metrics."""

    def __init__(self, settings: Settings, token: str | None) -> None:
        serve, ingest = settings.serve, settings.ingest
        self.settings, self.token = settings, token
        self.state = LiveState(settings)
        self.batcher = RankBatcher(self.state, serve.max_batch)
        self.metrics = Metrics()
        size, interval = serve.landing_file_size, serve.landing_interval
        self.writers = {kind: LandingWriter(ingest.landing, kind, interval, size) for kind in KINDS}
        self.served = LandingWriter(ingest.landing, SERVED, serve.served_interval, size)
        self.max_body, self.refresh_s = serve.max_body, serve.refresh
        min_ts = datetime.fromisoformat(ingest.min_event_time)
        self.min_ts = min_ts if min_ts.tzinfo else min_ts.replace(tzinfo=UTC)
        self.max_future = timedelta(seconds=ingest.max_future)
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_loop, name="refresh", daemon=True)

    def start(self) -> None:
        self.state.refresh()
        # What is loaded now (torch, the app, the model: ~470,000 objects) lives as long as the process:
        # kept out of the collector's sight, so that a full collection, when one comes, does not stop
        # every request for as long as walking them takes (0.66-0.89 s measured, 2 cores at load 7).
        gc.freeze()
        self._refresher.start()

    def stop(self) -> None:
        self._stop.set()
        self._refresher.join()
        for writer in (*self.writers.values(), self.served):
            writer.close()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.state.refresh()
            except Exception as exc:  # keep serving the last good snapshot; say why once per failure
                print(f"reco serve: refresh failed, serving the previous snapshot: {exc}", file=sys.stderr)

    def check(self, records: list, contract: Contract):
        latest = datetime.now(UTC) + self.max_future
        limit = self.settings.ingest.max_line_bytes
        return [validate_record(r, contract, self.min_ts, latest, limit) for r in records]


def _contract_doc(contract: Contract) -> str:
    fields = ", ".join(
        f"`{n}` {kind}{'' if required else ' (optional)'}" for n, kind, required in contract.fields
    )
    kinds = ", ".join(contract.allowed_types)
    return (
        f"One JSON object or a list of them: {fields}; `{contract.type_field}` one of {kinds}. "
        "Every record is checked as `reco ingest` checks it; any bad record → 400 with each bad "
        "record's index and reason, and nothing of the request lands. 202 once landed (fsync'd)."
    )


_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}
            }
        },
    }
}


_LIST = {
    "user_id": "42",
    "rec_id": "5f0c…",
    "model_version": 3,
    "strategy": "model",
    "items": [
        {"item_id": "318", "score": 7.91, "position": 1},
        {"item_id": "296", "score": 7.55, "position": 2},
    ],
}


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        service.stop()

    app = FastAPI(
        title="reco serve",
        summary="Ranked lists scored live; behaviour events and feedback in, durably.",
        lifespan=lifespan,
    )
    app.add_middleware(_Timing, metrics=service.metrics)
    serve = service.settings.serve

    @app.get(
        "/recommendations/{user_id}", responses={200: {"content": {"application/json": {"example": _LIST}}}}
    )
    async def recommendations(
        user_id: str, k: int = Query(serve.k, ge=1, le=serve.max_k, description="List length.")
    ) -> Response:
        """The user's top-k, scored now from their committed events and those accepted since;
        the popular list for users the model knows nothing about. Recorded for `reco report`."""
        return await _ranked_list(service, user_id, k)

    @app.post("/events", status_code=202, description=_contract_doc(CONTRACTS["events"]), openapi_extra=_BODY)
    async def events(request: Request, credentials: Credentials) -> JSONResponse:
        """Behaviour events into <landing>/events/."""
        return await _land(service, request, credentials, "events")

    @app.post(
        "/feedback", status_code=202, description=_contract_doc(CONTRACTS["feedback"]), openapi_extra=_BODY
    )
    async def feedback(request: Request, credentials: Credentials) -> JSONResponse:
        """Feedback on served lists into <landing>/feedback/."""
        return await _land(service, request, credentials, "feedback")

    @app.get("/healthz")
    async def healthz() -> dict:
        """Up, with the model version served and what waits for ingest."""
        return {
            "status": "ok",
            "model_version": service.state.ranking.model_version,
            "pending_events": service.state.pending_events(),
            "landing_lag_s": round(service.state.landing_lag(), 3),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        """Prometheus text: requests, latency histogram, served model version, landing lag."""
        return service.metrics.render(_gauges(service))

    return app


async def _ranked_list(service: Service, user_id: str, k: int) -> Response:
    """GET /recommendations: the list as JSON, recorded (with when it was served) for `reco report`."""
    ranked = await service.batcher.rank(user_id, k)
    items = [
        {"item_id": item, "score": score, "position": n} for n, (item, score) in enumerate(ranked.items, 1)
    ]
    body = {
        "user_id": user_id,
        "rec_id": uuid.uuid4().hex,
        "model_version": ranked.model_version,
        "strategy": ranked.strategy,
        "items": items,
    }
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    service.served.submit([f'{text[:-1]},"served_at":"{datetime.now(UTC).isoformat()}"}}'])
    return Response(text, media_type="application/json")


def _authorized(service: Service, credentials: HTTPAuthorizationCredentials | None) -> bool:
    if service.token is None:
        return True
    given = credentials.credentials if credentials is not None else ""
    return secrets.compare_digest(given.encode(), service.token.encode())


async def _land(
    service: Service, request: Request, credentials: HTTPAuthorizationCredentials | None, kind: str
) -> JSONResponse:
    """POST /events or /feedback: check every record, land them all (fsync'd) or none, then 202."""
    serve = service.settings.serve
    if not _authorized(service, credentials):
        return JSONResponse({"detail": "missing or wrong bearer token"}, 401, {"WWW-Authenticate": "Bearer"})
    body = await _read_limited(request, service.max_body)
    if body is None:
        return JSONResponse({"detail": f"request body over {serve.max_body}"}, 413)
    try:
        data = contracts.loads(body)  # RFC 8259 as ingest parses lines; numbers kept as written
    except (ValueError, UnicodeDecodeError):
        return JSONResponse({"detail": "body is not JSON"}, 400)
    records = data if isinstance(data, list) else [data]
    if not records:
        return JSONResponse({"detail": "no records"}, 400)
    if len(records) > serve.max_records:
        return JSONResponse({"detail": f"more than {serve.max_records} records"}, 413)
    checked = service.check(records, CONTRACTS[kind])
    errors = [{"index": n, "reason": c.reason} for n, c in enumerate(checked) if c.reason is not None]
    if errors:
        return JSONResponse({"detail": "bad records: nothing landed", "errors": errors}, 400)
    landed = await service.writers[kind].append([c.line for c in checked])
    service.state.accept(kind, records, [c.kind for c in checked], [c.ts for c in checked], landed)
    service.metrics.accepted(kind, len(records))
    return JSONResponse({"accepted": len(records)}, 202)


def _gauges(service: Service) -> dict[str, tuple[str, float | int | None]]:
    """The gauges of /metrics, each with its help text and value now."""
    state = service.state
    return {
        "reco_serve_model_version": (
            "Model version served (absent: popular only).",
            state.ranking.model_version,
        ),
        "reco_serve_landing_lag_seconds": (
            "Age of the oldest file this service landed that ingest has not committed.",
            round(state.landing_lag(), 3),
        ),
        "reco_serve_pending_events": (
            "Accepted events kept in memory until ingested.",
            state.pending_events(),
        ),
        "reco_serve_snapshot_age_seconds": (
            "Seconds since bronze and the model were last reloaded.",
            None if state.committed_at is None else round(time.time() - state.committed_at, 3),
        ),
    }


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is (or says it is) over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Timing:
    """ASGI middleware: counts and times every request by method, route template and status."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.observe(scope["method"], route, status[0], time.perf_counter() - started)
