"""Serving the proxy app with uvicorn: HTTPS with the app's in-memory TLS identity, or plain HTTP for tests.

:class:`ProxyServer` builds the uvicorn server (TLS through ``ssl_context_factory``, so no key file path
is ever configured; see :mod:`.tls`), serves on given sockets or on ``settings.host:port``, and reports
the bound URL and the SPKI a client pins. uvicorn's access log is off: the audit log replaces it and,
unlike it, never records raw paths or query strings.

Connections go through :class:`~cube_stack.serving.GuardedServer`: TLS-handshake and header deadlines,
a global and a per-address connection cap, no forwarded header believed unless its sender is in
``trusted_forwarders``, PROXY v2 from ``proxy_protocol_from`` balancers only. What it refused shows in
``/metrics`` (``cube_proxy_connections_*``).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from cube_stack.net import bind_tcp
from cube_stack.proxy.metrics import ProxyMetrics
from cube_stack.proxy.settings import ProxySettings
from cube_stack.serving import GuardedServer, ServingStats
from cube_stack.tls_identity import TlsIdentity

log = logging.getLogger(__name__)


class ProxyServer:
    """One uvicorn server for a proxy app made by :func:`create_proxy_app`."""

    def __init__(self, app: Starlette, settings: ProxySettings) -> None:
        self.app = app
        self.settings = settings
        self.identity: TlsIdentity = app.state.tls_identity
        self.url = ""
        factory: Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None = None
        if settings.tls:
            factory = self._ssl_context
        self._server = GuardedServer(
            app,
            settings.connection_limits(),
            host=settings.host,
            port=settings.port,
            lifespan="on",
            log_config=None,  # leave logging to the embedding process
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),  # uvicorn wants whole seconds
            ssl_context_factory=factory,
        )
        self.config = self._server.config
        metrics = getattr(app.state, "metrics", None)
        if isinstance(metrics, ProxyMetrics):
            metrics.connections = self._server.stats

    def _ssl_context(self, _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return self.identity.ssl_context()

    @property
    def spki_der(self) -> bytes:
        """Return the DER SPKI of the served certificate's key."""
        return self.identity.spki_der

    @property
    def cert_pem(self) -> bytes:
        """Return the served certificate in PEM."""
        return self.identity.cert_pem

    @property
    def stats(self) -> ServingStats:
        """Return the connection counts: open now, closed before serving by reason, accept errors."""
        return self._server.stats

    @property
    def started(self) -> bool:
        """Return whether uvicorn has finished starting up."""
        return self._server.started

    def bind(self) -> socket.socket:
        """Return a listening socket on ``settings.host:port`` (port 0: a free one) and set :attr:`url`."""
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        # Connections queue from here on, so clients may connect before startup ends.
        sock = bind_tcp(self.settings.host, self.settings.port)
        host, port = sock.getsockname()[:2]
        scheme = "https" if self.settings.tls else "http"
        self.url = f"{scheme}://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}"
        return sock

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until :meth:`stop`; bind ``settings.host:port`` when no sockets are given."""
        own = sockets is None
        socks = [self.bind()] if sockets is None else sockets
        log.info(
            "proxy.listening url=%s tls=%s spki_sha256=%s",
            self.url or "<given socket>",
            self.settings.tls,
            self.identity.spki_sha256,
            extra={"event": "proxy.listening"},
        )
        limits = self._server.limits
        if limits.trusted_forwarders or limits.proxy_protocol_from:
            log.info(
                "proxy.client_addresses trusted_forwarders=%s proxy_protocol_from=%s",
                ",".join(limits.trusted_forwarders) or "-",
                ",".join(limits.proxy_protocol_from) or "-",
                extra={"event": "proxy.client_addresses"},
            )
        try:
            await self._server.serve(sockets=socks)
        finally:
            if own:
                for sock in socks:
                    sock.close()

    def stop(self) -> None:
        """Ask the server to finish in-flight requests and exit (call from the serving loop)."""
        self._server.stop()
