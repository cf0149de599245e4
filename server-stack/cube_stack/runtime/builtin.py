"""The built-in runtime: our own llama.cpp server, for when no Ollama or vLLM is there.

Bridges :class:`BuiltinSettings` (which GGUF files and embedding models to serve, where to listen) and
a running uvicorn serving :func:`~cube_stack.runtime.app.create_runtime_app`. Models are loaded from
the configured files at :meth:`BuiltinRuntime.start` — never downloaded. The listening socket is bound
before uvicorn starts, so port 0 works and :attr:`BuiltinRuntime.base_url` is known at once; ``start``
returns when the app's lifespan has started.

Where it listens: with ``socket_path`` set (what ``cube-stack up`` does), on a Unix socket of mode 0600
in a 0700 directory (:mod:`cube_stack.unix_socket`), so only its owner -- the proxy -- can generate
through it; no other local process can skip the proxy's auth, rate limits and audit. We bind that
socket ourselves: uvicorn's own ``uds=`` makes the file 0666. Without ``socket_path`` it listens on
TCP ``host:port`` (loopback by default), for tests and hosts that run the runtime apart from the proxy.

Use::

    runtime = BuiltinRuntime(BuiltinSettings(models={"cube-demo:random": path}, socket_path=sock))
    await runtime.start()          # loads the models, starts serving
    runtime.base_url               # unix:/.../runtime.sock (or http://127.0.0.1:<port> on TCP)
    await runtime.stop()           # cancels generations, stops uvicorn, frees the models, removes the file
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import httpx
import uvicorn
from starlette.applications import Starlette

from cube_stack.net import bind_tcp
from cube_stack.runtime.app import create_runtime_app
from cube_stack.runtime.base import Api, Runtime
from cube_stack.runtime.demo_model import DEMO_MODEL_FILE, DEMO_MODEL_NAME, write_demo_model
from cube_stack.runtime.embeddings import MINILM_NAME, SentenceEmbedder, load_minilm
from cube_stack.runtime.errors import (
    ModelLoadError,
    RuntimeSettingsError,
    RuntimeUnavailableError,
    SocketInUseError,
    SocketPathTooLongError,
)
from cube_stack.runtime.gguf_embeddings import LlamaEmbedder
from cube_stack.runtime.llama import LlamaModel
from cube_stack.runtime.model_archive import ModelArchive
from cube_stack.runtime.model_files import PinnedModel, pin_model, pin_stream
from cube_stack.runtime.names import normalize_model_name
from cube_stack.runtime.registry import GenerationObserver, ModelRegistry
from cube_stack.unix_socket import (
    MAX_PATH_BYTES,
    UnixListener,
    bind_private_unix,
    socket_path_problem,
    unix_url,
)
from cube_stack.unix_socket import SocketInUseError as _SocketBusy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinSettings:
    """What the built-in runtime serves and where it listens."""

    models: Mapping[str, Path] = field(default_factory=dict)  # GGUF files by model name (name[:tag])
    # Embedding models by name: a ``.gguf`` file is served by llama.cpp (no torch), a directory by
    # sentence-transformers.
    embedders: Mapping[str, Path] = field(default_factory=dict)
    minilm: bool = False  # also serve the packaged all-MiniLM-L6-v2 as ``all-minilm:l6-v2``
    # Listen on this Unix socket (0600, its directory 0700) instead of TCP; unset: TCP on host:port.
    socket_path: Path | None = None
    host: str = "127.0.0.1"  # TCP only: loopback, the proxy in the same CVM is the only client
    port: int = 0  # TCP only; 0: pick a free port (read it from BuiltinRuntime.base_url)
    n_ctx: int = 4096  # context window per GGUF model, in tokens
    n_threads: int | None = None  # llama.cpp threads; unset: the library's default (the core count)
    # threads of the embedding models (torch, or llama.cpp for a GGUF embedder), apart from n_threads:
    # indexing a workspace is batch work that two threads do at ~27 chunks/s against ~15 with one
    # (sentence-transformers, 1500-char chunks, idle 2-core machine)
    embed_threads: int | None = None  # unset: every core
    # SHA-256 of every GGUF file it may serve, embedders included (the CVM image's list); a file not
    # listed is refused before it is loaded, and what is served is the in-memory copy that was hashed.
    # A sentence-transformers directory cannot be pinned, so a list refuses it. None: no list (development).
    model_hashes: frozenset[str] | None = None
    # Models and embedders read straight from a tar (the CVM's config disk), each into its hashed
    # in-memory copy; needs model_hashes. See cube_stack.runtime.model_archive.
    archive: ModelArchive | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", MappingProxyType({k: Path(v) for k, v in self.models.items()}))
        object.__setattr__(
            self, "embedders", MappingProxyType({k: Path(v) for k, v in self.embedders.items()})
        )
        archived = [*self.archive.models, *self.archive.embedders] if self.archive is not None else []
        if self.archive is not None and self.model_hashes is None:
            raise RuntimeSettingsError(
                "model_archive", "a model archive is served only with a model hash list (--model-hashes)"
            )
        names = [*self.models, *self.embedders, *archived, *([MINILM_NAME] if self.minilm else [])]
        normalized = [normalize_model_name(name) for name in names]
        if len(set(normalized)) != len(normalized):
            raise RuntimeSettingsError("models", f"model names collide: {sorted(names)}")
        if not normalized:
            raise RuntimeSettingsError("models", "configure at least one model")
        if not 0 <= self.port <= 65535:
            raise RuntimeSettingsError("port", f"{self.port} is not a TCP port")
        if self.socket_path is not None:
            path = Path(self.socket_path).absolute()  # the URL the proxy is given must not depend on its cwd
            object.__setattr__(self, "socket_path", path)
            problem = socket_path_problem(str(path))
            if problem is not None and len(os.fsencode(str(path))) > MAX_PATH_BYTES:
                raise SocketPathTooLongError(problem)
            if problem is not None:
                raise RuntimeSettingsError("socket_path", problem)
        if self.n_ctx < 64:
            raise RuntimeSettingsError("n_ctx", f"{self.n_ctx} is below the minimum of 64 tokens")
        if self.n_threads is not None and self.n_threads < 1:
            raise RuntimeSettingsError("n_threads", f"{self.n_threads} must be at least 1")
        if self.embed_threads is not None and self.embed_threads < 1:
            raise RuntimeSettingsError("embed_threads", f"{self.embed_threads} must be at least 1")
        unpinnable = sorted(name for name, path in self.embedders.items() if not is_gguf(path))
        if self.model_hashes is not None and unpinnable:
            raise RuntimeSettingsError(
                "embedders",
                f"{unpinnable} are sentence-transformers directories, which a model hash list cannot "
                "cover; serve them as GGUF files (python -m cube_stack.hal.embedding_model)",
            )


def is_gguf(path: Path) -> bool:
    """Return whether an embedder path names a GGUF file (served by llama.cpp) rather than a directory."""
    return path.suffix.lower() == ".gguf"


def default_socket_path(data_dir: Path) -> Path:
    """Return where ``cube-stack up`` puts the built-in runtime's socket: ``DATA/runtime/runtime.sock``."""
    return data_dir / "runtime" / "runtime.sock"


def embedded_default_settings(data_dir: Path, *, minilm: bool = True) -> BuiltinSettings:
    """Return the settings of ``cube-stack up`` without Ollama: the RANDOM-WEIGHTS demo model (+ MiniLM)."""
    path = data_dir / "models" / DEMO_MODEL_FILE
    if not path.is_file():
        write_demo_model(path)
    # One thread: the demo model is so small that a second OpenMP thread costs more than it computes
    # (measured ~3000 tokens/s with one thread, a few hundred with two on a busy 2-core machine).
    return BuiltinSettings(
        models={DEMO_MODEL_NAME: path},
        minilm=minilm,
        socket_path=default_socket_path(data_dir),
        n_threads=1,
    )


class BuiltinRuntime(Runtime):
    """llama.cpp (and MiniLM) behind the Ollama and OpenAI APIs, served by uvicorn on a private socket."""

    kind = "builtin"
    apis = frozenset({Api.OLLAMA, Api.OPENAI})

    def __init__(self, settings: BuiltinSettings, *, observer: GenerationObserver | None = None) -> None:
        self.settings = settings
        self.registry = ModelRegistry(observer=observer)
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._socket: socket.socket | UnixListener | None = None
        self._base_url: str | None = None
        self._pinned: list[PinnedModel] = []  # verified in-memory copies of the models (model_hashes)

    @property
    def base_url(self) -> str:
        """Return ``unix:/path/runtime.sock`` or ``http://127.0.0.1:<port>``; raises if not started."""
        if self._base_url is None:
            raise RuntimeUnavailableError("the built-in runtime is not started")
        return self._base_url

    async def start(self) -> None:
        """Load every configured model, then serve; returns once the app is up."""
        if self._serving is not None:
            return
        try:
            await asyncio.to_thread(self._load_models)
        except BaseException:
            self.registry.close()
            for pinned in self._pinned:
                pinned.close()
            self._pinned.clear()
            raise
        ready = asyncio.Event()

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            ready.set()
            yield

        try:
            listener = _listen(self.settings)
        except BaseException:
            await asyncio.to_thread(self.registry.close)
            raise
        sock = listener.sock if isinstance(listener, UnixListener) else listener
        config = uvicorn.Config(
            create_runtime_app(self.registry, lifespan=lifespan),
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
        self._server = _EmbeddedServer(config)
        self._socket = listener
        self._base_url = _url_of(listener, self.settings.host)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({waiter, self._serving}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiter.cancel()
            await self.stop()
            raise RuntimeUnavailableError("the built-in runtime's server exited during start-up")
        logger.info("built-in runtime serving %s at %s", self.registry.names(), self.base_url)

    async def stop(self) -> None:
        """Cancel running generations, stop uvicorn and free the models."""
        self.registry.cancel_all()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._serving
        if self._socket is not None:
            self._socket.close()  # a Unix socket's file goes with it
        await asyncio.to_thread(self.registry.close)
        for pinned in self._pinned:
            pinned.close()
        self._pinned.clear()
        self._server = self._serving = self._socket = None
        self._base_url = None

    async def probe(self, seconds: float = 1.0) -> bool:
        """Return whether the running app answers ``/api/tags`` within ``seconds``."""
        if self._socket is None:
            return False
        if isinstance(self._socket, UnixListener):
            transport = httpx.AsyncHTTPTransport(uds=str(self._socket.path))
            url = "http://localhost/api/tags"
        else:
            transport, url = None, f"{self.base_url}/api/tags"
        try:
            async with httpx.AsyncClient(transport=transport, timeout=seconds, trust_env=False) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _load_models(self) -> None:
        for name, path in self.settings.models.items():
            self.registry.add(
                LlamaModel(
                    name, self._pin(path), n_ctx=self.settings.n_ctx, n_threads=self.settings.n_threads
                )
            )
        for name, path in self.settings.embedders.items():
            threads = self.settings.embed_threads
            if is_gguf(path):
                self.registry.add(LlamaEmbedder(name, self._pin(path), threads=threads))
            else:
                self.registry.add(SentenceEmbedder(name, path, threads=threads))
        if self.settings.archive is not None:
            self._load_archive(self.settings.archive)
        if self.settings.minilm:
            self.registry.add(load_minilm(threads=self.settings.embed_threads))

    def _load_archive(self, archive: ModelArchive) -> None:
        """Pin each archived model straight from the tar (one copy in memory), then load that copy."""
        assert self.settings.model_hashes is not None  # BuiltinSettings refuses an archive without
        for tar, member, name, embedder in archive.members():
            source = tar.extractfile(member)
            if source is None:
                raise ModelLoadError(f"model {name!r}: {archive.path}:{member.name} cannot be read")
            with source:
                pinned = pin_stream(source, f"{archive.path}:{member.name}", self.settings.model_hashes)
            self._pinned.append(pinned)
            if embedder:
                self.registry.add(LlamaEmbedder(name, pinned.path, threads=self.settings.embed_threads))
            else:
                self.registry.add(
                    LlamaModel(
                        name, pinned.path, n_ctx=self.settings.n_ctx, n_threads=self.settings.n_threads
                    )
                )

    def _pin(self, path: Path) -> Path:
        """Return the path to load: with a hash list, the verified in-memory copy of ``path``."""
        if self.settings.model_hashes is None:
            return path
        pinned = pin_model(path, self.settings.model_hashes)
        self._pinned.append(pinned)
        return pinned.path


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handlers: the process that embeds the runtime owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(settings: BuiltinSettings) -> socket.socket | UnixListener:
    """Bind the listening socket (connections queue there until uvicorn accepts them)."""
    host, port, path = settings.host, settings.port, settings.socket_path
    if path is None:
        try:
            return bind_tcp(host, port)
        except OSError as exc:
            raise RuntimeSettingsError("port", f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    try:
        return bind_private_unix(path)
    except _SocketBusy as exc:
        raise SocketInUseError(f"another runtime already serves {path}; stop it first") from exc
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RuntimeSettingsError("socket_path", f"cannot listen on {path}: {reason}") from exc


def _url_of(listener: socket.socket | UnixListener, host: str) -> str:
    if isinstance(listener, UnixListener):
        return unix_url(listener.path)
    port = listener.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
