"""Forwarding to the model runtime: every upstream chunk goes to the client the moment it arrives.

One pure-ASGI endpoint per route of the table. The request body is read (within the size cap), the
client's ``Authorization`` and hop-by-hop headers are dropped, and the request is sent by the
:mod:`upstream` client (aiohttp) in streaming mode. Timeouts are per phase -- connect, first byte
(response headers) and idle (between two chunks) -- and there is no total limit, so a generation
runs as long as the runtime keeps producing.
Each chunk is a separate ``http.response.body`` message, which uvicorn writes at once (NDJSON and SSE
alike). A watcher on ``receive`` notices the client leaving and cancels the upstream request, so the
runtime stops generating for nobody. Upstream errors are translated to proxy errors here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence

from starlette.types import Receive, Scope, Send

from cube_stack.proxy.errors import (
    CubeProxyError,
    RuntimeTimeoutError,
    RuntimeUnavailableError,
    error_response,
)
from cube_stack.proxy.metrics import ProxyMetrics
from cube_stack.proxy.middleware import audit_record, read_body
from cube_stack.proxy.routes import ProxyRoute
from cube_stack.proxy.settings import ProxySettings
from cube_stack.proxy.upstream import RuntimeClient, UpstreamError, UpstreamResponse
from cube_stack.unix_socket import unix_socket_path

log = logging.getLogger(__name__)

# RFC 9110 §7.6.1 connection-specific fields, plus what the proxy sets itself or must never pass on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_DROP_REQUEST = HOP_BY_HOP | {
    "host",
    "authorization",
    "cookie",
    "content-length",
    "expect",
    "accept-encoding",
}
_DROP_RESPONSE = HOP_BY_HOP | {"content-length", "server", "date", "set-cookie"}
STREAM_TYPES = ("application/x-ndjson", "text/event-stream", "application/jsonl")


def _connection_tokens(headers: list[tuple[str, str]]) -> set[str]:
    names: set[str] = set()
    for name, value in headers:
        if name == "connection":
            names |= {token.strip().lower() for token in value.split(",") if token.strip()}
    return names


def request_headers(raw: list[tuple[bytes, bytes]], api_key: str | None) -> list[tuple[str, str]]:
    """Return the headers to send upstream: no hop-by-hop fields, no client credentials."""
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
    drop = _DROP_REQUEST | _connection_tokens(headers)
    kept = [(k, v) for k, v in headers if k not in drop and not k.startswith("x-forwarded-")]
    # Identity only: the body is relayed raw, and a client that did not ask for gzip must not get it.
    kept.append(("accept-encoding", "identity"))
    if api_key:
        kept.append(("authorization", f"Bearer {api_key}"))
    return kept


def response_headers(raw: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Return the runtime's response headers minus hop-by-hop fields and the length (we re-chunk)."""
    items = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
    drop = _DROP_RESPONSE | _connection_tokens(items)
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items if k not in drop]


def stream_error_tail(content_type: str, message: str, code: str) -> bytes:
    """Return an in-stream error event in the stream's own format (the status line is already sent)."""
    if content_type.startswith("text/event-stream"):
        event = {"error": {"message": message, "type": "cube_proxy", "code": code}}
        return b"data: " + json.dumps(event).encode() + b"\n\n"
    return json.dumps({"error": message, "code": code}).encode() + b"\n"


def new_runtime_client(settings: ProxySettings) -> RuntimeClient:
    """Return the shared client for the runtime: connect timeout only; the rest is per phase."""
    return RuntimeClient(settings)


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class ForwardEndpoint:
    """The ASGI handler of one forwarded route."""

    def __init__(
        self,
        route: ProxyRoute,
        *,
        settings: ProxySettings,
        client: RuntimeClient,
        metrics: ProxyMetrics,
    ) -> None:
        base = settings.ollama_url if route.api == "ollama" else settings.effective_openai_url
        self.route = route
        # A runtime on a Unix socket (unix:/path, validated in the settings) is asked for the route's
        # path on the socket; the host name only fills the Host header.
        self.socket_path = unix_socket_path(base)
        self.url = ("http://localhost" if self.socket_path else base.rstrip("/")) + route.suffix
        self.target = base if self.socket_path else self.url  # for logs
        self.settings = settings
        self.client = client
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward the request and relay the response chunk by chunk."""
        record = audit_record(scope)
        try:
            body = await read_body(receive)
            response = await self._open(scope, body)
        except CubeProxyError as exc:
            record.outcome = exc.code
            await error_response(exc)(scope, receive, send)
            return
        try:
            await self._relay(scope, response, receive, send)
        finally:
            await response.aclose()

    async def _open(self, scope: Scope, body: bytes) -> UpstreamResponse:
        headers = request_headers(scope["headers"], self.settings.runtime_api_key)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.first_byte_timeout):
                # The route's fixed path: the client's query string is not forwarded.
                response = await self.client.send(
                    scope["method"], self.url, headers, body, socket_path=self.socket_path
                )
        except TimeoutError:
            raise RuntimeTimeoutError(
                f"the model runtime did not answer within {self.settings.first_byte_timeout:g} s"
            ) from None
        except UpstreamError as exc:
            if exc.kind == "connect_timeout":
                limit = self.settings.connect_timeout
                raise RuntimeUnavailableError(
                    f"the model runtime did not accept a connection within {limit:g} s"
                ) from None
            if exc.kind == "connect_refused":
                log.warning("proxy.runtime_unreachable url=%s", self.target, extra={"event": "proxy.runtime"})
                raise RuntimeUnavailableError(
                    "the model runtime is not reachable (connection refused); is it running?"
                ) from None
            raise RuntimeUnavailableError("the model runtime broke the connection") from None
        self.metrics.observe_first_byte(self.route.template, time.perf_counter() - started)
        return response

    async def _relay(self, scope: Scope, response: UpstreamResponse, receive: Receive, send: Send) -> None:
        record = audit_record(scope)
        headers = response_headers(response.raw_headers)
        content_type = next((v.decode("latin-1") for k, v in headers if k == b"content-type"), "")
        record.stream = content_type.startswith(STREAM_TYPES)
        if record.stream:
            headers.append((b"x-accel-buffering", b"no"))  # tell any buffering hop not to
            self.metrics.stream_started()
        try:
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            body = response.arrived_body()
            if body is not None:
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            pump = asyncio.ensure_future(self._pump(response, content_type, send))
            watch = asyncio.ensure_future(_wait_for_disconnect(receive))
            try:
                await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, watch):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task  # a pump failure (other than cancellation) propagates here
            if not pump.cancelled():
                record.outcome = pump.result()
            else:
                # The client left: the pump was cancelled mid-await, and response.aclose() (in
                # __call__) closes the upstream connection, which the runtime sees as a disconnect.
                record.outcome = "client_disconnected"
        finally:
            if record.stream:
                self.metrics.stream_ended()

    async def _pump(self, response: UpstreamResponse, content_type: str, send: Send) -> str:
        """Send each upstream chunk as it arrives; return how the body ended."""
        chunks: AsyncIterator[bytes] = response.aiter_raw()
        outcome = "ok"
        try:
            while True:
                try:
                    async with asyncio.timeout(self.settings.idle_timeout):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    outcome = "cube_proxy.runtime_idle_timeout"
                    message = f"the model runtime sent nothing for {self.settings.idle_timeout:g} s"
                except UpstreamError:
                    outcome = "cube_proxy.runtime_stream_broken"
                    message = "the model runtime broke the stream"
                else:
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    continue
                log.warning("proxy.stream_ended_early outcome=%s", outcome, extra={"event": "proxy.stream"})
                tail = stream_error_tail(content_type, message, outcome)
                await send({"type": "http.response.body", "body": tail, "more_body": True})
                break
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return outcome
