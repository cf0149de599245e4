"""The built-in runtime's model table: one worker thread per model, and the thread -> asyncio bridge.

Bridges blocking inference (llama.cpp, torch) and the event loop. Each model owns a single-thread
executor, so generations on one model run one at a time in arrival order (llama.cpp contexts are not
thread-safe) while different models run in parallel. A generation streams to the loop through an
:class:`asyncio.Queue` fed from the worker with ``call_soon_threadsafe``; cancelling the consumer
(the HTTP client went away) sets a :class:`threading.Event` that the worker checks between tokens.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cube_stack.runtime.embeddings import EmbeddingResult, SentenceEmbedder
from cube_stack.runtime.errors import CapabilityError, ModelNotFoundError, ModelRuntimeError
from cube_stack.runtime.gguf_embeddings import LlamaEmbedder
from cube_stack.runtime.llama import GenerationReport, LlamaModel
from cube_stack.runtime.names import normalize_model_name
from cube_stack.runtime.prompts import Prompt
from cube_stack.runtime.requests import SamplingOptions

Embedder = SentenceEmbedder | LlamaEmbedder  # an embedding model: torch (the default) or llama.cpp (GGUF)

logger = logging.getLogger(__name__)

GenerationObserver = Callable[[GenerationReport], None]
"""Called on the worker thread after every generation (tests and metrics hook here)."""


@dataclass(frozen=True)
class _Started:
    prompt_tokens: tuple[int, ...]


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Finished:
    report: GenerationReport


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_Event = _Started | _Text | _Finished | _Failed


class GenerationStream:
    """The text of one running generation, as an async iterator; ``report`` is set when it ends."""

    def __init__(
        self, queue: asyncio.Queue[_Event], cancel: threading.Event, prompt_tokens: tuple[int, ...]
    ) -> None:
        self._queue = queue
        self._cancel = cancel
        self.prompt_tokens = prompt_tokens
        self.report: GenerationReport | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        """Yield text as the worker produces it; stops the worker if abandoned.

        Text that piled up while the consumer was busy is yielded as one piece: fewer, larger
        writes, and a suspension point between them, so a lost connection is noticed promptly.
        """
        held: _Event | None = None
        try:
            while self.report is None:
                event = held if held is not None else await self._queue.get()
                held = None
                if isinstance(event, _Text):
                    pieces = [event.text]
                    while not self._queue.empty():
                        follower = self._queue.get_nowait()
                        if not isinstance(follower, _Text):
                            held = follower
                            break
                        pieces.append(follower.text)
                    yield "".join(pieces)
                elif isinstance(event, _Finished):
                    self.report = event.report
                elif isinstance(event, _Failed):
                    raise event.error
        finally:
            if self.report is None:
                self._cancel.set()

    async def collect(self) -> str:
        """Wait for the whole generation and return its text."""
        return "".join([piece async for piece in self])

    def cancel(self) -> None:
        """Ask the worker to stop after the current token."""
        self._cancel.set()


class _Hosted:
    """One loaded model and its single worker thread."""

    def __init__(self, model: LlamaModel | Embedder) -> None:
        self.model = model
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"runtime-{model.name}")


class ModelRegistry:
    """Loaded models by normalised name; generation and embedding entry points for the routes."""

    def __init__(self, *, observer: GenerationObserver | None = None) -> None:
        self._models: dict[str, _Hosted] = {}
        self._observer = observer
        self._active: set[threading.Event] = set()
        self._lock = threading.Lock()

    def add(self, model: LlamaModel | Embedder) -> None:
        """Host ``model`` under its (normalised) name."""
        self._models[normalize_model_name(model.name)] = _Hosted(model)

    def names(self) -> list[str]:
        """Return the hosted model names, sorted."""
        return sorted(self._models)

    def get(self, name: str) -> LlamaModel | Embedder:
        """Return the model called ``name``; 404 when none is."""
        hosted = self._models.get(normalize_model_name(name))
        if hosted is None:
            raise ModelNotFoundError(f"model {name!r} not found; this runtime serves {self.names()}")
        return hosted.model

    def text_model(self, name: str) -> LlamaModel:
        """Return the generative model called ``name``; 400 for an embedding model."""
        model = self.get(name)
        if not isinstance(model, LlamaModel):
            raise CapabilityError(f"model {name!r} is an embedding model; it cannot generate text")
        return model

    def embedder(self, name: str) -> Embedder:
        """Return the embedding model called ``name``; 400 for a generative model."""
        model = self.get(name)
        if not isinstance(model, SentenceEmbedder | LlamaEmbedder):
            raise CapabilityError(f"model {name!r} does not produce embeddings; use an embedding model")
        return model

    async def generate(self, name: str, prompt: Prompt, options: SamplingOptions) -> GenerationStream:
        """Start a generation; return once its prompt is tokenised (errors raise here, before any text)."""
        model = self.text_model(name)
        hosted = self._models[normalize_model_name(name)]
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Event] = asyncio.Queue()
        cancel = threading.Event()

        def post(event: _Event) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        def job() -> None:
            if cancel.is_set():  # abandoned while queued behind another generation
                post(_Failed(ModelRuntimeError("the generation was cancelled", code="runtime.cancelled")))
                return
            try:
                report = model.generate(
                    prompt,
                    options,
                    emit=lambda text: post(_Text(text)),
                    started=lambda tokens: post(_Started(tokens)),
                    cancel=cancel,
                )
            except ModelRuntimeError as exc:
                post(_Failed(exc))
                return
            except Exception as exc:
                logger.exception("generation failed in model %s", model.name)
                failure = ModelRuntimeError(
                    "the generation failed inside the runtime", code="runtime.generation_failed"
                )
                failure.__cause__ = exc
                post(_Failed(failure))
                return
            finally:
                with self._lock:
                    self._active.discard(cancel)
            if self._observer is not None:
                self._observer(report)
            post(_Finished(report))

        with self._lock:
            self._active.add(cancel)
        hosted.executor.submit(job)
        try:
            first = await queue.get()
        except BaseException:
            cancel.set()
            raise
        if isinstance(first, _Failed):
            raise first.error
        if not isinstance(first, _Started):  # pragma: no cover - the worker always starts with _Started
            raise ModelRuntimeError("the generation did not start", code="runtime.generation_failed")
        return GenerationStream(queue, cancel, first.prompt_tokens)

    async def embed(self, name: str, inputs: Sequence[str], *, truncate: bool = True) -> EmbeddingResult:
        """Embed ``inputs`` on the model's worker thread; return normalised vectors."""
        embedder = self.embedder(name)
        hosted = self._models[normalize_model_name(name)]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(hosted.executor, lambda: embedder.embed(inputs, truncate=truncate))

    def cancel_all(self) -> None:
        """Ask every running or queued generation to stop (used when the runtime shuts down)."""
        with self._lock:
            for cancel in self._active:
                cancel.set()

    def close(self) -> None:
        """Cancel running generations, wait for the workers, free every model."""
        self.cancel_all()
        for hosted in self._models.values():
            hosted.executor.shutdown(wait=True)  # queued jobs see their cancel flag and return at once
        for hosted in self._models.values():
            hosted.model.close()
        self._models.clear()

    def describe(self) -> dict[str, Any]:
        """Return ``{name: kind}`` for logs and ``cube-stack up`` output."""
        return {name: type(h.model).__name__ for name, h in self._models.items()}
