"""The completion engine with an in-process gated backend and an injected sleep (no real time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cube_lsp.completion.engine import CompletionEngine, CompletionInput
from cube_lsp.cube.errors import ProxyError
from cube_lsp.cube.requests import FimRequest
from cube_lsp.settings import CompletionSettings

TEXT = "def add(a, b):\n    return \n\n\nprint(add(1, 2))\n"
CURSOR = TEXT.index("return ") + len("return ")


class GatedBackend:
    """Streams scripted chunks; each chunk waits for `release()` when gated."""

    def __init__(self, *chunks: str, gated: bool = False) -> None:
        self.chunks = chunks
        self.gated = gated
        self.requests: list[FimRequest] = []
        self.gate = asyncio.Semaphore(0)
        self.closed = asyncio.Event()
        self.error: Exception | None = None

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.gate.release()

    async def stream_fim(self, request: FimRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        try:
            if self.error is not None:
                raise self.error
            for chunk in self.chunks:
                if self.gated:
                    await self.gate.acquire()
                yield chunk
        finally:
            self.closed.set()


class ManualSleep:
    """An injected sleep that returns when the test says so."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.wake = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await self.wake.wait()


def request(text: str = TEXT, offset: int = CURSOR, automatic: bool = False) -> CompletionInput:
    return CompletionInput("file:///a.py", "python", "/a.py", text, offset, automatic)


def engine_for(backend: GatedBackend, sleep=None, **settings) -> CompletionEngine:
    kwargs = {"sleep": sleep} if sleep else {}
    return CompletionEngine(
        backend, settings=CompletionSettings(**settings), model="qwen2.5-coder:1.5b", **kwargs
    )


async def test_completion_is_postprocessed_and_cached():
    backend = GatedBackend("a + b", "<|endoftext|>junk")
    engine = engine_for(backend)
    result = await engine.complete(request())
    assert result.text == "a + b"
    again = await engine.complete(request())
    assert again.from_cache and again.text == "a + b"
    assert len(backend.requests) == 1


async def test_debounce_lets_only_the_newest_request_reach_the_backend():
    backend = GatedBackend("a + b")
    sleep = ManualSleep()
    engine = engine_for(backend, sleep=sleep, debounce_ms=200)
    typed = [TEXT[:CURSOR] + "a"[:i] + TEXT[CURSOR:] for i in range(2)]
    first = asyncio.create_task(engine.complete(request(typed[0], CURSOR, automatic=True)))
    second = asyncio.create_task(engine.complete(request(typed[1], CURSOR + 1, automatic=True)))
    await asyncio.sleep(0)
    assert sleep.calls == [0.2, 0.2]
    sleep.wake.set()
    assert await first is None
    assert (await second).text == "a + b"
    assert len(backend.requests) == 1
    assert backend.requests[0].prompt.endswith("return a")  # the newest text went to the model


async def test_invoked_requests_skip_the_debounce():
    sleep = ManualSleep()
    engine = engine_for(GatedBackend("a + b"), sleep=sleep)
    assert (await engine.complete(request(automatic=False))).text == "a + b"
    assert sleep.calls == []


async def test_typing_along_reuses_the_in_flight_stream():
    backend = GatedBackend("a", " + b", gated=True)
    engine = engine_for(backend)
    first = asyncio.create_task(engine.complete(request()))
    backend.release()  # "a" arrives
    await asyncio.sleep(0.01)
    typed = TEXT[:CURSOR] + "a" + TEXT[CURSOR:]
    second = asyncio.create_task(engine.complete(request(typed, CURSOR + 1)))
    backend.release()
    assert (await first).text == "a + b"
    assert (await second).text == " + b"
    assert len(backend.requests) == 1


async def test_diverging_edit_cancels_the_stream_and_starts_another():
    backend = GatedBackend("a", " + b", gated=True)
    engine = engine_for(backend)
    first = asyncio.create_task(engine.complete(request()))
    backend.release()
    await asyncio.sleep(0.01)
    other = TEXT[:CURSOR] + "x" + TEXT[CURSOR:]
    second = asyncio.create_task(engine.complete(request(other, CURSOR + 1)))
    await asyncio.wait_for(backend.closed.wait(), 5)  # the first stream was closed
    backend.release(4)
    assert await first is None
    await second
    assert len(backend.requests) == 2


async def test_cancelled_request_closes_the_stream_after_the_grace(monkeypatch):
    monkeypatch.setattr("cube_lsp.completion.engine.REUSE_GRACE_S", 0.0)
    backend = GatedBackend("a", " + b", gated=True)
    engine = engine_for(backend)
    task = asyncio.create_task(engine.complete(request()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(backend.closed.wait(), 5)


async def test_backend_errors_reach_the_caller_with_their_code():
    backend = GatedBackend("never")
    backend.error = ProxyError("model not found", code="proxy.model_not_found")
    engine = engine_for(backend)
    with pytest.raises(ProxyError) as caught:
        await engine.complete(request())
    assert caught.value.code == "proxy.model_not_found"


async def test_single_line_stops_reading_after_the_first_line():
    backend = GatedBackend("a + b\n", "    more\n", "    lines\n", gated=True)
    engine = engine_for(backend, multiline="never")
    task = asyncio.create_task(engine.complete(request()))
    backend.release()
    assert (await asyncio.wait_for(task, 5)).text == "a + b"
    assert backend.closed.is_set()


async def test_disabled_or_unconfigured_engine_answers_nothing():
    assert await engine_for(GatedBackend("x"), enabled=False).complete(request()) is None
    assert await CompletionEngine(None).complete(request()) is None
