"""uvicorn's httptools protocol with a deadline on request headers and a slot in the connection counts.

uvicorn has a keep-alive timeout but no header timeout, and any byte cancels the keep-alive timer: a
client that sends one header byte every few seconds holds its connection (and a file descriptor) for
ever. :class:`GuardedHttpProtocol` arms a timer when the connection is made (after the TLS handshake)
and whenever bytes arrive with no request in progress, and disarms it when a request's headers are
complete. On expiry it answers 408 (when nothing else is being written) and closes. Bytes that are not
a request's start (a trickle of empty lines) keep the first deadline, they do not move it.

Two more limits close what the deadline leaves open: a request line plus headers larger than
``max_header_bytes`` gets 431 and a close (a fast sender fits gigabytes of headers into any deadline),
and a body that has not fully arrived ``body_timeout`` seconds after its headers closes the connection
(a slow POST), unless the app itself stopped reading (back-pressure is not the client's delay).

It also gives back the connection's :class:`~cube_stack.serving.guard.ConnectionSlot` on
``connection_lost``, and, when a balancer's PROXY header named the client, makes that the ``client``
of every request on the connection.

uvicorn logs a warning for every malformed request and every unsupported ``Upgrade`` -- one line per
request, at a rate the client picks. Those go through the server's bounded log instead (one line per
kind per interval, with a count); errors (an app that raised) are logged as uvicorn logs them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from cube_stack.serving.guard import BODY_TIMEOUT, HEADER_TIMEOUT, HEADER_TOO_LARGE, ConnectionSlot

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection: uvicorn's httptools protocol plus a header deadline and a counted slot."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        slot: ConnectionSlot | None = None,
        header_timeout: float = 15.0,
        max_header_bytes: int = 64 * 1024,
        body_timeout: float = 60.0,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if slot is not None:
            self.logger = _BoundedWarnings(self.logger, slot)  # type: ignore[assignment]
        self._slot = slot
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        # Bytes received while a request's headers are incomplete. httptools buffers a header it has
        # not finished and uvicorn keeps every finished one, so without this cap one connection grows
        # the process by whatever it sends before the deadline (2.3 GB in 12 s, measured).
        self._max_header_bytes = max_header_bytes
        self._header_bytes = 0
        self._body_timeout = body_timeout
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the connection as uvicorn does, with the PROXY-named client and the header deadline."""
        super().connection_made(transport)
        if self._slot is not None and self._slot.client is not None:
            self.client = self._slot.client
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; bytes with no request in progress start the header deadline."""
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()
        if self._header_timer is not None:
            self._header_bytes += len(data)  # a chunk that completes the headers resets the count
        super().data_received(data)
        if self._header_timer is not None and self._header_bytes > self._max_header_bytes:
            self._refuse(HEADER_TOO_LARGE, _TOO_LARGE_431)

    def on_message_begin(self) -> None:
        """Start a request (a pipelined one too, behind a running response) and its header deadline."""
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        """Stop the header deadline: the headers are in (the body and the response have their own limits)."""
        self._disarm_header_timer()
        self._header_bytes = 0
        super().on_headers_complete()
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        """Stop the body deadline: the whole request is in."""
        self._disarm_body_timer()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """End the connection as uvicorn does and give its slot back."""
        self._disarm_header_timer()
        self._disarm_body_timer()
        try:
            super().connection_lost(exc)
        finally:
            if self._slot is not None:
                self._slot.release()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:  # an armed deadline stays: a trickle must not move it
            self._header_timer = self.loop.call_later(self._header_timeout, self._on_header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        self._refuse(HEADER_TIMEOUT, _TIMEOUT_408)

    def _arm_body_timer(self) -> None:
        self._disarm_body_timer()
        self._body_timer = self.loop.call_later(self._body_timeout, self._on_body_timeout)

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _on_body_timeout(self) -> None:
        self._body_timer = None
        if self.flow is not None and self.flow.read_paused:
            self._arm_body_timer()  # the app is not reading (back-pressure): not the client's delay
            return
        self._refuse(BODY_TIMEOUT, b"")

    def _refuse(self, reason: str, answer: bytes) -> None:
        """Close the connection for ``reason``, answering first when no response is being written."""
        self._disarm_header_timer()
        self._disarm_body_timer()
        if self.transport.is_closing():
            return
        if self._slot is not None:
            peer = self.client[0] if self.client else ""
            self._slot.note_closed(reason, peer)
        if answer and (self.cycle is None or self.cycle.response_complete):  # else mid-write: just close
            self.transport.write(answer)
        self.transport.close()


class _BoundedWarnings:
    """uvicorn's logger for one connection, its warnings counted in the bounded log instead of written."""

    def __init__(self, logger: logging.Logger, slot: ConnectionSlot) -> None:
        self._logger = logger
        self._slot = slot

    @property
    def level(self) -> int:
        """Return the wrapped logger's level (uvicorn compares it with TRACE)."""
        return self._logger.level

    def warning(self, msg: object, *args: object, **kwargs: object) -> None:
        """Count a warning under its fixed text (uvicorn's are constants: the set of kinds stays small)."""
        self._slot.note_warning(str(msg)[:80])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)
