"""The one interface the stack uses for a model runtime, whatever serves the models.

Bridges ``cube-stack up`` and the proxy on one side and the backends on the other: an existing
Ollama (:class:`~cube_stack.runtime.remote.OllamaRuntime`), an OpenAI-compatible server such as
vLLM or ``llama-server`` (:class:`~cube_stack.runtime.remote.OpenAICompatibleRuntime`), or our own
llama.cpp server (:class:`~cube_stack.runtime.builtin.BuiltinRuntime`). A runtime is a base URL
(``http(s)://host:port``, or ``unix:/path/runtime.sock`` for a Unix socket, see
:mod:`cube_stack.unix_socket`) speaking the Ollama API (``/api/generate|chat|embed|embeddings|tags|show``)
and/or the OpenAI API (``/v1/completions|chat/completions|embeddings|models``), a health probe, and
start/stop for the runtimes we run ourselves (no-ops for the remote ones).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self


class Api(enum.Enum):
    """An HTTP API flavour a runtime speaks at its base URL."""

    OLLAMA = (
        "ollama"  # /api/generate (with suffix), /api/chat, /api/embed, /api/embeddings, /api/tags, /api/show
    )
    OPENAI = "openai"  # /v1/completions, /v1/chat/completions, /v1/embeddings, /v1/models


@dataclass(frozen=True)
class RuntimeInfo:
    """How to reach a runtime: what ``cube-stack up`` prints and the proxy routes to."""

    kind: str  # "ollama", "openai" or "builtin"
    base_url: str  # http(s) (no trailing slash; API paths are appended) or unix:/path (paths go over it)
    apis: frozenset[Api]


class Runtime(abc.ABC):
    """A model backend reachable over HTTP at :attr:`base_url` (TCP, or a Unix socket)."""

    kind: ClassVar[str]
    apis: ClassVar[frozenset[Api]]

    @property
    @abc.abstractmethod
    def base_url(self) -> str:
        """Return the http(s) URL the API paths are appended to (no trailing slash), or ``unix:/path``."""

    @abc.abstractmethod
    async def probe(self, seconds: float = 1.0) -> bool:
        """Return whether the runtime answers its model list within ``seconds``."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the runtime if we run it ourselves (a no-op for remote runtimes)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the runtime if we run it ourselves (a no-op for remote runtimes)."""

    def describe(self) -> RuntimeInfo:
        """Return the runtime's kind, base URL and API flavours."""
        return RuntimeInfo(kind=self.kind, base_url=self.base_url, apis=self.apis)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
