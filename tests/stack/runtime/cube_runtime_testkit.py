"""Helpers shared by the runtime tests (imported by name: the test folders are not packages)."""

from __future__ import annotations

import queue
from dataclasses import dataclass

from cube_stack.runtime import BuiltinRuntime
from cube_stack.runtime.demo_model import DemoVocabulary
from cube_stack.runtime.llama import GenerationReport

NOFIM_MODEL_NAME = "cube-demo:nofim"


class Reports:
    """Generation reports posted by the runtime's worker threads, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[GenerationReport] = queue.Queue()

    def __call__(self, report: GenerationReport) -> None:
        self._queue.put(report)

    def clear(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def next(self, timeout: float = 30.0) -> GenerationReport:
        return self._queue.get(timeout=timeout)


@dataclass
class RunningRuntime:
    runtime: BuiltinRuntime
    reports: Reports
    vocab: DemoVocabulary

    @property
    def url(self) -> str:
        return self.runtime.base_url
