"""The auth service as a process of its own: ``cube-stack auth serve`` and ``cube-stack auth migrate``.

``cube-stack up`` runs the auth service inside its one process; a deployment runs it outside the
confidential VMs, on PostgreSQL, next to the proxies that ask it about tokens. This module serves the
SuperMQ-compatible HTTP API (users, tokens, domains, PATs, the JWKS) behind the same connection guard
as the proxy, and ``auth.v1.AuthService`` over gRPC (TLS or mTLS optional, as SuperMQ's), from one
:class:`~cube_stack.auth.AuthService` and one event loop.

:class:`ServeOptions` holds what only the process needs (listen addresses, gRPC TLS files, log level);
the service's own settings stay in :class:`~cube_stack.auth.AuthSettings`. Both read ``CUBE_AUTH_*``
variables. The database URL is logged with its password masked; signing keys are logged by kid only.
SIGTERM or SIGINT stops accepting, lets running calls finish and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cube_stack.auth.app import guarded_auth_server
from cube_stack.auth.errors import AuthSettingsError
from cube_stack.auth.grpc.server import GrpcAuthServer, serve_grpc
from cube_stack.auth.grpc.tls import ServerTLS
from cube_stack.auth.migrations import current_version, migrate
from cube_stack.auth.service import AuthService
from cube_stack.auth.settings import ENV_PREFIX, AuthSettings, redacted_database_url
from cube_stack.auth.store import create_engine
from cube_stack.net import bind_tcp

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")
GRPC_GRACE = 5.0  # seconds running gRPC calls get to finish at shutdown


@dataclass(frozen=True)
class ServeOptions:
    """Where ``cube-stack auth serve`` listens and how it logs; every field reads ``CUBE_AUTH_<FIELD>``."""

    http_listen: str = "127.0.0.1:8189"  # host:port of the HTTP API (SuperMQ-compatible, JWKS); port 0: any
    grpc_listen: str = "127.0.0.1:8181"  # host:port of auth.v1.AuthService; port 0: any
    grpc_tls_cert: Path | None = None  # PEM certificate chain of the gRPC server; unset: plain gRPC
    grpc_tls_key: Path | None = None  # PEM private key of grpc_tls_cert (never logged)
    grpc_tls_client_ca: Path | None = None  # PEM CA that client certificates must chain to; unset: no mTLS
    log_level: str = "info"  # debug, info, warning or error

    def __post_init__(self) -> None:
        for name in ("http_listen", "grpc_listen"):
            parse_listen(name, getattr(self, name))
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise AuthSettingsError("grpc_tls_cert", "set grpc_tls_cert and grpc_tls_key together")
        if self.grpc_tls_client_ca is not None and self.grpc_tls_cert is None:
            raise AuthSettingsError("grpc_tls_client_ca", "mTLS needs grpc_tls_cert and grpc_tls_key too")
        if self.log_level not in LOG_LEVELS:
            raise AuthSettingsError("log_level", f"expected one of {', '.join(LOG_LEVELS)}")

    def server_tls(self) -> ServerTLS | None:
        """Return the gRPC server's TLS settings (None: plain gRPC)."""
        if self.grpc_tls_cert is None or self.grpc_tls_key is None:
            return None
        return ServerTLS.from_files(self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_client_ca)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServeOptions:
        """Build the options from ``CUBE_AUTH_*`` variables (empty means unset)."""
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = (Path(raw) if raw else None) if hints[f.name] is not str else raw
        return cls(**values)  # type: ignore[arg-type]


def parse_listen(name: str, value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) or fail naming the setting."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise AuthSettingsError(name, f"expected host:port, got {value!r}")
    return host, int(port)


async def _key_summary(service: AuthService) -> tuple[str, list[str]]:
    ring = await service.keyring()
    return ring.active.kid, [kid for kid in ring.verifiers if kid != ring.active.kid]


async def run_auth(
    settings: AuthSettings,
    options: ServeOptions,
    *,
    ready: Callable[[str, str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Open the service (migrating the schema), serve HTTP and gRPC until SIGTERM/SIGINT or ``stop``."""
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tls = options.server_tls()  # read the files before anything listens: a bad path fails at once
    log.info(
        "auth.database url=%s",
        redacted_database_url(settings.effective_database_url),
        extra={"event": "auth.database"},
    )
    service = await AuthService.open(settings)
    try:
        current, previous = await _key_summary(service)
        log.info(
            "auth.signing_keys current=%s previous=%s source=%s",
            current,
            ",".join(previous) or "-",
            "files" if settings.signing_key_file is not None else "key-directory",
            extra={"event": "auth.signing_keys"},
        )
        grpc_host, grpc_port = parse_listen("grpc_listen", options.grpc_listen)
        grpc_server: GrpcAuthServer = await serve_grpc(service, grpc_host, grpc_port, tls)
        try:
            await _serve_http(service, options, grpc_server, tls is not None, stop, ready)
        finally:
            await grpc_server.stop(GRPC_GRACE)
    finally:
        await service.close()
    log.info("auth.stopped", extra={"event": "auth.stopped"})


async def _serve_http(
    service: AuthService,
    options: ServeOptions,
    grpc_server: GrpcAuthServer,
    grpc_tls: bool,
    stop: asyncio.Event,
    ready: Callable[[str, str], None] | None,
) -> None:
    host, port = parse_listen("http_listen", options.http_listen)
    sock = bind_tcp(host, port)
    server = guarded_auth_server(service)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        while not server.started:  # uvicorn offers no start-up event; its flag is the API
            if serving.done():
                serving.result()
                raise RuntimeError("the HTTP server exited during start-up")
            await asyncio.sleep(0.01)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        http_url = f"http://{shown}:{bound_port}"
        log.info(
            "auth.listening http=%s grpc=%s grpc_tls=%s",
            http_url,
            grpc_server.target,
            "true" if grpc_tls else "false",
            extra={"event": "auth.listening"},
        )
        if ready is not None:
            ready(http_url, grpc_server.target)
        # uvicorn catches SIGTERM/SIGINT itself while it serves (then this task ends); `stop` covers
        # the signals that arrive before or after, and callers that embed this function.
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.stop()
        stopping.cancel()
        with contextlib.suppress(Exception):
            await serving
        sock.close()


async def run_migrate(settings: AuthSettings) -> tuple[int, list[int]]:
    """Apply pending migrations; return the schema version before and the versions applied."""
    engine = create_engine(settings)
    try:
        before = await current_version(engine)
        applied = await migrate(engine)
    finally:
        await engine.dispose()
    return before, applied
