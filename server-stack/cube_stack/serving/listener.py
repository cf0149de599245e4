"""Our accept loop for one listening socket, in place of ``loop.create_server``'s.

asyncio's own accept loop has no connection cap, no TLS-handshake deadline short of 60 s, and logs every
failed ``accept()`` (EMFILE) at once and again on the next wake-up: the finding saw 452,607 lines in 30 s.
:class:`Listener` instead:

1. accepts in batches when the socket is readable (a reader callback, no task per accept);
2. on EMFILE, ENFILE, ENOBUFS or ENOMEM stops reading the socket for a back-off (10 ms doubling to 1 s,
   reset by the next successful accept) and counts the error in the guard's bounded log;
3. checks the global cap, then the per-address cap, and resets the connection at once when either is
   full (SO_LINGER 0: an RST, no TIME_WAIT kept for an attacker);
4. for a peer in ``proxy_protocol_from``, reads the PROXY header (v2, or v1's text line) from the raw
   socket within the handshake deadline, exactly (never a byte of TLS), and counts the connection
   against the address the header names; anything malformed, slow or truncated is reset;
5. hands the socket to ``loop.connect_accepted_socket`` with the TLS handshake deadline, in a task of
   its own, so a slow handshake never holds up the next accept.

It offers ``close()`` and ``wait_closed()``, which is all uvicorn's shutdown asks of ``Server.servers``:
closing stops accepting and cancels the connections still in their PROXY header or TLS handshake
(established ones are uvicorn's to drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import struct
import time
from collections.abc import Callable

from cube_stack.serving.errors import ProxyHeaderError
from cube_stack.serving.guard import (
    HANDSHAKE_FAILED,
    HANDSHAKE_TIMEOUT,
    PROXY_HEADER,
    ConnectionGuard,
    ConnectionSlot,
)
from cube_stack.serving.limits import ConnectionLimits
from cube_stack.serving.proxy_protocol import (
    PREFIX_BYTES,
    SIGNATURE_BYTES,
    V1_MAX_BYTES,
    ProxyHeader,
    is_v1,
    may_start_header,
    parse_header,
    parse_prefix,
    parse_v1,
    v1_bytes_still_due,
)

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The client gave up between the handshake and our accept: nothing is wrong with us, take the next one.
CLIENT_GONE_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET, errno.EPERM})
ACCEPT_BATCH = 64  # accepts per wake-up, so the loop's other callbacks get their turn
BACKOFF_FIRST = 0.01  # seconds without accepting after the first resource error
BACKOFF_MAX = 1.0  # the longest pause (the back-off doubles up to it)
_LINGER_RESET = struct.pack("ii", 1, 0)

ProtocolFactory = Callable[[ConnectionSlot], asyncio.Protocol]


class Listener:
    """The accept loop of one listening socket; ``close``/``wait_closed`` as ``asyncio.Server`` has."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        guard: ConnectionGuard,
        limits: ConnectionLimits,
        protocol_factory: ProtocolFactory,
        ssl_context: ssl.SSLContext | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._guard = guard
        self._limits = limits
        self._factory = protocol_factory
        self._ssl = ssl_context
        self._loop = loop
        self._backoff = 0.0
        self._resume: asyncio.TimerHandle | None = None
        self._reading = False
        self._closed = False
        self._setups: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """Return the listening socket (as ``asyncio.Server.sockets`` does)."""
        return (self._sock,)

    def start(self) -> None:
        """Start accepting."""
        self._sock.setblocking(False)
        self._read()

    def close(self) -> None:
        """Stop accepting; cancel connections still in their PROXY header or TLS handshake."""
        if self._closed:
            return
        self._closed = True
        self._unread()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for task in self._setups:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the cancelled connection set-ups have ended."""
        if self._setups:
            await asyncio.gather(*self._setups, return_exceptions=True)

    def _read(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _unread(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _on_readable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._closed:
                return
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in CLIENT_GONE_ERRNOS:
                    continue
                self._back_off(exc)  # out of descriptors or memory, or something unknown: never spin
                return
            self._backoff = 0.0
            self._admit(conn, peer)

    def _back_off(self, error: OSError) -> None:
        self._backoff = min(max(self._backoff * 2, BACKOFF_FIRST), BACKOFF_MAX)
        self._guard.note_accept_error(error, self._backoff)
        self._unread()
        self._resume = self._loop.call_later(self._backoff, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        self._read()

    def _admit(self, conn: socket.socket, peer: object) -> None:
        host = str(peer[0]) if isinstance(peer, tuple) else ""
        slot = self._guard.reserve(host)
        if slot is None:
            _reset(conn)
            return
        balancer = self._limits.is_balancer(host)
        if not balancer and not self._guard.claim_address(slot, host):
            slot.release()
            _reset(conn)
            return
        task = self._loop.create_task(self._set_up(conn, host, slot, balancer))
        self._setups.add(task)
        task.add_done_callback(self._setups.discard)

    async def _set_up(self, conn: socket.socket, host: str, slot: ConnectionSlot, balancer: bool) -> None:
        """Read a balancer's PROXY header if one is due, then start the (TLS) transport."""
        handed_over = False
        try:
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if balancer and not await self._read_proxy_header(conn, host, slot):
                slot.release()
                _reset(conn)
                return
            handed_over = True
            started = time.monotonic()
            try:
                if self._ssl is None:
                    await self._loop.connect_accepted_socket(lambda: self._factory(slot), conn)
                else:
                    await self._loop.connect_accepted_socket(
                        lambda: self._factory(slot),
                        conn,
                        ssl=self._ssl,
                        ssl_handshake_timeout=self._limits.handshake_timeout,
                        ssl_shutdown_timeout=self._limits.handshake_timeout,
                    )
            except Exception as exc:  # the loop closed the socket; count why
                timed_out = isinstance(exc, TimeoutError | ConnectionAbortedError) or (
                    time.monotonic() - started >= self._limits.handshake_timeout * 0.95
                )
                slot.note_closed(HANDSHAKE_TIMEOUT if timed_out else HANDSHAKE_FAILED, host)
                slot.release()
        except asyncio.CancelledError:
            slot.release()
            if not handed_over:
                conn.close()
            raise
        except OSError:  # the peer went away while we set its socket up
            slot.release()
            if not handed_over:
                conn.close()

    async def _read_proxy_header(self, conn: socket.socket, host: str, slot: ConnectionSlot) -> bool:
        """Read and apply a balancer's header; False (counted) when the connection must be reset."""
        try:
            async with asyncio.timeout(self._limits.handshake_timeout):
                header = await read_proxy_header(self._loop, conn, v1=self._limits.proxy_protocol_v1)
        except (TimeoutError, ProxyHeaderError, OSError):
            slot.note_closed(PROXY_HEADER, host)
            return False
        client = header.source
        slot.client = client
        return self._guard.claim_address(slot, client[0] if client else host)


async def read_proxy_header(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, *, v1: bool = False
) -> ProxyHeader:
    """Read exactly one PROXY header (v2; v1 too with ``v1``) from ``conn`` (non-blocking)."""
    start = await _read_exactly(loop, conn, SIGNATURE_BYTES, check_signature=True, v1=v1)
    if is_v1(start):
        line = start
        while due := v1_bytes_still_due(line):
            if len(line) + due > V1_MAX_BYTES:
                break  # parse_v1 names the problem
            line += await _read_exactly(loop, conn, due)
        return parse_v1(line)
    prefix = start + await _read_exactly(loop, conn, PREFIX_BYTES - SIGNATURE_BYTES)
    body = await _read_exactly(loop, conn, parse_prefix(prefix))
    return parse_header(prefix, body)


async def _read_exactly(
    loop: asyncio.AbstractEventLoop,
    conn: socket.socket,
    size: int,
    *,
    check_signature: bool = False,
    v1: bool = False,
) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = await loop.sock_recv(conn, size - len(buffer))
        if not chunk:
            raise ProxyHeaderError(
                f"the peer closed after {len(buffer)} of {size} PROXY header bytes",
                code="serving.proxy_header_truncated",
            )
        buffer += chunk
        if check_signature and not may_start_header(bytes(buffer), v1=v1):
            raise ProxyHeaderError(  # a TLS ClientHello or plain HTTP: refuse at the first wrong byte
                "no PROXY header (v2 signature or 'PROXY ') where the balancer's header must be",
                code="serving.proxy_header_signature",
            )
    return bytes(buffer)


def _reset(conn: socket.socket) -> None:
    """Close ``conn`` with an RST (SO_LINGER 0): the peer learns at once, we keep no TIME_WAIT."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    conn.close()
