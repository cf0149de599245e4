"""Runtimes that already run somewhere: an Ollama server, or an OpenAI-compatible one (vLLM, llama-server).

Bridges a configured URL and the :class:`~cube_stack.runtime.base.Runtime` interface. Nothing is
started or stopped; :meth:`probe` asks the model list with a short timeout, which is how
``cube-stack up`` decides between an Ollama at 127.0.0.1:11434 and the built-in runtime. httpx errors
are translated here, at this one boundary, into ``False`` or :class:`RuntimeUnavailableError`.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from cube_stack.runtime.base import Api, Runtime
from cube_stack.runtime.errors import RuntimeSettingsError, RuntimeUnavailableError

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


def normalize_base_url(url: str, *, strip_suffix: str = "") -> str:
    """Return ``url`` without a trailing slash (and without ``strip_suffix``); reject non-HTTP URLs."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuntimeSettingsError("base_url", f"{url!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise RuntimeSettingsError("base_url", f"{url!r} must not have a query or a fragment")
    base = url.strip().rstrip("/")
    if strip_suffix and base.endswith(strip_suffix):
        base = base[: -len(strip_suffix)]
    return base


class _RemoteRuntime(Runtime):
    """Shared plumbing: a base URL, optional bearer key, an injectable httpx transport."""

    _models_path: ClassVar[str]
    _models_key: ClassVar[str]

    def __init__(
        self, base_url: str, *, api_key: str | None = None, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport

    @property
    def base_url(self) -> str:
        """Return the URL the API paths are appended to (no trailing slash)."""
        return self._base_url

    async def start(self) -> None:
        """Do nothing: the remote runtime runs on its own."""

    async def stop(self) -> None:
        """Do nothing: the remote runtime runs on its own."""

    async def probe(self, seconds: float = 1.0) -> bool:
        """Return whether the model list answers 200 with the expected JSON within ``seconds``."""
        try:
            await self._models_document(seconds)
        except RuntimeUnavailableError:
            return False
        return True

    async def list_models(self, seconds: float = 5.0) -> list[str]:
        """Return the names of the models the runtime serves."""
        document = await self._models_document(seconds)
        return sorted(self._model_names(document[self._models_key]))

    async def _models_document(self, seconds: float) -> dict[str, Any]:
        # trust_env=False: a loopback or in-CVM runtime must never be reached through an HTTP(S)_PROXY.
        async with httpx.AsyncClient(
            transport=self._transport, timeout=seconds, trust_env=False, headers=self._headers
        ) as client:
            try:
                response = await client.get(f"{self._base_url}{self._models_path}")
            except httpx.HTTPError as exc:
                raise RuntimeUnavailableError(
                    f"{self.kind} runtime at {self._base_url} did not answer: {exc!r}"
                ) from exc
        try:
            document = response.json() if response.status_code == 200 else None
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get(self._models_key), list):
            raise RuntimeUnavailableError(
                f"{self.kind} runtime at {self._base_url}{self._models_path} answered {response.status_code} "
                f"without a '{self._models_key}' list"
            )
        return document

    @staticmethod
    def _model_names(entries: list[Any]) -> list[str]:
        raise NotImplementedError


class OllamaRuntime(_RemoteRuntime):
    """An Ollama server at a URL (default 127.0.0.1:11434), speaking the Ollama and OpenAI APIs."""

    kind = "ollama"
    apis = frozenset({Api.OLLAMA, Api.OPENAI})
    _models_path = "/api/tags"
    _models_key = "models"

    def __init__(
        self,
        base_url: str = DEFAULT_OLLAMA_URL,
        *,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(normalize_base_url(base_url), api_key=api_key, transport=transport)

    @staticmethod
    def _model_names(entries: list[Any]) -> list[str]:
        return [str(e.get("name") or e.get("model")) for e in entries if isinstance(e, dict)]


class OpenAICompatibleRuntime(_RemoteRuntime):
    """An OpenAI-compatible server (vLLM, ``llama-server``); ``base_url`` may end in ``/v1`` or not."""

    kind = "openai"
    apis = frozenset({Api.OPENAI})
    _models_path = "/v1/models"
    _models_key = "data"

    def __init__(
        self, base_url: str, *, api_key: str | None = None, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(
            normalize_base_url(base_url, strip_suffix="/v1"), api_key=api_key, transport=transport
        )

    @staticmethod
    def _model_names(entries: list[Any]) -> list[str]:
        return [str(e.get("id")) for e in entries if isinstance(e, dict)]
