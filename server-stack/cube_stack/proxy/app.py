"""The ASGI app: :func:`create_proxy_app` turns the route table into Starlette routes behind auth.

Layers, outermost first: Starlette's error middleware; :class:`AuditMiddleware` (one JSON line per
request); :class:`BodyLimitMiddleware` (413); the router, whose routes are exactly the table's entries,
each wrapped in an :class:`AuthGuard` (401/403/429/503) around its endpoint (forward or attestation).
``/health`` and ``/metrics`` need no token. Any other path is a JSON 404 and is never forwarded.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from cube_stack.proxy.attestation import AttestationAgent, AttestationEndpoint
from cube_stack.proxy.authclient import AuthClient
from cube_stack.proxy.backend import BearerAuthBackend
from cube_stack.proxy.cache import DecisionCache
from cube_stack.proxy.errors import (
    CubeProxyError,
    MethodNotAllowedError,
    RouteNotFoundError,
    error_response,
)
from cube_stack.proxy.forward import ForwardEndpoint, new_runtime_client
from cube_stack.proxy.jwks import JwksVerifier
from cube_stack.proxy.metrics import CONTENT_TYPE, ProxyMetrics
from cube_stack.proxy.middleware import AuditMiddleware, AuthGuard, BodyLimitMiddleware, audit_record
from cube_stack.proxy.ratelimit import Limiter, RateLimiter
from cube_stack.proxy.routes import active_routes
from cube_stack.proxy.settings import ProxySettings
from cube_stack.proxy.shared_limits import (
    ADDRESS_PREFIX,
    USER_PREFIX,
    SharedLimits,
    SharedRateLimiter,
    address_hasher,
)
from cube_stack.tls_identity import TlsIdentity

log = logging.getLogger(__name__)

SERVICE = "cube-proxy"
VERSION = "0.1.0"


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    error: CubeProxyError
    if exc.status_code == 404:
        error = RouteNotFoundError("no such route on the Cube proxy; nothing was forwarded")
    elif exc.status_code == 405:
        error = MethodNotAllowedError(f"method {request.method} is not allowed on this route")
    else:
        error = CubeProxyError(str(exc.detail), code=f"cube_proxy.http_{exc.status_code}")
        error.status = exc.status_code
    audit_record(request.scope).outcome = error.code
    response = error_response(error)
    response.headers.update(exc.headers or {})
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The message of an arbitrary exception may quote input; log only its type.
    log.error("proxy.internal_error type=%s", type(exc).__name__, extra={"event": "proxy.internal_error"})
    return error_response(CubeProxyError("internal error in the Cube proxy", code="cube_proxy.internal"))


def create_proxy_app(
    settings: ProxySettings,
    *,
    auth: AuthClient,
    agent: AttestationAgent | None = None,
    clock: Callable[[], float] = time.time,
    identity: TlsIdentity | None = None,
) -> Starlette:
    """Return the proxy app; ``auth`` belongs to the caller, the runtime client to the app's lifespan.

    ``clock`` (seconds since the epoch) drives token expiry, the decision cache, the JWKS refresh and the
    rate limiter; ``identity`` is the TLS key pair (made here when not given) whose SPKI attestation binds.
    """
    identity = identity or TlsIdentity.generate(settings.tls_hostnames, days=settings.tls_cert_days)
    instance_id = settings.instance_id or str(uuid.uuid4())
    cache = DecisionCache(ttl=settings.decision_ttl, max_entries=settings.decision_cache_size, clock=clock)
    metrics = ProxyMetrics(cache_counts=lambda: (cache.hits, cache.misses))
    verifier = JwksVerifier(
        auth,
        issuer=settings.issuer,
        clock=clock,
        max_age=settings.jwks_max_age,
        min_refresh_interval=settings.jwks_min_refresh_interval,
    )
    backend = BearerAuthBackend(auth, verifier, cache, clock)
    limiter = RateLimiter(
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
        max_users=settings.rate_limit_users,
        clock=clock,
    )
    attestation_limiter = RateLimiter(
        per_minute=settings.attestation_rate_per_minute,
        burst=settings.attestation_burst,
        max_users=settings.rate_limit_users,
        clock=clock,
    )
    user_limit: Limiter = limiter
    address_limit: Limiter = attestation_limiter
    shared = SharedLimits(settings.redis_url, timeout=settings.redis_timeout) if settings.redis_url else None
    if shared is not None:
        metrics.shared_limits = shared.stats
        user_limit, address_limit = _shared_limiters(settings, shared, limiter, attestation_limiter)
    runtime = new_runtime_client(settings)

    async def health(request: Request) -> Response:
        audit_record(request.scope).audited = False
        return JSONResponse(
            {
                "status": "pass",
                "service": SERVICE,
                "version": VERSION,
                "instance_id": instance_id,
                "tls": settings.tls,
                "spki_sha256": identity.spki_sha256,
            }
        )

    async def metrics_endpoint(request: Request) -> Response:
        audit_record(request.scope).audited = False
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"])]
    if settings.metrics:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    for entry in active_routes(admin_routes=settings.admin_routes):
        endpoint: ASGIApp
        if entry.kind == "attestation":  # no token: a client attests before it trusts us with one
            endpoint = AttestationEndpoint(agent, identity.spki_der, route=entry, limiter=address_limit)
        else:
            forward = ForwardEndpoint(entry, settings=settings, client=runtime, metrics=metrics)
            endpoint = AuthGuard(forward, route=entry, backend=backend, limiter=user_limit)
        routes.append(Route(entry.template, endpoint, methods=[entry.method]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            if shared is not None:
                await shared.start()
            yield
        finally:
            await runtime.aclose()
            if shared is not None:
                await shared.aclose()

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(AuditMiddleware, metrics=metrics),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    # Exact paths only: Starlette would answer a trailing slash with a 307 whose Location it builds from
    # the Host header, before any auth. Without the redirect: our JSON RouteNotFoundError, nothing sent on.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.tls_identity = identity
    app.state.instance_id = instance_id
    app.state.metrics = metrics
    app.state.decision_cache = cache
    return app


def _shared_limiters(
    settings: ProxySettings, shared: SharedLimits, users: RateLimiter, addresses: RateLimiter
) -> tuple[Limiter, Limiter]:
    """Return the per-user and per-address limiters shared through Redis, the local ones as fallback."""
    user_limiter = SharedRateLimiter(
        shared,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
        max_keys=settings.rate_limit_users,
        lease=settings.redis_lease,
        prefix=USER_PREFIX,
        fallback=users,
    )
    address_limiter = SharedRateLimiter(
        shared,
        per_minute=settings.attestation_rate_per_minute,
        burst=settings.attestation_burst,
        max_keys=settings.rate_limit_users,
        lease=settings.redis_lease,
        prefix=ADDRESS_PREFIX,
        fallback=addresses,
        key_of=address_hasher((settings.redis_address_key or "").encode()),
    )
    return user_limiter, address_limiter
