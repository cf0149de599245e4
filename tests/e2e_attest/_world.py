"""THE WORLD of the end-to-end attestation suite: real proxy, agent and auth service, a RECORDING backend.

Everything server-side runs in one thread with its own event loop, started once per session:

* the SuperMQ-compatible auth service on SQLite (fast argon2), bootstrapped like ``cube-stack up`` with a
  domain and a personal access token;
* a model BACKEND: a raw asyncio TCP server that appends every byte it receives to one buffer and answers
  a minimal Ollama NDJSON stream, so "did any code reach the model?" is a search in that buffer;
* three real proxies over TLS on 127.0.0.1 port 0 (``create_proxy_app`` + ``ProxyServer``), each with its
  own in-memory key: ``a`` with the product's self-signed identity (``new_tls_identity``), ``b`` and
  ``bare`` with certificates from a test CA (trustme); ``a`` and ``b`` with the real agent (``Agent``
  over a ``SimulatedProvider``) behind an :class:`AgentSwitch`, and ``bare`` with no
  agent at all (its attestation route answers 501);
* an :class:`Interposer` in front of the ``a`` and ``b`` apps that can rewrite the attestation answer
  byte for byte (garbage, 404) or make every response close its connection (a load balancer's view);
* a MITM RELAY: a TLS server with a key of its own whose certificate the test CA signed (the client's CA
  bundle trusts it, as a rogue or compromised CA would make it) that terminates the client's TLS and
  relays every byte to proxy ``a``.

The client side is an :class:`Editor`: the real ``CubeClient`` with the real attested transport over a
:class:`ClientNet` network backend that records what the client writes (inside TLS) and can send a
connection to another port (a TCP-passthrough load balancer switching CVMs) or resolve a made-up host
name to 127.0.0.1.

Why a CA: every self-signed proxy certificate has the subject ``CN=cube-proxy``, and OpenSSL trusts only the
first of several self-signed certificates with one subject in a CA bundle, so a bundle cannot list two
proxies' self-signed certificates (the second fails with "self-signed certificate").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import secrets
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpcore
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.types import Message, Receive, Scope, Send

from cube_lsp.attestation import Product
from cube_lsp.cube.attested import (
    AttestationStatus,
    AttestedTransport,
    AttestorOptions,
    make_client_transport,
)
from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.requests import FimRequest
from cube_lsp.settings import Settings, SettingsError, parse_settings
from cube_stack.agent import (
    Agent,
    SimulatedOptions,
    SimulatedProvider,
    SimulatedRoot,
    SimulatedTcb,
    TlsIdentity,
    new_tls_identity,
    spki_sha256,
)
from cube_stack.auth.requests import parse_new_domain, parse_new_pat
from cube_stack.auth.service import AuthService
from cube_stack.auth.settings import AuthSettings
from cube_stack.net import bind_tcp
from cube_stack.proxy.app import create_proxy_app
from cube_stack.proxy.authclient import InProcessAuthClient
from cube_stack.proxy.server import ProxyServer
from cube_stack.proxy.settings import ProxySettings
from cube_wire.errors import CubeError

ADMIN_PASSWORD = "e2e-attest-admin-password"
MODEL = "qwen2.5-coder:1.5b"
COMPLETION = ("return ", "42")
TCB_FLOOR = {"bootloader": 4, "snp": 24, "microcode": 219}
FIRMWARE_FLOOR = {"major": 1, "minor": 55, "build": 21}

Document = dict[str, Any]
Rewrite = Callable[[int, bytes], tuple[int, bytes]]


# --------------------------------------------------------------------------------------------- backend


class RecordingBackend:
    """The MODEL BACKEND: keeps every byte any connection sent it, answers an Ollama NDJSON stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self.requests = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        sock = bind_tcp("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def mark(self) -> int:
        """Return how many bytes were received so far (for :meth:`since`)."""
        with self._lock:
            return len(self._buffer)

    def since(self, mark: int) -> bytes:
        """Return every byte received after ``mark``."""
        with self._lock:
            return bytes(self._buffer[mark:])

    def saw(self, needle: str | bytes) -> bool:
        """Return whether ``needle`` occurs anywhere in what the backend ever received."""
        data = needle.encode() if isinstance(needle, str) else needle
        with self._lock:
            return data in self._buffer

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = bytearray()
        try:
            while not _complete_request(received):
                chunk = await reader.read(65536)
                if not chunk:
                    return
                received += chunk
                with self._lock:
                    self._buffer += chunk
            with self._lock:
                self.requests += 1
            lines = [{"model": MODEL, "response": text, "done": False} for text in COMPLETION]
            lines.append({"model": MODEL, "response": "", "done": True, "done_reason": "stop"})
            body = "".join(json.dumps(line) + "\n" for line in lines).encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _complete_request(data: bytearray) -> bool:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head, body = bytes(data[:end]).lower(), data[end + 4 :]
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    if b"transfer-encoding: chunked" in head:
        return body.endswith(b"0\r\n\r\n")
    return True


# --------------------------------------------------------------------------------------------- proxy side


class AgentSwitch:
    """The real :class:`Agent` as the proxy's attestation agent, re-made per request from the test's choice.

    ``provider`` picks what the CVM is (a variant of the simulated platform); ``agent_key`` is the key the
    agent was made for (default: the proxy's own TLS key); ``bind_key`` is the key the proxy asks it to bind
    (default: the proxy's own, which is what the real endpoint passes); ``document`` rewrites the agent's
    answer before the proxy sends it (tampering, replay).
    """

    def __init__(self, provider: SimulatedProvider) -> None:
        self.honest = provider
        self.reset()

    def reset(self) -> None:
        """Back to an honest agent over the honest provider."""
        self.provider = self.honest
        self.agent_key: bytes | None = None
        self.bind_key: bytes | None = None
        self.document: Callable[[Document], Document] | None = None
        self.calls = 0

    async def attest(self, nonce: bytes, spki_der: bytes) -> Document:
        """Answer as the proxy's AttestationAgent."""
        self.calls += 1
        agent = Agent(self.provider, self.agent_key or spki_der)
        document = await agent.attest(nonce, self.bind_key or spki_der)
        rewrite = self.document
        return rewrite(document) if rewrite is not None else document


class Interposer:
    """An ASGI layer in front of the real proxy app: rewrite the attestation answer, or close connections."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # ProxyServer reads the TLS identity from here
        self.reset()

    def reset(self) -> None:
        """Pass everything through unchanged."""
        self.rewrite: Rewrite | None = None
        self.close_connections = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve through the real app, changing only what the test asked for."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rewrite = self.rewrite if scope["path"].endswith("/attestation") else None
        close = self.close_connections
        if rewrite is None:
            await self.app(scope, receive, _closing(send) if close else send)
            return
        status, body = 500, bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(scope, receive, capture)
        status, answer = rewrite(status, bytes(body))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def _closing(send: Send) -> Send:
    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing


@dataclass
class RunningProxy:
    """One real proxy over TLS and the handles a test uses to steer it."""

    name: str
    identity: TlsIdentity
    server: ProxyServer
    switch: AgentSwitch | None
    interposer: Interposer | None
    port: int = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def spki_sha256(self) -> str:
        return self.identity.spki_sha256

    def reset(self) -> None:
        if self.switch is not None:
            self.switch.reset()
        if self.interposer is not None:
            self.interposer.reset()


class MitmRelay:
    """A TLS server holding its own key that relays every byte, both ways, to a real proxy over TLS."""

    def __init__(self, identity: TlsIdentity, target: RunningProxy) -> None:
        self.identity = identity
        self.target = target
        self.port = 0
        self.connections = 0
        self.forwarded = bytearray()  # what the client sent through the relay (after TLS termination)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = bind_tcp("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock, ssl=self.identity.ssl_context())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            context = ssl.create_default_context(cadata=self.target.identity.cert_pem.decode("ascii"))
            up_reader, upstream = await asyncio.open_connection(
                "127.0.0.1", self.target.port, ssl=context, server_hostname="127.0.0.1"
            )
            await asyncio.gather(
                _pump(reader, upstream, self.forwarded),
                _pump(up_reader, writer, None),
                return_exceptions=True,
            )
        except (OSError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()
                    with contextlib.suppress(OSError, ssl.SSLError, asyncio.CancelledError):
                        await stream.wait_closed()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bytearray | None) -> None:
    try:
        while data := await source.read(65536):
            if record is not None:
                record += data
            sink.write(data)
            await sink.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        if sink.can_write_eof():
            with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
                sink.write_eof()
        sink.close()


# --------------------------------------------------------------------------------------------- the world


def _providers() -> tuple[dict[str, SimulatedProvider], SimulatedRoot, SimulatedRoot]:
    """The simulated platforms: one honest CVM and the variants an attacker (or a stale host) would run."""
    root = SimulatedRoot.generate(Product.MILAN, rsa_bits=2048)
    other_root = SimulatedRoot.generate(Product.MILAN, rsa_bits=2048)

    def sim(on: SimulatedRoot = root, **options: Any) -> SimulatedProvider:
        return SimulatedProvider(SimulatedOptions(rsa_bits=2048, **options), root=on)

    providers = {
        "honest": sim(),
        "other_measurement": sim(measurement=hashlib.sha384(b"an image nobody reviewed").digest()),
        "debug": sim(debug=True),
        "old_tcb": sim(tcb=SimulatedTcb(snp=20)),
        "old_firmware": sim(firmware=(1, 51, 3)),
        "vmpl1": sim(vmpl=1),
        "other_host_data": sim(host_data=b"\x01" * 32),
        "other_root": sim(other_root),
    }
    return providers, root, other_root


class World:
    """The server side, in a thread with its own event loop; ``start()`` / ``stop()``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.providers, self.root, self.other_root = _providers()
        self.backend = RecordingBackend()
        self.proxies: dict[str, RunningProxy] = {}
        self.relay: MitmRelay | None = None
        self.domain = ""
        self.token = ""
        self.ca = trustme.CA()
        self.ca_bundle = directory / "ca-bundle.pem"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="e2e-attest-world", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> World:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError("the e2e attestation world did not start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def reset(self) -> None:
        """Make every proxy honest and transparent again."""
        for proxy in self.proxies.values():
            proxy.reset()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            try:
                await self._setup(stack)
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self._ready.set()
            await self._stop.wait()

    async def _setup(self, stack: contextlib.AsyncExitStack) -> None:
        service = await AuthService.open(
            AuthSettings(
                database_url=f"sqlite+aiosqlite:///{self.directory / 'auth.db'}",
                data_dir=self.directory,
                argon2_time_cost=1,
                argon2_memory_kib=8,
                sqlite_synchronous="off",
                admin_username="admin",
                admin_email="admin@example.com",
                admin_password=ADMIN_PASSWORD,
            )
        )
        stack.push_async_callback(service.close)
        self.domain, self.token = await _bootstrap(service)
        await self.backend.start()
        stack.push_async_callback(self.backend.stop)
        self.proxies["a"] = await self._serve_proxy(
            stack, service, "a", new_tls_identity(("127.0.0.1", "localhost"), days=1), with_agent=True
        )
        self.proxies["b"] = await self._serve_proxy(stack, service, "b", self._ca_identity(), with_agent=True)
        self.proxies["bare"] = await self._serve_proxy(
            stack, service, "bare", self._ca_identity(), with_agent=False
        )
        self.relay = MitmRelay(self._ca_identity(), self.proxies["a"])
        await self.relay.start()
        stack.push_async_callback(self.relay.stop)
        # The client's CA bundle trusts every certificate here, the relay's too: TLS alone proves nothing.
        self.ca_bundle.write_bytes(self.proxies["a"].identity.cert_pem + self.ca.cert_pem.bytes())

    def _ca_identity(self) -> TlsIdentity:
        """Return a TLS identity (a fresh P-256 key) whose certificate the test CA signed."""
        leaf = self.ca.issue_cert("127.0.0.1", "localhost")
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        return TlsIdentity(private_key=key, certificate=certificate)  # type: ignore[arg-type]

    async def _serve_proxy(
        self,
        stack: contextlib.AsyncExitStack,
        service: AuthService,
        name: str,
        identity: TlsIdentity,
        *,
        with_agent: bool,
    ) -> RunningProxy:
        settings = ProxySettings(
            host="127.0.0.1",
            port=0,
            tls=True,
            auth_url="http://127.0.0.1:9",  # unused: auth runs in process
            ollama_url=self.backend.url,
            shutdown_grace=1.0,
            rate_limit_per_minute=0,  # the suite sends well over a burst's worth with one token
            attestation_rate_per_minute=0,  # ... and attests far more often than a client would
        )
        auth = InProcessAuthClient(service)
        stack.push_async_callback(auth.aclose)
        switch = AgentSwitch(self.providers["honest"]) if with_agent else None
        app = create_proxy_app(settings, auth=auth, agent=switch, identity=identity)
        interposer = Interposer(app) if with_agent else None
        server = ProxyServer(interposer or app, settings)  # type: ignore[arg-type]
        sock = server.bind()  # connections queue from here on: no readiness polling
        serving = asyncio.create_task(server.serve(sockets=[sock]))

        async def stop() -> None:
            server.stop()
            with contextlib.suppress(Exception):
                await serving
            sock.close()

        stack.push_async_callback(stop)
        return RunningProxy(name, identity, server, switch, interposer, port=sock.getsockname()[1])

    # -- helpers for tests ----------------------------------------------------------------------

    def policy(self, **changes: Any) -> dict[str, Any]:
        """Return the client policy for the honest CVM (with TCB and firmware floors), changed as asked."""
        floor = {kind: dict(TCB_FLOOR) for kind in ("current", "reported", "committed", "launch")}
        base = self.providers["honest"].client_policy() | {
            "minimum_tcb": floor,
            "minimum_firmware": {"current": dict(FIRMWARE_FLOOR), "committed": dict(FIRMWARE_FLOOR)},
        }
        return base | changes

    def capture_document(self, proxy: str = "a") -> Document:
        """Return a genuine document the honest agent made for ``proxy`` and a nonce of the past."""
        identity = self.proxies[proxy].identity
        agent_call = Agent(self.providers["honest"], identity.spki_der).attest(
            secrets.token_bytes(32), identity.spki_der
        )
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(agent_call, self._loop).result(10)


async def _bootstrap(service: AuthService) -> tuple[str, str]:
    """Create a domain and a PAT for it as the bootstrap admin, as ``cube-stack up`` does."""
    pair = await service.issue_tokens("admin", ADMIN_PASSWORD)
    admin = await service.authenticate(pair.access_token)
    domain = await service.create_domain(admin, parse_new_domain({"name": "Cube", "route": "cube"}))
    scopes = [{"domain_id": domain.id, "entity_type": "llm", "entity_id": "*", "operation": "*"}]
    pat = parse_new_pat({"name": "e2e-attest", "description": "", "duration": "24h", "scopes": scopes})
    _, token = await service.create_pat(admin, pat)
    return domain.id, token


# --------------------------------------------------------------------------------------------- client side


@dataclass
class Connection:
    """One TCP connection the client opened, as seen from the client."""

    port: int
    peer_spki_sha256: str | None = None
    writes: list[bytes] = field(default_factory=list)


class ClientNet(httpcore.AsyncNetworkBackend):
    """The client's real network, recorded; ``redirect_to`` sends new connections to another port."""

    def __init__(self, hosts: dict[str, str] | None = None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.hosts = hosts or {}
        self.redirect_to: int | None = None
        self.connections: list[Connection] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = self.redirect_to or port
        stream = await self._inner.connect_tcp(
            self.hosts.get(host, host), target, timeout, local_address, socket_options
        )
        record = Connection(target)
        self.connections.append(record)
        return _RecordedStream(stream, record)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def sent(self, needle: str) -> bool:
        """Return whether ``needle`` was written on any connection (inside TLS)."""
        data = needle.encode()
        return any(data in b"".join(c.writes) for c in self.connections)


class _RecordedStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, record: Connection) -> None:
        self._inner = inner
        self._record = record

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self._record.writes.append(bytes(buffer))
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
        der = stream.get_extra_info("ssl_object").getpeercert(binary_form=True)
        self._record.peer_spki_sha256 = spki_sha256(der)
        return _RecordedStream(stream, self._record)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class FakeClock:
    """A monotonic clock moved by hand (the re-attestation interval)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_secret() -> str:
    """Return a unique SECRET marker for one request's code."""
    return f"SECRET_{secrets.token_hex(12)}"


def fim_for(secret: str) -> FimRequest:
    """Return a FIM request whose prompt and suffix carry ``secret``."""
    return FimRequest(
        model=MODEL,
        prompt=f"def {secret}_algorithm(x):\n    key = '{secret}'\n    return",
        suffix=f"\n# end of {secret}.py\n",
    )


class Editor:
    """One cube-lsp client: ``CubeClient`` over the attested transport, and everything it did."""

    def __init__(
        self,
        raw: dict[str, Any],
        *,
        net: ClientNet,
        clock: FakeClock,
        now: datetime | None = None,
        force_mode: str | None = None,
        policy_path: Path | None = None,
    ) -> None:
        self.policy_path = policy_path  # the policy file the settings name (tests rewrite it mid-session)
        settings, self.settings_errors = parse_settings(raw, environ={})
        if force_mode is not None:  # what a hand-edited or older settings file could still ask for
            settings = dataclasses.replace(
                settings, attestation=dataclasses.replace(settings.attestation, mode=force_mode)
            )
        self.settings: Settings = settings
        self.net = net
        self.clock = clock
        self.statuses: list[AttestationStatus] = []
        self.transport: Any = None
        options = AttestorOptions(
            clock=clock, now=(lambda: now) if now else None, getter=None, cache_dir=None
        )

        def factory(settings: Settings) -> Any:
            self.transport = make_client_transport(
                settings, network_backend=net, options=options, on_status=self.statuses.append
            )
            return self.transport

        self.client = CubeClient(settings, transport_factory=factory)

    @property
    def errors(self) -> list[SettingsError]:
        return self.settings_errors

    async def complete(self, secret: str) -> str:
        """Ask for a completion of code holding ``secret``; return the text."""
        async with contextlib.aclosing(self.client.stream_fim(fim_for(secret))) as chunks:
            return "".join([chunk async for chunk in chunks])

    async def fails(self, secret: str) -> CubeError:
        """Ask for a completion that must fail; return the error."""
        try:
            text = await self.complete(secret)
        except CubeError as exc:
            return exc
        raise AssertionError(f"the request succeeded ({text!r}); it had to fail closed")

    def pinned(self) -> set[str]:
        """Return the SHA-256 of every key the client trusts now."""
        if isinstance(self.transport, AttestedTransport):
            return set(self.transport.attestor.pins.pinned())
        return set()

    def attestations(self) -> int:
        """Return how many attestations the client ran."""
        if isinstance(self.transport, AttestedTransport):
            return self.transport.attestor.attestations
        return 0
