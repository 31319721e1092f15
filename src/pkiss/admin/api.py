"""The admin REST API (FastAPI): reads of the node's state, the few writes an operator needs,
and Prometheus ``/metrics``.

Access (CONFIG.md, ``admin``): a write needs ``Authorization: Bearer <admin.token>``, and is
refused when no token is configured; a read needs it too unless the API listens on loopback.
Handlers are ``async`` on purpose: they run on the node's event loop, between two packets,
never in a thread beside it.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import ipaddress
import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from ..node import Node
from ..stats import HISTORY, CallStats
from ..trace import CallTrace, Tracer, pcap
from . import views
from .metrics import render_metrics

__all__ = ["HUNG_UP_BY_ADMIN", "Server", "build_app"]

HUNG_UP_BY_ADMIN = "hung up by admin"
"""The reason in the record of a call an operator ended."""


class Server(Protocol):
    """What the API needs of the running server: the node it runs, read-only, and the
    server's own commands."""

    @property
    def node(self) -> Node: ...

    started_at: float
    loaded_at: float
    cdr: Any
    state: Any
    tracer: Tracer
    stats: CallStats

    def now(self) -> float: ...

    def reload(self) -> list[str]:
        """Load and apply the config file again; the errors, empty when applied."""
        ...


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


_STATIC = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def _static(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def build_app(server: Server) -> FastAPI:
    app = FastAPI(title="pkiss admin", docs_url=None, redoc_url=None, openapi_url=None)

    def token_ok(request: Request) -> bool:
        token = server.node.config.admin.token
        if token is None:
            return False
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())

    def read_access(request: Request) -> None:
        admin = server.node.config.admin
        if _loopback(admin.listen.host) or token_ok(request):
            return
        raise HTTPException(401, "a bearer token is needed", {"WWW-Authenticate": "Bearer"})

    def write_access(request: Request) -> None:
        if server.node.config.admin.token is None:
            raise HTTPException(403, "writes are disabled: admin.token is not set")
        if not token_ok(request):
            raise HTTPException(401, "a bearer token is needed", {"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def hardened(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        # the page itself holds no data: every figure comes from the API, token-checked
        return Response(_static("dashboard.html"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        kind = _STATIC.get(name)
        if kind is None:
            raise HTTPException(404, "not found")
        return Response(_static(name), media_type=kind)

    reads = [Depends(read_access)]
    writes = [Depends(write_access)]

    @app.get("/api/status", dependencies=reads)
    async def get_status() -> dict[str, Any]:
        return views.status(
            server.node, server.started_at, server.loaded_at, server.now(), server.state
        )

    @app.get("/api/peers", dependencies=reads)
    async def get_peers() -> list[dict[str, Any]]:
        return views.peer_rows(server.node, server.now())

    @app.get("/api/calls", dependencies=reads)
    async def get_calls() -> list[dict[str, Any]]:
        return views.call_rows(server.node, server.now())

    async def steer(kind: str, name: str, drained: bool) -> dict[str, Any]:
        drains = server.node.drains
        found, names = drains.resolve(name)
        if found == "registered" and kind == "peer":
            raise HTTPException(422, f"{name} has hosts: registered: no fixed host to drain")
        if found != kind:
            what = "peer" if kind == "peer" else "host at that address"
            raise HTTPException(404, f"no {what} is configured: {name}")
        shared = server.state
        # shared first: every node then sees it, this one included (nothing changes when
        # the store cannot be written)
        if shared is not None and not await shared.write_drains(kind, names, drained):
            raise HTTPException(503, "shared state unavailable: nothing changed")
        drains.change(kind, names, drained)
        return {"drained" if drained else "undrained": kind, "names": names}

    @app.post("/api/peers/{peer}/drain", dependencies=writes)
    async def drain_peer(peer: str) -> dict[str, Any]:
        return await steer("peer", peer, True)

    @app.post("/api/peers/{peer}/undrain", dependencies=writes)
    async def undrain_peer(peer: str) -> dict[str, Any]:
        return await steer("peer", peer, False)

    @app.post("/api/hosts/{host}/drain", dependencies=writes)
    async def drain_host(host: str) -> dict[str, Any]:
        return await steer("host", host, True)

    @app.post("/api/hosts/{host}/undrain", dependencies=writes)
    async def undrain_host(host: str) -> dict[str, Any]:
        return await steer("host", host, False)

    @app.post("/api/calls/{call_id:path}/hangup", dependencies=writes)
    async def hangup(call_id: str) -> dict[str, Any]:
        """BYE to both legs of a call in progress (CANCEL and 487 when not answered yet)."""
        node = server.node
        sends = node.core.hangup(call_id, HUNG_UP_BY_ADMIN, server.now())
        if sends is None:
            raise HTTPException(404, f"no call in progress has the id {call_id}")
        node.engine.drive(sends)
        return {"hung_up": call_id}

    @app.get("/api/bans", dependencies=reads)
    async def get_bans() -> list[dict[str, Any]]:
        return views.ban_rows(server.node, server.now())

    @app.delete("/api/bans/{address}", dependencies=writes)
    async def delete_ban(address: str) -> dict[str, Any]:
        if not server.node.security.bans.unban(address):
            raise HTTPException(404, f"{address} is not banned")
        return {"unbanned": address}

    @app.post("/api/reload", dependencies=writes)
    async def post_reload() -> JSONResponse:
        errors = server.reload()
        if errors:
            return JSONResponse({"reloaded": False, "errors": errors}, status_code=422)
        return JSONResponse({"reloaded": True, "peers": len(server.node.config.peers)})

    @app.get("/api/cdr", dependencies=reads)
    async def get_cdr(since: str | None = None, limit: int = 100, offset: int = 0,
                      peer: str | None = None, number: str | None = None,
                      status: int | None = None, format: str = "json") -> Response:  # fmt: skip
        """Call detail records, oldest first: the newest ``limit`` (at most 10,000) started
        at or after ``since`` (ISO 8601; UTC when no offset is given), after skipping the
        ``offset`` newest (the next page back); only those of ``peer`` (source or
        destination), whose caller or called number contains ``number``, with ``status``.
        ``format``: ``json`` (a list of objects) or ``csv`` (a header line, then a line a
        record)."""
        return await cdr_response(server, since, limit, offset, peer, number, status, format)

    @app.get("/metrics", dependencies=reads)
    async def get_metrics() -> Response:
        body, content_type = render_metrics(server.node, server.now(), server.cdr, server.stats,
                                            server.state)  # fmt: skip
        return Response(body, media_type=content_type)

    @app.get("/api/stats", dependencies=reads)
    async def get_stats(window: int = HISTORY, step: int = 10,
                        setup_window: int = 300) -> dict[str, Any]:  # fmt: skip
        """The last ``window`` seconds (at most an hour) for the dashboard's charts: calls in,
        answered and failed a second, averaged over ``step`` seconds (1-60) from oldest;
        the setup-time percentiles of the calls answered in the last ``setup_window``
        seconds; each probed host's states over the window."""
        if not 1 <= step <= 60:
            raise HTTPException(422, "step: 1 to 60 seconds")
        if not step <= window <= HISTORY:
            raise HTTPException(422, f"window: {step} to {HISTORY} seconds")
        stats = server.stats
        return {"now": round(stats.clock(), 3), "window": window, **stats.series(window, step),
                "setup": stats.setup_percentiles(setup_window),
                "hosts": stats.host_rows(window)}  # fmt: skip

    # ------------------------------------------------------------------ the call trace
    def _trace_of(call_id: str) -> CallTrace:
        trace = server.tracer.find(call_id)
        if trace is None:
            raise HTTPException(404, f"no trace of call {call_id!r}")
        return trace

    @app.get("/api/traces", dependencies=reads)
    async def get_traces(q: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The traced calls, newest first: those whose Call-ID (either leg's) or number
        (caller or called, in the first messages) holds ``q``, or the last ended ones."""
        tracer = server.tracer
        limit = max(1, min(limit, 1000))
        found = tracer.search(q, limit) if q else list(tracer.ended())[:limit]
        return [views.trace_summary(t) for t in found]

    @app.get("/api/calls/{call_id}/trace", dependencies=reads)
    async def get_trace(call_id: str) -> dict[str, Any]:
        """Every SIP message of the call (either leg's Call-ID), both legs, in order."""
        return _trace_of(call_id).as_dict()

    @app.get("/api/calls/{call_id}/trace.pcap", dependencies=reads)
    async def get_trace_pcap(call_id: str) -> Response:
        """The same as a pcap file, for Wireshark or ``sngrep -I``."""
        body = pcap(_trace_of(call_id).messages)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:64]
        disposition = f'attachment; filename="{name}.pcap"'
        return Response(body, media_type="application/vnd.tcpdump.pcap",
                        headers={"Content-Disposition": disposition})  # fmt: skip

    return app


async def cdr_response(server: Server, since: str | None, limit: int, offset: int,
                       peer: str | None, number: str | None, status: int | None,
                       fmt: str) -> Response:  # fmt: skip
    """``GET /api/cdr``: the records asked for, as JSON or CSV."""
    from ..cdr import Filters, csv_values
    from ..cdr.table import CSV_COLUMNS

    if fmt not in ("json", "csv"):
        raise HTTPException(422, f"format: json or csv, not {fmt!r}")
    if offset < 0:
        raise HTTPException(422, "offset: not negative")
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise HTTPException(422, f"since: not an ISO 8601 time: {since!r}") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    writer = server.cdr
    if writer is not None:
        await writer.flush()  # what ended a moment ago is there too
        rows = await asyncio.to_thread(writer.store.query, start, max(1, min(limit, 10_000)),
                                       offset, Filters(peer, number, status))  # fmt: skip
    if fmt == "json":
        return JSONResponse(rows)
    out = io.StringIO()
    table = csv.writer(out, lineterminator="\r\n")
    table.writerow(CSV_COLUMNS)
    for row in rows:
        table.writerow(csv_values(row))
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="cdr.csv"'})  # fmt: skip
