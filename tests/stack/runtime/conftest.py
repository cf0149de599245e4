"""Fixtures for the runtime tests: the generated demo GGUFs and built-in runtimes on real uvicorn.

Each runtime runs for the whole session on 127.0.0.1 port 0, in a background thread with its own event
loop (starting it in every test would reload the models). Tests talk to it through httpx in their own
loop. Every generation's :class:`GenerationReport` lands in ``reports``; a test clears it first and then
waits for its own report with a timeout (no sleeps).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from cube_runtime_testkit import NOFIM_MODEL_NAME, Reports, RunningRuntime

from cube_stack.runtime import DEMO_MODEL_NAME, BuiltinRuntime, BuiltinSettings, write_demo_model
from cube_stack.runtime.demo_model import demo_vocabulary


class _LoopThread:
    """An event loop in a daemon thread, to host a runtime for the whole session."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="runtime-test-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float = 120.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="session")
def demo_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("models") / "cube-demo.gguf", seed=0)


@pytest.fixture(scope="session")
def nofim_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_model(
        tmp_path_factory.mktemp("models-nofim") / "cube-demo-nofim.gguf", seed=1, fim=False
    )


def _serve(settings: BuiltinSettings) -> Iterator[tuple[BuiltinRuntime, Reports]]:
    reports = Reports()
    runtime = BuiltinRuntime(settings, observer=reports)
    host = _LoopThread()
    try:
        host.run(runtime.start())
        yield runtime, reports
    finally:
        host.run(runtime.stop())
        host.close()


@pytest.fixture(scope="session")
def llama_runtime_server(demo_model_path: Path, nofim_model_path: Path) -> Iterator[RunningRuntime]:
    settings = BuiltinSettings(
        models={DEMO_MODEL_NAME: demo_model_path, NOFIM_MODEL_NAME: nofim_model_path}, n_ctx=4096, n_threads=1
    )
    for runtime, reports in _serve(settings):
        yield RunningRuntime(runtime, reports, demo_vocabulary())


@pytest.fixture
def llama_runtime(llama_runtime_server: RunningRuntime) -> RunningRuntime:
    llama_runtime_server.reports.clear()
    return llama_runtime_server


@pytest.fixture(scope="session")
def minilm_runtime() -> Iterator[BuiltinRuntime]:
    for runtime, _ in _serve(BuiltinSettings(minilm=True, n_threads=1)):
        yield runtime
