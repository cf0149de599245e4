"""Pure-ASGI middleware of the proxy: the audit log, the body-size cap and the per-route auth guard.

None of them buffers a response: each ``send`` passes straight through (Cube's audit wrapper hid the
writer's ``Flush`` and so turned token streams into bursts). :class:`AuditMiddleware` writes one JSON line
per request with who, which route template, which permission, sizes, latency, status and whether the
response streamed -- never bodies, headers, query strings or tokens.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cube_stack import body_limit
from cube_stack.proxy.backend import BearerAuthBackend
from cube_stack.proxy.errors import (
    BadRequestError,
    CubeProxyError,
    PayloadTooLargeError,
    RateLimitedError,
    error_response,
)
from cube_stack.proxy.metrics import ProxyMetrics
from cube_stack.proxy.ratelimit import Limiter
from cube_stack.proxy.routes import DOMAIN, ProxyRoute

audit_log = logging.getLogger("cube_stack.proxy.audit")
AUDIT_SCOPE_KEY = "cube.audit"
UNMATCHED = "<unmatched>"


@dataclass
class AuditRecord:
    """What one request did; filled in by the layers below :class:`AuditMiddleware`."""

    method: str
    route: str = UNMATCHED  # the route template, never the raw path
    domain: str | None = None
    user_id: str | None = None
    permission: str | None = None
    status: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    latency_ms: float = 0.0
    stream: bool = False
    outcome: str = "ok"  # "ok" or the error code / stream ending (client_disconnected, idle_timeout)
    audited: bool = True  # False for /health and /metrics


def audit_record(scope: Scope) -> AuditRecord:
    """Return the request's audit record (a detached one outside :class:`AuditMiddleware`)."""
    record = scope.get(AUDIT_SCOPE_KEY)
    return record if isinstance(record, AuditRecord) else AuditRecord(method=scope.get("method", ""))


class AuditMiddleware:
    """Count bytes, time the request, log one JSON line and update the request metrics."""

    def __init__(self, app: ASGIApp, metrics: ProxyMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with counting ``receive``/``send`` and record it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = AuditRecord(method=scope["method"])
        scope[AUDIT_SCOPE_KEY] = record
        started = time.perf_counter()

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.request_bytes += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body":
                record.response_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            record.status = record.status or 500
            record.outcome = "internal_error" if record.outcome == "ok" else record.outcome
            raise
        finally:
            elapsed = time.perf_counter() - started
            record.latency_ms = round(elapsed * 1000, 1)
            if record.audited:
                if audit_log.isEnabledFor(logging.INFO):  # the JSON costs ~10% of a request: skip if unused
                    # vars(), not asdict(): every field is a scalar, and asdict deep-copies each one.
                    fields: dict[str, Any] = {"event": "proxy.request", **vars(record)}
                    del fields["audited"]
                    line = json.dumps(fields, separators=(",", ":"))
                    audit_log.info(line, extra={"event": "proxy.request"})
                self.metrics.observe_request(record.route, record.method, record.status, elapsed)


class BodyLimitMiddleware(body_limit.BodyLimitMiddleware):
    """The shared body cap, answering in the proxy's error format and noting the audit outcome."""

    def too_large(self) -> PayloadTooLargeError:
        """Return the 413 error."""
        return PayloadTooLargeError(
            f"request body is larger than the proxy's limit of {self.max_bytes} bytes"
        )

    def bad_length(self) -> BadRequestError:
        """Return the 400 error for a malformed Content-Length."""
        return BadRequestError("invalid Content-Length header")

    async def refuse(self, error: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Record the outcome and answer ``error``."""
        assert isinstance(error, CubeProxyError)
        audit_record(scope).outcome = error.code
        await error_response(error)(scope, receive, send)


async def read_body(receive: Receive) -> bytes:
    """Read the whole request body (the size cap is enforced by :class:`BodyLimitMiddleware`)."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise CubeProxyError("client disconnected while sending", code="cube_proxy.client_disconnected")
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


class AuthGuard:
    """Authenticate, authorize and rate-limit one route of the table before its endpoint runs."""

    def __init__(
        self, app: ASGIApp, *, route: ProxyRoute, backend: BearerAuthBackend, limiter: Limiter
    ) -> None:
        if route.permission is None:
            raise ValueError(f"route {route.template} needs no permission; it must not be guarded")
        self.app = app
        self.route = route
        self.permission = route.permission.value
        self.backend = backend
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the backend; answer its error, or set ``scope["user"]``/``["auth"]`` and go on."""
        record = audit_record(scope)
        record.route = self.route.template
        record.permission = self.permission
        record.domain = scope.get("path_params", {}).get(DOMAIN)
        try:
            credentials, user = await self.backend.authenticate_route(HTTPConnection(scope), self.route)
            record.user_id = user.subject.user_id
            wait = await self.limiter.take(user.subject.user_id)
            if wait > 0:
                raise RateLimitedError(f"too many requests; retry in {wait:.1f} s", retry_after=wait)
        except CubeProxyError as exc:
            record.outcome = exc.code
            await error_response(exc)(scope, receive, send)
            return
        scope["auth"], scope["user"] = credentials, user
        await self.app(scope, receive, send)
