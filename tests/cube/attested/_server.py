"""An ATTESTED TEST SERVER: uvicorn over TLS on 127.0.0.1:0 playing the proxy's attestation route.

``POST /{domain}/attestation`` answers the in-CVM agent's real document (``cube_stack.agent.Agent`` over a
``SimulatedProvider``), bound to this server's own TLS key unless a test says otherwise; ``POST
/{domain}/api/generate`` records the body (the code) and streams a fixed NDJSON completion. Every server
gets a fresh key from the test-time trustme CA, so two servers are two different SPKIs. Also here: a
RECORDING network backend that sees every byte the client writes (inside TLS) and can redirect connects to
another port, like a TCP-passthrough load balancer switching CVMs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cube_stack.agent import Agent, SimulatedProvider
from cube_stack.net import bind_tcp

DOMAIN = "attested-domain"
TOKEN = "attested-test-token-51c2"
COMPLETION = ("def ", "add(a, b):")


def spki_of_pem(cert_pem: bytes) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, exit_event: asyncio.Event) -> None:
        super().__init__(config)
        self._exit_event = exit_event

    async def main_loop(self) -> None:
        await self._exit_event.wait()


@dataclass
class Calls:
    """What one test's requests did to the server."""

    attestations: int = 0
    nonces: list[bytes] = field(default_factory=list)
    attestation_authorizations: list[str | None] = field(default_factory=list)  # Authorization headers
    generate_bodies: list[bytes] = field(default_factory=list)


class AttestedServer:
    """The ATTESTED TEST SERVER; ``start()`` / ``stop()`` or a context manager."""

    def __init__(self, directory: Path, ca: trustme.CA, provider: SimulatedProvider) -> None:
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        self.cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(self.key_file))
        self.spki_der = spki_of_pem(cert.cert_chain_pems[0].bytes())
        self.provider = provider
        self.lock = threading.Lock()
        self.reset()
        self._exit = asyncio.Event()
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    def reset(self) -> None:
        """Forget the previous test: counters, tampering, the bound key, connection handling."""
        with getattr(self, "lock", threading.Lock()):
            self.calls = Calls()
            self.bind_spki: bytes | None = None  # None: this server's own key (an honest agent)
            self.tamper: Callable[[dict[str, Any]], dict[str, Any]] | None = None
            self.attestation_status = 200
            self.attestation_needs_token = False  # True: 401 without a token there (upstream Cube does)
            self.close_connections = False  # send `Connection: close`: every request is a new connection

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> AttestedServer:
        sock = bind_tcp("127.0.0.1", 0)
        self._socket, self.port = sock, sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            ssl_certfile=str(self.cert_file),
            ssl_keyfile=str(self.key_file),
        )
        self._loop = asyncio.new_event_loop()
        self._server = _Server(config, self._exit)
        self._thread = threading.Thread(target=self._run, name=f"attested-server:{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the attested server did not start within 10 s")
        return self

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None and self._socket is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self) -> None:
        config = self._server.config
        if not config.loaded:
            config.load()
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup(sockets=[self._socket])
        self._started.set()
        await self._server.main_loop()
        await self._server.shutdown(sockets=[self._socket])

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._exit.set)
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> AttestedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the app ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"connection": "close"} if self.close_connections else {}

    def _app(self) -> Starlette:
        async def attestation(request: Request) -> Response:
            # Like our proxy: no token needed (a client attests before it hands one over).
            authorization = request.headers.get("authorization")
            with self.lock:
                self.calls.attestation_authorizations.append(authorization)
                needs_token = self.attestation_needs_token
            if needs_token and authorization != f"Bearer {TOKEN}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            nonce = bytes.fromhex(json.loads(await request.body())["nonce"])
            with self.lock:
                self.calls.attestations += 1
                self.calls.nonces.append(nonce)
                status, tamper, bound = self.attestation_status, self.tamper, self.bind_spki
            if status != 200:
                return JSONResponse({"error": "attestation agent not configured"}, status_code=status)
            agent_key = bound or self.spki_der
            document = await Agent(self.provider, agent_key).attest(nonce, agent_key)
            if tamper is not None:
                document = tamper(document)
            return JSONResponse(document, headers=self._headers())

        async def generate(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            body = await request.body()
            with self.lock:
                self.calls.generate_bodies.append(body)
            lines = [{"response": text, "done": False} for text in COMPLETION]
            lines.append({"response": "", "done": True})
            payload = "".join(json.dumps(line) + "\n" for line in lines)
            return Response(payload, media_type="application/x-ndjson", headers=self._headers())

        return Starlette(
            routes=[
                Route("/{domain}/attestation", attestation, methods=["POST"]),
                Route("/{domain}/api/generate", generate, methods=["POST"]),
            ]
        )


# -- the client side ---------------------------------------------------------------------------


class RecordingStream(httpcore.AsyncNetworkStream):
    """Records every write (plain text before TLS, HTTP inside TLS) of one connection."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, backend: RecordingBackend, index: int) -> None:
        self._inner = inner
        self._backend = backend
        self.index = index

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self._backend.writes.append((self.index, bytes(buffer)))
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        self._backend.handshakes.append(stream.get_extra_info("ssl_object").getpeercert(binary_form=True))
        return RecordingStream(stream, self._backend, self.index)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """The real network, recorded; ``redirect_to`` sends every connect to that port instead."""

    def __init__(self, redirect_to: int | None = None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.redirect_to = redirect_to
        self.connects = 0
        self.handshakes: list[bytes] = []
        self.writes: list[tuple[int, bytes]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects += 1
        target = self.redirect_to or port
        stream = await self._inner.connect_tcp(host, target, timeout, local_address, socket_options)
        return RecordingStream(stream, self, self.connects)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def sent(self) -> bytes:
        """Return everything written, in order."""
        return b"".join(data for _, data in self.writes)
