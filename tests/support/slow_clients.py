"""Attackers and a well-behaved client for the serving tests, all on loopback.

On Linux the whole of 127.0.0.0/8 is loopback, so an attacker binds its sockets to 127.0.0.2 (or .3,
...) as source address and the normal client stays on 127.0.0.1: the server sees two addresses on one
machine. Every wait here is for an event (bytes, EOF, a reset) with a bound, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# A TLS record header announcing a 512-byte handshake message, and nothing after it: the server's TLS
# stack waits for the rest of the ClientHello for ever (asyncio: 60 s) unless something cuts it off.
HALF_CLIENT_HELLO = b"\x16\x03\x01\x02\x00"
# A request whose headers never end.
HALF_HEADERS = b"GET /health HTTP/1.1\r\nHost: slow.example\r\nX-Slow: "


def insecure_client_context() -> ssl.SSLContext:
    """Return a TLS client context that trusts any certificate (these tests are about serving, not trust)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def connect_from(source: str, host: str, port: int) -> socket.socket:
    """Return a connected non-blocking TCP socket whose source address is ``source``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setblocking(False)
        sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def wait_for_close(sock: socket.socket, bound: float) -> tuple[float | None, bytes]:
    """Wait (at most ``bound`` s) until the server closes ``sock``; return (seconds, bytes it sent first).

    The seconds are None when the connection was still open at the bound.
    """
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    received = bytearray()
    try:
        async with asyncio.timeout(bound):
            while True:
                try:
                    chunk = await loop.sock_recv(sock, 4096)
                except (ConnectionResetError, BrokenPipeError):
                    break
                if not chunk:
                    break
                received += chunk
    except TimeoutError:
        return None, bytes(received)
    return time.monotonic() - start, bytes(received)


async def wait_for_stream_close(reader: asyncio.StreamReader, bound: float) -> tuple[float | None, bytes]:
    """Like :func:`wait_for_close`, for a (TLS) stream."""
    start = time.monotonic()
    received = bytearray()
    try:
        async with asyncio.timeout(bound):
            while True:
                try:
                    chunk = await reader.read(4096)
                except (ConnectionError, ssl.SSLError):
                    break
                if not chunk:
                    break
                received += chunk
    except TimeoutError:
        return None, bytes(received)
    return time.monotonic() - start, bytes(received)


@dataclass
class Closes:
    """When each attacking connection was closed by the server (None: it never was, within the bound)."""

    seconds: list[float | None] = field(default_factory=list)
    refused_at_connect: int = 0  # reset before the attacker could even send (TLS handshake reset)

    @property
    def never(self) -> int:
        """Return how many were still open at the bound."""
        return sum(1 for s in self.seconds if s is None)

    def within(self, limit: float) -> int:
        """Return how many were closed within ``limit`` seconds (connect failures included)."""
        return self.refused_at_connect + sum(1 for s in self.seconds if s is not None and s < limit)


async def half_handshakes(source: str, host: str, port: int, count: int, bound: float) -> Closes:
    """Open ``count`` connections from ``source`` that send half a ClientHello; time their closing."""
    sockets = []
    closes = Closes()
    try:
        for _ in range(count):
            try:
                sock = await connect_from(source, host, port)
            except ConnectionError:
                closes.refused_at_connect += 1
                continue
            sockets.append(sock)
            with contextlib.suppress(ConnectionError):
                sock.send(HALF_CLIENT_HELLO)
        results = await asyncio.gather(*(wait_for_close(sock, bound) for sock in sockets))
        closes.seconds = [seconds for seconds, _ in results]
    finally:
        for sock in sockets:
            sock.close()
    return closes


async def half_headers(
    source: str, host: str, port: int, count: int, bound: float, *, tls: bool
) -> tuple[Closes, list[bytes]]:
    """Open ``count`` connections from ``source`` (TLS when ``tls``) that send headers without their end.

    Return the closing times and what the server answered on each connection it held.
    """
    closes = Closes()
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    raw: list[socket.socket] = []
    context = insecure_client_context() if tls else None

    async def one() -> None:
        try:
            sock = await connect_from(source, host, port)
        except ConnectionError:
            closes.refused_at_connect += 1
            return
        if context is None:
            raw.append(sock)
            with contextlib.suppress(ConnectionError):
                sock.send(HALF_HEADERS)
            return
        try:
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname="localhost"
            )
        except (ConnectionError, ssl.SSLError, OSError):
            sock.close()
            closes.refused_at_connect += 1
            return
        writer.write(HALF_HEADERS)
        streams.append((reader, writer))

    answers: list[bytes] = []
    try:
        await asyncio.gather(*(one() for _ in range(count)))
        waits: list[Awaitable[tuple[float | None, bytes]]] = [wait_for_close(s, bound) for s in raw]
        waits += [wait_for_stream_close(reader, bound) for reader, _ in streams]
        results = await asyncio.gather(*waits)
        closes.seconds = [seconds for seconds, _ in results]
        answers = [data for _, data in results]
    finally:
        for sock in raw:
            sock.close()
        for _, writer in streams:
            writer.transport.abort()
    return closes, answers


@dataclass
class Response:
    """A raw HTTP/1.1 answer."""

    status: int
    body: bytes


async def request(
    host: str,
    port: int,
    path: str,
    *,
    source: str = "127.0.0.1",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    tls: bool = False,
    preamble: bytes = b"",
    bound: float = 10.0,
) -> Response:
    """Send one request on a fresh connection from ``source`` (``preamble``: raw bytes before TLS/HTTP)."""
    async with asyncio.timeout(bound):
        sock = await connect_from(source, host, port)
        if preamble:
            await asyncio.get_running_loop().sock_sendall(sock, preamble)
        context = insecure_client_context() if tls else None
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname="localhost" if tls else None
        )
        try:
            lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            if body or method == "POST":
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            rest = await reader.read()
        finally:
            writer.transport.abort()
    return Response(status, rest)


async def keep_asking(ask: Callable[[], Awaitable[Response]], stop: asyncio.Event) -> list[float]:
    """Ask again and again until ``stop``; return each answer's seconds. Any failure raises."""
    seconds = []
    while not stop.is_set():
        start = time.monotonic()
        answer = await ask()
        if answer.status != 200:
            raise AssertionError(f"the normal client got {answer.status}: {answer.body[:200]!r}")
        seconds.append(time.monotonic() - start)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):  # pace: about 20 requests a second
                await stop.wait()
    return seconds
