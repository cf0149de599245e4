"""uvicorn's server with our accept loop: what the proxy and the auth service both serve with.

:class:`GuardedServer` runs the app's lifespan as uvicorn does, then one
:class:`~cube_stack.serving.listener.Listener` per listening socket instead of ``loop.create_server``,
each connection speaking :class:`~cube_stack.serving.protocol.GuardedHttpProtocol`. Its uvicorn config
is built here, from :class:`ConnectionLimits`, so the pieces cannot disagree: forwarded headers
(``X-Forwarded-For``/``-Proto``) are believed only from ``trusted_forwarders`` and from nobody when that
is empty (uvicorn's own default trusts 127.0.0.1, so every local client could pick its address), and no
WebSocket protocol is loaded (neither service has one; an upgrade would leave the connection's slot with
a protocol that never gives it back).

Shutdown is uvicorn's: ``servers`` are the listeners (``close``/``wait_closed``), established connections
drain as uvicorn drains them. :meth:`GuardedServer.stop` wakes the main loop at once instead of on its
next one-second tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from cube_stack.net import bind_tcp
from cube_stack.serving.guard import BoundedLog, ConnectionGuard, ConnectionSlot, ServingStats
from cube_stack.serving.limits import ConnectionLimits
from cube_stack.serving.listener import Listener
from cube_stack.serving.protocol import GuardedHttpProtocol

log = logging.getLogger("cube_stack.serving")

FD_RESERVE = 256  # descriptors kept for everything but client connections (upstream pool, logs, db)


def guarded_config(app: Any, limits: ConnectionLimits, **options: Any) -> uvicorn.Config:
    """Return a uvicorn config for ``app`` with our protocol and the forwarded-header trust of ``limits``."""
    for name in ("http", "ws", "proxy_headers", "forwarded_allow_ips"):
        if name in options:
            raise TypeError(f"{name} is set from the connection limits, not by the caller")
    trusted = list(limits.trusted_forwarders)
    return uvicorn.Config(
        app,
        http=GuardedHttpProtocol,
        ws="none",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted if trusted else [],
        **options,
    )


class GuardedServer(uvicorn.Server):
    """uvicorn's server behind a connection guard: caps, deadlines, bounded logs, a prompt stop."""

    def __init__(self, app: Any, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(guarded_config(app, limits, **options))
        self.limits = limits
        self.stats = ServingStats()
        self.guard = ConnectionGuard(limits, self.stats, log=BoundedLog(log))
        self.exit_event = asyncio.Event()
        self._own_sockets: list[socket.socket] = []

    def stop(self) -> None:
        """Ask the server to finish in-flight requests and exit (call from the serving loop)."""
        self.should_exit = True
        self.exit_event.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Run the lifespan as uvicorn does, then accept on every socket through our listener."""
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config
        loop = asyncio.get_running_loop()
        if sockets is None:
            sockets = self._own_sockets = [bind_tcp(config.host, config.port, backlog=config.backlog)]
        _check_descriptor_limit(self.limits.max_connections)

        def protocol(slot: ConnectionSlot) -> asyncio.Protocol:
            return GuardedHttpProtocol(
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
                slot=slot,
                header_timeout=self.limits.header_timeout,
                max_header_bytes=self.limits.max_header_bytes,
                body_timeout=self.limits.body_timeout,
            )

        listeners = [
            Listener(
                sock,
                guard=self.guard,
                limits=self.limits,
                protocol_factory=protocol,
                ssl_context=config.ssl,
                loop=loop,
            )
            for sock in sockets
        ]
        for listener in listeners:
            listener.start()
        self.servers = listeners  # type: ignore[assignment]  # uvicorn's shutdown: close, wait_closed
        self.started = True

    async def main_loop(self) -> None:
        """Tick once a second (uvicorn refreshes its Date header there) until told to exit."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick's once-a-second work runs when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.exit_event.wait()

    async def on_tick(self, counter: int) -> bool:
        """Write the bounded log's due counts, then uvicorn's tick."""
        self.guard.log.flush()
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Shut down as uvicorn does, then write every count not yet logged."""
        try:
            await super().shutdown(sockets)
        finally:
            for sock in self._own_sockets:
                sock.close()
            self.guard.log.flush(force=True)


def _check_descriptor_limit(max_connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards the hard one if the cap needs it; warn if it still falls short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "serving.descriptor_limit max_connections=%d needs about %d open files, the limit is %d: "
            "accept() will fail (and back off) before the cap is reached",
            max_connections,
            wanted,
            soft,
            extra={"event": "serving.descriptor_limit"},
        )
