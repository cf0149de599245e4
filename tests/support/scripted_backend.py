"""A SCRIPTED BACKEND: a real HTTP server that plays scripted model output in the proxy's wire formats.

A real model cannot give deterministic output, so tests script what the "model" says instead. The
server is uvicorn running a Starlette app on ``127.0.0.1`` port 0, in a background thread with its
own event loop, so it serves both async client tests and a cube-lsp subprocess driven by an e2e test.
It speaks the Cube proxy's routes under ``/{domain}/``:

* Ollama: ``POST api/generate``, ``POST api/chat`` (NDJSON streams), ``GET api/tags``;
* OpenAI: ``POST v1/completions``, ``POST v1/chat/completions`` (SSE streams), ``GET v1/models``;
* embeddings: ``POST api/embed`` and ``POST v1/embeddings`` answer :func:`scripted_embedding` of each
  input unless a rule says otherwise (recorded like every request, so tests see what was embedded).

Scripting (all methods are thread-safe)::

    backend.script(Reply.stream("def ", "add(a, b):"))   # next generation request streams this
    backend.script(Reply.failure(500, "model crashed"))    # and the one after fails
    backend.rule = lambda req: Reply.failure(401) if ... else None   # consulted before the queue
    backend.release()                                       # let one `hold_before` chunk through

Sessions: a started server can serve many tests; ``reset()`` gives the next test an empty script,
no recorded requests, new counters and the default rule and reply, and ends replies still hanging
from the previous test. A request belongs to the session it arrived in, so nothing leaks across.

Observing::

    req = backend.wait_for_request(1)            # blocks the calling thread; or:
    req = await backend.wait_for_request_async(1)
    await backend.wait_for_disconnect_async(1)   # the client closed a response before it ended
    backend.requests, backend.request_count, backend.disconnect_count

Generation requests take the next queued :class:`Reply` (or ``default_reply`` when the queue is
empty). A request for another domain gets 404, and one without ``Authorization: Bearer {token}``
gets 401 (when ``token`` is set), without consuming the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cube_stack.net import bind_tcp

__all__ = [
    "RecordedRequest",
    "Reply",
    "ScriptedBackend",
    "TlsFiles",
    "WaitableCounter",
    "make_tls_files",
]

DEFAULT_MODELS = ("qwen2.5-coder:1.5b", "starcoder2:3b")
DEFAULT_DOMAIN = "test-domain"
WAIT_LIMIT_S = 10.0  # a wait that takes this long means the test is broken, not slow

Hang = Literal["no", "before_headers", "after_chunks"]
RouteName = Literal[
    "generate", "chat", "completions", "chat_completions", "tags", "models", "embed", "embeddings"
]
#: Width of the scripted embeddings (all-MiniLM-L6-v2's, so index layouts match the real model's).
EMBED_DIM = 384


@dataclass(frozen=True)
class Reply:
    """One scripted answer to one request."""

    chunks: tuple[str, ...] = ()  # generated text pieces, each sent as one NDJSON line / SSE event
    status: int = 200  # an error status sends a JSON error body in the route's format
    error: str | None = None  # the error message; with status 200 it is sent inside the stream
    delay: float = 0.0  # seconds to wait before each chunk (a script delay, not synchronisation)
    headers_delay: float = 0.0  # seconds to wait before the response headers
    hold_before: frozenset[int] = frozenset()  # chunk indexes that wait for one backend.release()
    hang: Hang = "no"  # wait until the client disconnects (or the server stops)
    done: bool = True  # send the closing `done: true` line / finish_reason + `data: [DONE]`
    lines: tuple[str | bytes, ...] | None = None  # sent verbatim, one per body chunk, instead of `chunks`
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers of an error (e.g. Retry-After)

    @classmethod
    def stream(cls, *chunks: str, delay: float = 0.0, hold_before: tuple[int, ...] = ()) -> Reply:
        """Return a normal streamed completion of ``chunks``."""
        return cls(chunks=chunks, delay=delay, hold_before=frozenset(hold_before))

    @classmethod
    def failure(cls, status: int, message: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        """Return an HTTP error with the route's JSON error body (and ``headers``)."""
        return cls(status=status, error=message, headers=tuple((headers or {}).items()))

    @classmethod
    def stream_error(cls, message: str, *chunks: str) -> Reply:
        """Return a 200 stream that sends ``chunks`` and then an error object."""
        return cls(chunks=chunks, error=message, done=False)

    @classmethod
    def hang_before_headers(cls) -> Reply:
        """Return a reply that never sends headers: the client hits its first-byte timeout."""
        return cls(hang="before_headers")

    @classmethod
    def hang_after(cls, *chunks: str) -> Reply:
        """Return a reply that sends ``chunks`` and then stays silent until the client disconnects."""
        return cls(chunks=chunks, hang="after_chunks", done=False)

    @classmethod
    def raw_lines(cls, *lines: str | bytes) -> Reply:
        """Return a 200 reply whose body is exactly ``lines`` (each + newline): malformed streams."""
        return cls(lines=lines)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the scripted backend received it."""

    index: int  # 1-based arrival order
    method: str
    path: str
    route: str  # generate | chat | completions | chat_completions | tags | models | other
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # the parsed body, or None
    received_at: float  # time.monotonic() at arrival

    @property
    def bearer(self) -> str | None:
        """Return the bearer token sent, if any."""
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None


class WaitableCounter:
    """A thread-safe counter that threads (``wait``) and event loops (``wait_async``) can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value = 0
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._events: list[tuple[int, threading.Event]] = []

    @property
    def value(self) -> int:
        """Return the current count."""
        with self._cond:
            return self._value

    def increment(self) -> int:
        """Add one and wake everyone waiting for the new value."""
        with self._cond:
            self._value += 1
            value = self._value
            self._cond.notify_all()
            ready = [w for w in self._async_waiters if w[0] <= value]
            self._async_waiters = [w for w in self._async_waiters if w[0] > value]
            for target, event in self._events:
                if target <= value:
                    event.set()
        for _, loop, future in ready:
            with contextlib.suppress(RuntimeError):  # that loop is already closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)
        return value

    def event(self, target: int) -> threading.Event:
        """Return a ``threading.Event`` set once the count reaches ``target``."""
        event = threading.Event()
        with self._cond:
            if self._value >= target:
                event.set()
            self._events.append((target, event))
        return event

    def wait(self, target: int, timeout: float = 5.0) -> None:
        """Block until the count reaches ``target``; raise TimeoutError after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._value >= target, timeout):
                raise TimeoutError(f"count stayed at {self._value}, wanted {target}")

    async def wait_async(self, target: int) -> None:
        """Await until the count reaches ``target``; raise TimeoutError after ``WAIT_LIMIT_S``.

        Wrap the call in ``asyncio.timeout`` for a tighter bound.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (target, loop, future)
        with self._cond:
            if self._value >= target:
                return
            self._async_waiters.append(entry)
        try:
            async with asyncio.timeout(WAIT_LIMIT_S):
                await future
        except TimeoutError:
            raise TimeoutError(f"count stayed at {self.value}, wanted {target}") from None
        finally:
            with self._cond:
                if entry in self._async_waiters:
                    self._async_waiters.remove(entry)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class TlsFiles:
    """Test-time TLS material from a trustme CA: nothing private is ever committed."""

    ca: trustme.CA
    ca_bundle: Path  # PEM of the CA: what cube-lsp's `tls.caBundle` points at
    server_cert: Path  # chain for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path  # a client certificate signed by the same CA, for mutual TLS
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a CA, a server certificate for 127.0.0.1/localhost and a client certificate in ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("cube-lsp-test-client@example.com")
    files = TlsFiles(
        ca=ca,
        ca_bundle=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca_bundle))
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.server_key))
    files.client_cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(files.client_key))
    return files


class _Server(uvicorn.Server):
    """uvicorn's server, told to exit by an event instead of a 100 ms polling tick."""

    def __init__(self, config: uvicorn.Config, exit_event: asyncio.Event) -> None:
        super().__init__(config)
        self._exit_event = exit_event

    async def main_loop(self) -> None:
        """Serve until the backend stops (uvicorn's version polls ``should_exit`` every 100 ms)."""
        await self._exit_event.wait()


@dataclass
class _Session:
    """Everything one test scripts and observes; ``reset()`` starts a new one on the same server.

    A request keeps the session it arrived in, so a late disconnect from an earlier test is never
    counted in a later one.
    """

    default_reply: Reply = field(default_factory=lambda: Reply.stream("pass"))
    rule: Callable[[RecordedRequest], Reply | None] | None = None
    queue: collections.deque[Reply] = field(default_factory=collections.deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    received: WaitableCounter = field(default_factory=WaitableCounter)
    disconnects: WaitableCounter = field(default_factory=WaitableCounter)
    completed: WaitableCounter = field(default_factory=WaitableCounter)
    # asyncio primitives bind to a loop on first use, which is always the server's loop.
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    over: asyncio.Event = field(default_factory=asyncio.Event)  # releases this session's hangs


class ScriptedBackend:
    """The SCRIPTED BACKEND server; use as a context manager or call ``start()`` / ``stop()``."""

    def __init__(
        self,
        *,
        domain: str = DEFAULT_DOMAIN,
        token: str | None = None,
        models: tuple[str, ...] = DEFAULT_MODELS,
        tls: TlsFiles | None = None,
        require_client_cert: bool = False,
        max_tls_version: ssl.TLSVersion | None = None,
    ) -> None:
        self.domain = domain
        self.token = token  # when set, requests without this bearer token get 401
        self.models = models
        self.tls = tls
        self.require_client_cert = require_client_cert
        # With TLS 1.3 the server checks the client certificate after the client's handshake has
        # finished, so a refusal reaches the client as an alert *or* a reset, depending on timing;
        # capping at TLS 1.2 makes the refusal part of the handshake, which tests can rely on.
        self.max_tls_version = max_tls_version
        self._lock = threading.Lock()
        self._session = _Session()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: _Server | None = None
        self._socket: socket.socket | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._exit = asyncio.Event()  # used only on the server loop
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321`` (cube-lsp's `endpoint`)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> ScriptedBackend:
        """Start serving in a background thread; return once the app has started."""
        sock = bind_tcp("127.0.0.1", 0)  # connections queue in the backlog from here on
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            http="h11",
            ws="none",
            lifespan="on",
            log_config=None,  # leave the test process's logging alone
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            **self._ssl_options(),
        )
        config.load()  # builds config.ssl from the files
        if config.ssl is not None and self.max_tls_version is not None:
            config.ssl.maximum_version = self.max_tls_version
        self._server = _Server(config, self._exit)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"scripted-backend:{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            self.stop()
            raise RuntimeError("the scripted backend did not start within 10 s")
        if self._startup_error is not None:
            self.stop()
            raise RuntimeError("the scripted backend failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Release hanging replies, shut the server down and join its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._session.over.set)
                self._loop.call_soon_threadsafe(self._exit.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> ScriptedBackend:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _ssl_options(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        options: dict[str, Any] = {
            "ssl_certfile": str(self.tls.server_cert),
            "ssl_keyfile": str(self.tls.server_key),
        }
        if self.require_client_cert:
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
            options["ssl_ca_certs"] = str(self.tls.ca_bundle)
        return options

    def _run(self) -> None:
        loop = self._loop
        if loop is None or self._server is None or self._socket is None:
            return
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # surfaced by start(); a thread has nowhere else to report
            self._startup_error = exc
        finally:
            self._started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._started.set()
        yield

    # -- the test-facing API --------------------------------------------------------------------

    def reset(self) -> None:
        """Start a fresh session: empty script and records, new counters, default rule and reply.

        Replies still hanging from the previous session end (headers-less ones with a 503).
        """
        with self._lock:
            old, self._session = self._session, _Session()
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(old.over.set)

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next generation requests, in order."""
        with self._lock:
            self._session.queue.extend(replies)

    def release(self, count: int = 1) -> None:
        """Let ``count`` held chunks (``Reply.hold_before``) through."""
        if self._loop is None:
            raise RuntimeError("the scripted backend is not running")
        gate = self._session.gate
        for _ in range(count):
            self._loop.call_soon_threadsafe(gate.release)

    @property
    def rule(self) -> Callable[[RecordedRequest], Reply | None] | None:
        """Return the rule consulted before the queue (and before the model list); None: no rule."""
        return self._session.rule

    @rule.setter
    def rule(self, rule: Callable[[RecordedRequest], Reply | None] | None) -> None:
        self._session.rule = rule

    @property
    def default_reply(self) -> Reply:
        """Return the reply used when the queue is empty."""
        return self._session.default_reply

    @default_reply.setter
    def default_reply(self, reply: Reply) -> None:
        self._session.default_reply = reply

    @property
    def received(self) -> WaitableCounter:
        """Return the counter of requests received in this session."""
        return self._session.received

    @property
    def disconnects(self) -> WaitableCounter:
        """Return the counter of responses the client closed before they ended."""
        return self._session.disconnects

    @property
    def completed(self) -> WaitableCounter:
        """Return the counter of responses sent to the end."""
        return self._session.completed

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a snapshot of every request received in this session, in order."""
        with self._lock:
            return list(self._session.requests)

    @property
    def request_count(self) -> int:
        """Return how many requests arrived."""
        return self.received.value

    @property
    def disconnect_count(self) -> int:
        """Return how many responses the client closed before they ended."""
        return self.disconnects.value

    def wait_for_request(self, n: int = 1, timeout: float = 5.0) -> RecordedRequest:
        """Block until request ``n`` (1-based) has arrived and return it."""
        self.received.wait(n, timeout)
        return self.requests[n - 1]

    async def wait_for_request_async(self, n: int = 1) -> RecordedRequest:
        """Await request ``n`` (1-based) and return it."""
        await self.received.wait_async(n)
        return self.requests[n - 1]

    def wait_for_disconnect(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until the client has disconnected ``n`` unfinished responses."""
        self.disconnects.wait(n, timeout)

    async def wait_for_disconnect_async(self, n: int = 1) -> None:
        """Await until the client has disconnected ``n`` unfinished responses."""
        await self.disconnects.wait_async(n)

    def settings_json(self, *, api: Literal["ollama", "openai"] = "ollama", **extra: Any) -> dict[str, Any]:
        """Return cube-lsp settings (camelCase JSON) pointing at this backend."""
        # A plain-HTTP loopback dev backend: attestation off is allowed (and needed) for it.
        raw: dict[str, Any] = {
            "endpoint": self.url,
            "domain": self.domain,
            "api": api,
            "attestation": {"mode": "off"},
        }
        if self.token:
            raw["token"] = self.token
        if self.tls is not None:
            tls: dict[str, str] = {"caBundle": str(self.tls.ca_bundle)}
            if self.require_client_cert:
                tls |= {"clientCert": str(self.tls.client_cert), "clientKey": str(self.tls.client_key)}
            raw["tls"] = tls
        raw.update(extra)
        return raw

    # -- the app --------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        routes: list[tuple[str, str, RouteName]] = [
            ("/{domain}/api/generate", "POST", "generate"),
            ("/{domain}/api/chat", "POST", "chat"),
            ("/{domain}/api/tags", "GET", "tags"),
            ("/{domain}/v1/completions", "POST", "completions"),
            ("/{domain}/v1/chat/completions", "POST", "chat_completions"),
            ("/{domain}/v1/models", "GET", "models"),
            ("/{domain}/api/embed", "POST", "embed"),
            ("/{domain}/v1/embeddings", "POST", "embeddings"),
        ]
        return Starlette(
            routes=[Route(path, self._endpoint(name), methods=[method]) for path, method, name in routes],
            lifespan=self._lifespan,
        )

    def _endpoint(self, route: RouteName) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            session = self._session
            recorded = await self._record(request, route, session)
            api = "ollama" if route in ("generate", "chat", "tags", "embed") else "openai"
            if request.path_params["domain"] != self.domain:
                return _error_response(api, 404, f"domain {request.path_params['domain']!r} not found")
            if self.token is not None and recorded.bearer != self.token:
                return _error_response(api, 401, "unauthorized")
            reply = session.rule(recorded) if session.rule is not None else None
            if reply is None and route in ("tags", "models"):
                return JSONResponse(self._model_list(route))
            if reply is None and route in ("embed", "embeddings"):
                return _embed_response(route, recorded.json)
            if reply is None:
                reply = self._next_reply(session)
            if reply.status != 200 and reply.hang == "no" and not reply.headers_delay:
                response = _error_response(api, reply.status, reply.error)
                response.headers.update(dict(reply.headers))
                return response
            model = recorded.json.get("model", "") if isinstance(recorded.json, dict) else ""
            return _ScriptedResponse(session, reply, route, str(model))

        return endpoint

    async def _record(self, request: Request, route: RouteName, session: _Session) -> RecordedRequest:
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            recorded = RecordedRequest(
                index=len(session.requests) + 1,
                method=request.method,
                path=request.url.path,
                route=route,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                json=parsed,
                received_at=time.monotonic(),
            )
            session.requests.append(recorded)
        session.received.increment()
        return recorded

    def _next_reply(self, session: _Session) -> Reply:
        with self._lock:
            return session.queue.popleft() if session.queue else session.default_reply

    def _model_list(self, route: RouteName) -> dict[str, Any]:
        if route == "tags":
            return {"models": [{"name": m, "model": m, "size": 0} for m in self.models]}
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": "scripted"} for m in self.models],
        }


def scripted_embedding(text: str) -> list[float]:
    """A deterministic embedding: hashed word counts, L2-normalised (texts sharing words are close).

    Not a model: it lets tests predict which chunk a query is nearest to without running one.
    """
    vector = [0.0] * EMBED_DIM
    for word in re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "little") % EMBED_DIM] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _embed_response(route: RouteName, body: Any) -> JSONResponse:
    inputs = body.get("input") if isinstance(body, dict) else None
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
        api = "ollama" if route == "embed" else "openai"
        return _error_response(api, 400, "input: wanted a string or a list of strings")
    vectors = [scripted_embedding(text) for text in inputs]
    model = body.get("model", "")
    if route == "embed":
        return JSONResponse({"model": model, "embeddings": vectors})
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "model": model, "data": data})


def _error_response(api: str, status: int, message: str | None) -> JSONResponse:
    text = message or f"HTTP {status}"
    if api == "ollama":
        return JSONResponse({"error": text}, status_code=status)
    return JSONResponse(
        {"error": {"message": text, "type": "scripted_error", "code": status}}, status_code=status
    )


class _ScriptedResponse(Response):
    """Plays one :class:`Reply` over raw ASGI while watching for the client's disconnect."""

    def __init__(self, session: _Session, reply: Reply, route: RouteName, model: str) -> None:
        super().__init__()
        self._session = session
        self._reply = reply
        self._route = route
        self._model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        play = asyncio.ensure_future(self._play(send))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        await asyncio.wait({play, watch}, return_when=asyncio.FIRST_COMPLETED)
        if play.done():
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            play.result()
            self._session.completed.increment()
        else:
            play.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await play
            self._session.disconnects.increment()

    async def _play(self, send: Send) -> None:
        reply, session = self._reply, self._session
        if reply.headers_delay:
            await asyncio.sleep(reply.headers_delay)
        if reply.hang == "before_headers":
            await session.over.wait()
            await _send_all(send, 503, "application/json", [b'{"error": "scripted backend stopped"}'])
            return
        if reply.status != 200:
            api = "ollama" if self._route in ("generate", "chat") else "openai"
            error = _error_response(api, reply.status, reply.error)
            await _send_all(send, reply.status, "application/json", [bytes(error.body)])
            return
        ollama = self._route in ("generate", "chat")
        content_type = "application/x-ndjson" if ollama else "text/event-stream"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        for index, piece in enumerate(self._pieces()):
            if index in reply.hold_before:
                await session.gate.acquire()
            if reply.delay:
                await asyncio.sleep(reply.delay)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        if reply.hang == "after_chunks":
            await session.over.wait()
        else:
            for piece in self._ending():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _pieces(self) -> Iterator[bytes]:
        if self._reply.lines is not None:
            for line in self._reply.lines:
                yield (line if isinstance(line, bytes) else line.encode()) + b"\n"
            return
        for text in self._reply.chunks:
            yield self._format(text, final=False)

    def _ending(self) -> Iterator[bytes]:
        reply = self._reply
        if reply.lines is not None:
            return
        ollama = self._route in ("generate", "chat")
        if reply.error is not None:
            if ollama:
                yield _ndjson({"error": reply.error})
            else:
                yield _sse({"error": {"message": reply.error, "type": "scripted_error"}})
        if reply.done:
            yield self._format("", final=True)
            if not ollama:
                yield b"data: [DONE]\n\n"

    def _format(self, text: str, *, final: bool) -> bytes:
        model = self._model
        if self._route == "generate":
            event: dict[str, Any] = {"model": model, "response": text, "done": final}
            if final:
                event["done_reason"] = "stop"
            return _ndjson(event)
        if self._route == "chat":
            return _ndjson({"model": model, "message": {"role": "assistant", "content": text}, "done": final})
        finish = "stop" if final else None
        if self._route == "completions":
            choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish}
            return _sse(
                {"id": "cmpl-scripted", "object": "text_completion", "model": model, "choices": [choice]}
            )
        delta = {} if final else {"content": text}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [choice],
            }
        )


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_all(send: Send, status: int, content_type: str, parts: list[bytes]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    for part in parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _ndjson(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"
