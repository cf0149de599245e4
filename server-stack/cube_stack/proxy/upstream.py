"""The proxy's HTTP client towards the model runtime (the hop inside the CVM), on aiohttp.

Why aiohttp and not httpx here: bench/proxy.py showed 80 % of the proxy's CPU per request inside
httpcore's connection pool (it re-checks every pooled connection's socket on every request, through
anyio) and its pure-Python HTTP parser. aiohttp's pool and C parser make that hop cheap. The client
side of cube-lsp keeps httpx: there the attested transport needs httpcore's network-backend seam.

:class:`RuntimeClient` opens its sessions lazily inside the running loop (aiohttp requires that) and
hands out :class:`UpstreamResponse` objects with the few members the forwarding code uses. aiohttp
errors are translated here, once, into :class:`UpstreamError` kinds. A runtime on a Unix socket
(``unix:/path`` in the settings; the built-in runtime of ``cube-stack up``) gets a session of its own
over ``aiohttp.UnixConnector``; TCP runtimes share one pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import aiohttp

from cube_stack.proxy.settings import ProxySettings


class UpstreamError(Exception):
    """The runtime could not be reached or broke the exchange; ``kind`` says how."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "connect_timeout", "connect_refused" or "broken"


class UpstreamResponse:
    """A streaming response from the runtime."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.raw_headers: Sequence[tuple[bytes, bytes]] = response.raw_headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """Yield body bytes as they arrive (no decompression: bytes pass through as sent)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError("broken") from exc

    def arrived_body(self) -> bytes | None:
        """Return the whole body if it has already arrived with the headers, else None.

        A small answer usually comes in the same packets as its headers; relaying it needs no pump and
        no disconnect watcher (there is nothing left to wait for), which halves the event-loop work of a
        small request.
        """
        content = self._response.content
        if not content.is_eof() or content.exception() is not None:
            return None
        return content.read_nowait()

    async def aclose(self) -> None:
        """Return the connection to the pool if the body was read to its end, else close it.

        Closing mid-body is how a client's disconnect reaches the runtime: it sees the connection go.
        """
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class RuntimeClient:
    """A pooled client for one runtime; connect timeout only, other phases are timed by the caller."""

    def __init__(self, settings: ProxySettings) -> None:
        self._settings = settings
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}  # by Unix socket path; None: TCP

    def _open_session(self, socket_path: str | None) -> aiohttp.ClientSession:
        settings = self._settings
        connector: aiohttp.BaseConnector
        if socket_path is None:
            connector = aiohttp.TCPConnector(
                limit=settings.max_upstream_connections,
                keepalive_timeout=60,
                enable_cleanup_closed=False,
            )
        else:
            connector = aiohttp.UnixConnector(
                path=socket_path, limit=settings.max_upstream_connections, keepalive_timeout=60
            )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout),
            auto_decompress=False,
            trust_env=False,  # no proxy from the environment: the runtime is local to the CVM
            skip_auto_headers=("User-Agent", "Content-Type"),
        )

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        socket_path: str | None = None,
    ) -> UpstreamResponse:
        """Send a request (over the Unix socket at ``socket_path`` when given); return at the headers."""
        session = self._sessions.get(socket_path)
        if session is None:
            session = self._sessions[socket_path] = self._open_session(socket_path)
        try:
            response = await session.request(
                method, url, headers=list(headers), data=body, allow_redirects=False
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamError("connect_timeout") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError("connect_refused") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("broken") from exc
        return UpstreamResponse(response)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
