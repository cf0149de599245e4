"""The completion engine: cache, debounce, cancellation and stream reuse around one FIM backend.

Order of work for one request (cheapest first):

1. the typed-ahead cache (no debounce, no backend call);
2. an in-flight generation for the same document that the programmer is typing along with
   (reuse it rather than start another one);
3. the debounce (automatic triggers only), after which a newer request for the same document
   supersedes this one;
4. a new generation: prompt building, the backend stream, post-processing.

A generation runs in its own task so that several requests can share it; it is cancelled (closing
the HTTP stream, which the backend sees as a disconnect) once no request waits for it any more,
after a short grace period that lets the next keystroke's request pick it up.

The engine imports no LSP or HTTP library: the backend is any object with ``stream_fim`` and the
clock and sleep are injected, so tests drive it with fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cube_lsp.completion.cache import CompletionCache
from cube_lsp.completion.debounce import AdaptiveDebounce
from cube_lsp.completion.multiline import decide_multiline
from cube_lsp.completion.postprocess import DEFAULT_STOP_TOKENS, PostprocessConfig, postprocess
from cube_lsp.completion.prompt import PromptInput, build_fim_request
from cube_lsp.completion.types import Candidate, CursorContext, Snippet
from cube_lsp.cube.requests import FimRequest
from cube_lsp.settings import CompletionSettings

# How long a generation nobody waits for any more stays alive for the next keystroke's request.
REUSE_GRACE_S = 0.25
# Concurrent backend streams; further generations queue (they are usually superseded first).
MAX_CONCURRENT_STREAMS = 2
# How much of the document around the cursor the post-processing filters see.
POSTPROCESS_WINDOW = 16_384
# Largest generated text we keep; a model that streams more than this is cut off.
MAX_GENERATED_CHARS = 32_768


class FimBackend(Protocol):
    """Anything that streams the text of a FIM generation (the proxy client, a test double)."""

    def stream_fim(self, request: FimRequest) -> AsyncIterator[str]:
        """Yield the generated text chunk by chunk."""
        ...


SnippetSource = Callable[["CompletionInput"], Sequence[Snippet]]


@dataclass(frozen=True)
class CompletionInput:
    """One completion request, in the engine's terms."""

    uri: str
    language_id: str
    path: str
    text: str
    offset: int
    automatic: bool  # True for automatic triggers (debounced), False when the user asked


@dataclass(frozen=True)
class CompletionResult:
    """A completion to show: insert ``text`` at the cursor, replacing ``replace_suffix_chars``."""

    id: str
    text: str
    replace_suffix_chars: int
    from_cache: bool = False


@dataclass
class _Generation:
    uri: str
    model: str
    prefix_len: int
    prefix_tail: str
    suffix_head: str
    fim: FimRequest
    task: asyncio.Task[str]
    chunks: list[str]
    waiters: int = 0
    cancel_handle: asyncio.TimerHandle | None = None

    def produced(self) -> str:
        return "".join(self.chunks)


class CompletionEngine:
    """Turns completion requests into post-processed completions, with as few backend calls as possible."""

    def __init__(
        self,
        backend: FimBackend | None,
        *,
        settings: CompletionSettings | None = None,
        model: str = "",
        api_raw: bool = False,
        snippet_source: SnippetSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.backend = backend
        self.settings = settings or CompletionSettings()
        self.model = model
        self.api_raw = api_raw
        self.snippet_source = snippet_source
        self.clock = clock
        self.sleep = sleep
        self.cache = CompletionCache()
        self.debounce = AdaptiveDebounce(self.settings.debounce_ms)
        self.backend_calls = 0
        self._latest: dict[str, int] = {}
        self._serial = 0
        self._generations: dict[str, _Generation] = {}
        self._streams = asyncio.Semaphore(MAX_CONCURRENT_STREAMS)

    def configure(
        self, backend: FimBackend | None, settings: CompletionSettings, model: str, api_raw: bool = False
    ) -> None:
        """Switch backend, settings or model; cached completions and running generations are dropped."""
        self.backend = backend
        self.settings = settings
        self.model = model
        self.api_raw = api_raw
        self.debounce.fixed_ms = settings.debounce_ms
        self.cache.clear()
        for generation in list(self._generations.values()):
            generation.task.cancel()
        self._generations.clear()

    def note_keystroke(self, uri: str) -> None:
        """Tell the debounce that ``uri`` was just edited."""
        self.debounce.note_keystroke(uri, self.clock())

    async def complete(self, request: CompletionInput) -> CompletionResult | None:
        """Return a completion for ``request``, or None when there is nothing (good) to show."""
        if not self.settings.enabled or self.backend is None:
            return None
        cached = self._from_cache(request)
        if cached is not None:
            return cached

        self._serial += 1
        serial = self._latest[request.uri] = self._serial
        generation, typed = self._reusable_generation(request)
        if generation is None:
            if request.automatic:
                await self.sleep(self.debounce.delay(request.uri))
            if self._latest.get(request.uri) != serial:
                return None  # a newer request for this document took over
            cached = self._from_cache(request)  # a generation that ended during the debounce may answer
            if cached is not None:
                return cached
            generation, typed = self._start_generation(request), ""
        raw = await self._wait(generation)
        if raw is None or not raw.startswith(typed):
            return None
        return self._finish(request, raw[len(typed) :], generation.fim.stop)

    def _from_cache(self, request: CompletionInput) -> CompletionResult | None:
        hit = self.cache.lookup(request.uri, self.model, request.text, request.offset)
        if hit is None:
            return None
        return CompletionResult(_new_id(), hit.text, hit.replace_suffix_chars, from_cache=True)

    def _finish(self, request: CompletionInput, raw: str, stops: tuple[str, ...]) -> CompletionResult | None:
        context = _cursor_context(request, self._multiline(request))
        # Our artefact list plus the template's stops; single-line cutting is the filters' job, not "\n".
        config = PostprocessConfig(stop_tokens=DEFAULT_STOP_TOKENS + tuple(s for s in stops if s.strip()))
        candidate = postprocess(Candidate(raw), context, config)
        if candidate is None or not candidate.text:
            return None
        self.cache.store(
            request.uri,
            self.model,
            request.text,
            request.offset,
            candidate.text,
            candidate.replace_suffix_chars,
        )
        return CompletionResult(_new_id(), candidate.text, candidate.replace_suffix_chars)

    def _multiline(self, request: CompletionInput) -> bool:
        return decide_multiline(request.text, request.offset, request.language_id, self.settings.multiline)

    def _build_request(self, request: CompletionInput, *, multiline: bool) -> FimRequest:
        snippets: Sequence[Snippet] = ()
        if self.settings.cross_file_context and self.snippet_source is not None:
            snippets = self.snippet_source(request)
        source = PromptInput(
            text=request.text,
            offset=request.offset,
            language_id=request.language_id,
            path=request.path,
            model=self.model,
            snippets=snippets,
            raw=self.api_raw or self.settings.use_raw_template,
            multiline=multiline,
        )
        return build_fim_request(source, self.settings)

    def _reusable_generation(self, request: CompletionInput) -> tuple[_Generation | None, str]:
        """Find a running generation the programmer has been typing along with."""
        generation = self._generations.get(request.uri)
        if generation is None or generation.task.done():
            return None, ""
        start = generation.prefix_len
        if generation.model != self.model or start > request.offset:
            return None, ""
        text = request.text
        if text[request.offset : request.offset + len(generation.suffix_head)] != generation.suffix_head:
            return None, ""
        if text[max(0, start - len(generation.prefix_tail)) : start] != generation.prefix_tail:
            return None, ""
        typed = text[start : request.offset]
        produced = generation.produced()
        if not (produced.startswith(typed) or typed.startswith(produced)):
            return None, ""
        return generation, typed

    def _start_generation(self, request: CompletionInput) -> _Generation:
        previous = self._generations.pop(request.uri, None)
        if previous is not None:
            previous.task.cancel()
        multiline = self._multiline(request)
        fim = self._build_request(request, multiline=multiline)
        chunks: list[str] = []
        task = asyncio.get_running_loop().create_task(self._run(fim, chunks, multiline))
        generation = _Generation(
            uri=request.uri,
            model=self.model,
            prefix_len=request.offset,
            prefix_tail=request.text[max(0, request.offset - 256) : request.offset],
            suffix_head=request.text[request.offset : request.offset + 256],
            fim=fim,
            task=task,
            chunks=chunks,
        )
        self._generations[request.uri] = generation
        task.add_done_callback(lambda _: self._forget(generation))
        return generation

    def _forget(self, generation: _Generation) -> None:
        if self._generations.get(generation.uri) is generation:
            del self._generations[generation.uri]

    async def _run(self, request: FimRequest, chunks: list[str], multiline: bool) -> str:
        if self.backend is None:
            return ""
        async with self._streams:
            self.backend_calls += 1
            size = 0
            stream = self.backend.stream_fim(request)
            try:
                async for chunk in stream:
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= MAX_GENERATED_CHARS or (not multiline and _has_finished_line(chunks)):
                        break
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        return "".join(chunks)

    async def _wait(self, generation: _Generation) -> str | None:
        if generation.cancel_handle is not None:
            generation.cancel_handle.cancel()
            generation.cancel_handle = None
        generation.waiters += 1
        try:
            return await asyncio.shield(generation.task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this request itself was cancelled
            return None  # the generation was replaced by a newer one
        finally:
            generation.waiters -= 1
            if generation.waiters == 0 and not generation.task.done():
                loop = asyncio.get_running_loop()
                generation.cancel_handle = loop.call_later(REUSE_GRACE_S, generation.task.cancel)

    async def aclose(self) -> None:
        """Cancel every running generation and wait for their streams to close."""
        tasks = [generation.task for generation in self._generations.values()]
        self._generations.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _has_finished_line(chunks: list[str]) -> bool:
    """Whether a single-line generation has produced a line break after some content."""
    produced = "".join(chunks).lstrip("\r\n")
    return "\n" in produced


def _cursor_context(request: CompletionInput, multiline: bool) -> CursorContext:
    start = max(0, request.offset - POSTPROCESS_WINDOW)
    return CursorContext(
        language_id=request.language_id,
        prefix=request.text[start : request.offset],
        suffix=request.text[request.offset : request.offset + POSTPROCESS_WINDOW],
        multiline=multiline,
    )


def _new_id() -> str:
    return uuid.uuid4().hex[:16]
