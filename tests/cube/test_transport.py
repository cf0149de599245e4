"""The transport: proxy selection, the network-backend seam for attestation, and connect timeouts."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import pytest

from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.errors import ProxyError, ProxyTimeout
from cube_lsp.cube.transport import make_transport, select_proxy
from cube_lsp.settings import AttestationSettings, Settings, Timeouts
from cube_wire.errors import CubeError
from tests.support.scripted_backend import Reply, ScriptedBackend

from ._helpers import collect, settings_for

PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.mark.parametrize(
    ("endpoint", "explicit", "environ", "expected"),
    [
        ("https://cube.example.com", None, {}, None),
        ("https://cube.example.com", None, {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        (
            "https://cube.example.com",
            None,
            {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"},
            "http://low:1",
        ),
        ("https://cube.example.com", None, {"HTTP_PROXY": "http://p:3128"}, None),
        ("http://cube.example.com", None, {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://cube.example.com", None, {"ALL_PROXY": "http://p:3128"}, "http://p:3128"),
        (
            "https://cube.example.com",
            "http://mine:8080",
            {"HTTPS_PROXY": "http://p:3128"},
            "http://mine:8080",
        ),
        ("https://cube.example.com", "http://mine:8080", {"NO_PROXY": "*"}, "http://mine:8080"),
        ("http://127.0.0.1:8900", None, {"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1"}, None),
        ("http://127.0.0.1:8900", None, {"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.0/8"}, None),
        ("http://127.0.0.1:8900", None, {"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1:8900"}, None),
        (
            "http://127.0.0.1:8900",
            None,
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1:9999"},
            "http://p:1",
        ),
        ("http://[::1]:8900", None, {"HTTP_PROXY": "http://p:1", "NO_PROXY": "::1"}, None),
        ("http://[::1]:8900", None, {"HTTP_PROXY": "http://p:1", "NO_PROXY": "[::1]:8900"}, None),
        ("http://localhost:8900", None, {"HTTP_PROXY": "http://p:1", "no_proxy": "localhost"}, None),
        ("https://a.cube.example.com", None, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, None),
        (
            "https://a.cube.example.com",
            None,
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*.example.com"},
            None,
        ),
        ("https://example.com", None, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, None),
        (
            "https://notexample.com",
            None,
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"},
            "http://p:1",
        ),
        ("https://cube.example.com", None, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other, *"}, None),
    ],
)
def test_select_proxy(
    endpoint: str, explicit: str | None, environ: dict[str, str], expected: str | None
) -> None:
    assert select_proxy(endpoint, explicit, environ) == expected


@dataclass
class LoopbackProxy:
    """A tiny forward HTTP proxy on 127.0.0.1 that records request lines and answers for the origin."""

    url: str = ""
    request_lines: list[str] = field(default_factory=list)


@pytest.fixture
async def loopback_proxy() -> AsyncIterator[LoopbackProxy]:
    proxy = LoopbackProxy()
    body = b'{"response": "via-proxy", "done": true}\n'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            proxy.request_lines.append(lines[0])
            length = next(
                (int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")), 0
            )
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_environment_proxy_is_used(
    scripted_backend: ScriptedBackend, loopback_proxy: LoopbackProxy, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", loopback_proxy.url)
    async with CubeClient(settings_for(scripted_backend)) as client:
        assert await collect(client) == ["via-proxy"]
    assert loopback_proxy.request_lines == [f"POST {scripted_backend.url}/test-domain/api/generate HTTP/1.1"]
    assert scripted_backend.request_count == 0


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.0/8", "*"])
async def test_no_proxy_keeps_loopback_direct(
    scripted_backend: ScriptedBackend,
    loopback_proxy: LoopbackProxy,
    clean_proxy_env: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", loopback_proxy.url)
    clean_proxy_env.setenv("NO_PROXY", no_proxy)
    scripted_backend.script(Reply.stream("direct"))
    async with CubeClient(settings_for(scripted_backend)) as client:
        assert await collect(client) == ["direct"]
    assert loopback_proxy.request_lines == []
    assert scripted_backend.request_count == 1


async def test_proxy_setting_wins_over_the_environment(
    scripted_backend: ScriptedBackend, loopback_proxy: LoopbackProxy, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    async with CubeClient(settings_for(scripted_backend, proxy=loopback_proxy.url)) as client:
        assert await collect(client) == ["via-proxy"]
    assert len(loopback_proxy.request_lines) == 1


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:1080", "http://"])
async def test_unusable_proxy_setting_stops_sending(scripted_backend: ScriptedBackend, proxy: str) -> None:
    async with CubeClient(settings_for(scripted_backend, proxy=proxy)) as client:
        with pytest.raises(ProxyError) as caught:
            await collect(client)
    assert caught.value.code == "proxy.not_configured"
    assert scripted_backend.request_count == 0


# -- the network-backend seam the attested transport plugs into ---------------------------------


class SpyStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, backend: SpyBackend) -> None:
        self._inner = inner
        self._backend = backend

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        peer = stream.get_extra_info("ssl_object").getpeercert(binary_form=True)
        self._backend.handshakes.append(peer)
        if self._backend.refuse:
            await stream.aclose()
            raise CubeError("peer key is not attested", code="attestation.spki_not_pinned")
        return SpyStream(stream, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class SpyBackend(httpcore.AsyncNetworkBackend):
    """Wraps the default backend the way the attestation check will, and records every handshake."""

    def __init__(self, *, refuse: bool = False) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.refuse = refuse
        self.connects = 0
        self.handshakes: list[bytes] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects += 1
        return SpyStream(
            await self._inner.connect_tcp(host, port, timeout, local_address, socket_options), self
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def server_cert_der(backend: ScriptedBackend) -> bytes:
    assert backend.tls is not None
    return ssl.PEM_cert_to_DER_cert(backend.tls.server_cert.read_text())


async def test_network_backend_sees_every_new_tls_connection(scripted_backend_tls: ScriptedBackend) -> None:
    spy = SpyBackend()
    settings = settings_for(scripted_backend_tls)
    scripted_backend_tls.script(Reply.stream("one"), Reply.stream("two"))
    async with CubeClient(
        settings, transport_factory=lambda s: make_transport(s, network_backend=spy)
    ) as client:
        assert await collect(client) == ["one"]
        assert await collect(client) == ["two"]  # same pooled connection: no second handshake
    assert spy.connects == 1
    assert spy.handshakes == [server_cert_der(scripted_backend_tls)]


async def test_network_backend_can_refuse_before_anything_is_sent(
    scripted_backend_tls: ScriptedBackend,
) -> None:
    spy = SpyBackend(refuse=True)
    settings = settings_for(scripted_backend_tls)
    async with CubeClient(
        settings, transport_factory=lambda s: make_transport(s, network_backend=spy)
    ) as client:
        with pytest.raises(CubeError) as caught:
            await collect(client)
    assert caught.value.code == "attestation.spki_not_pinned"
    assert len(spy.handshakes) == 1
    assert scripted_backend_tls.request_count == 0


# -- connect timeout -----------------------------------------------------------------------------


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    # A listener with a backlog of 0 that never accepts: once one connection fills the queue, the
    # kernel drops further SYNs, so a connect hangs until the client's connect timeout.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


async def test_connect_timeout(unaccepting_port: int) -> None:
    settings = Settings(
        endpoint=f"http://127.0.0.1:{unaccepting_port}",
        domain="d",
        token="t",
        timeouts=Timeouts(connect_ms=150),
        attestation=AttestationSettings(mode="off"),
    )
    async with CubeClient(settings) as client:
        with pytest.raises(ProxyTimeout) as caught:
            await collect(client)
    assert caught.value.code == "proxy.timeout"
    assert caught.value.phase == "connect"
