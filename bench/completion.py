"""Benchmark: server-side latency of textDocument/inlineCompletion, cache hits and memory.

Runs the real cube-lsp server object in this process and feeds it JSON-RPC messages the way pygls'
stdio reader does (parse, structure, handle_message); the clock runs from "request bytes parsed" to
"response bytes written". The backend answers instantly (an in-process stream of a fixed
completion), so the figures are cube-lsp's own cost: document lookup, prompt building, cross-file
snippets, tree-sitter multi-line decision, post-processing, LSP conversion and JSON serialisation.

Baseline, measured in the same run: a request to a handler that returns at once, i.e. the floor of
pygls' dispatch and serialisation. Usage: python bench/completion.py [--iterations N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil

from cube_lsp.cube.requests import FimRequest
from cube_lsp.server import build_server
from cube_lsp.settings import CompletionSettings

COMPLETION = "total = compute(values, weights)\n"


class InstantBackend:
    """Answers every FIM request at once with a fixed completion (no network, no model)."""

    def __init__(self) -> None:
        self.calls = 0

    async def stream_fim(self, request: FimRequest) -> AsyncIterator[str]:
        self.calls += 1
        yield COMPLETION


class CapturingWriter:
    """Stands in for stdout: records when each response is written."""

    def __init__(self) -> None:
        self.written = asyncio.Event()
        self.at = 0.0

    def write(self, data: bytes) -> None:
        if b'"result"' in data or b'"error"' in data:
            self.at = time.perf_counter()
            self.written.set()


def make_source(lines: int) -> str:
    header = "import os\nfrom typing import Any\n\n\n"
    body = []
    for index in range(lines):
        if index % 10 == 0:
            body.append(f"def function_{index}(values: list[int], weights: list[int]) -> int:")
        elif index % 10 == 9:
            body.append("    return total")
        else:
            body.append(f"    total_{index} = sum(v * w for v, w in zip(values, weights)) + {index}")
    return header + "\n".join(body) + "\n"


def message(method: str, params: Any, msg_id: int | None = None) -> bytes:
    payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if msg_id is not None:
        payload["id"] = msg_id
    return json.dumps(payload).encode()


class Harness:
    def __init__(self) -> None:
        self.server = build_server()
        self.writer = CapturingWriter()
        self.server.protocol.set_writer(self.writer)
        self.backend = InstantBackend()
        self.server.engine.configure(self.backend, CompletionSettings(debounce_ms=0), "qwen2.5-coder:1.5b")

        @self.server.feature("bench/noop")
        def noop(ls: Any, params: Any) -> None:
            return None

        self.ids = 0

    def notify(self, method: str, params: Any) -> None:
        protocol = self.server.protocol
        protocol.handle_message(json.loads(message(method, params), object_hook=protocol.structure_message))

    async def request(self, method: str, params: Any) -> float:
        """Send one request; return milliseconds from parse start to response written."""
        self.ids += 1
        raw = message(method, params, self.ids)
        self.writer.written.clear()
        start = time.perf_counter()
        protocol = self.server.protocol
        protocol.handle_message(json.loads(raw, object_hook=protocol.structure_message))
        await self.writer.written.wait()
        return (self.writer.at - start) * 1000


def inline_params(uri: str, line: int, character: int) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1},
    }


async def measure_file(
    harness: Harness, lines: int, iterations: int
) -> tuple[list[float], list[float], list[float]]:
    uri = f"file:///bench/file_{lines}.py"
    source = make_source(lines)
    harness.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": source}},
    )
    cursor_line = 4 + lines // 2 + 1  # the middle of the file, inside a function body
    version = 1
    misses: list[float] = []
    hits: list[float] = []
    edits: list[float] = []
    for index in range(iterations):
        # Type a character at the start of a fresh line: a new context, so the cache cannot answer.
        version += 1
        char = "abcdefghijklmnopqrstuvwxyz"[index % 26]
        started = time.perf_counter()
        harness.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [
                    {
                        "range": {
                            "start": {"line": cursor_line, "character": 0},
                            "end": {"line": cursor_line, "character": 0},
                        },
                        "text": f"    {char}\n",
                    }
                ],
            },
        )
        edits.append((time.perf_counter() - started) * 1000)
        position = (cursor_line, 5)
        misses.append(await harness.request("textDocument/inlineCompletion", inline_params(uri, *position)))
        hits.append(await harness.request("textDocument/inlineCompletion", inline_params(uri, *position)))
        cursor_line += 1
    return misses, hits, edits


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(iterations: int) -> None:
    harness = Harness()
    baseline = [await harness.request("bench/noop", {}) for _ in range(iterations)]
    base_p50 = statistics.median(baseline)
    rows = [("baseline: pygls no-op request", baseline)]
    hit_rows = []
    edit_rows = []
    for lines in (1_000, 10_000, 50_000):
        gc.collect()
        misses, hits, edits = await measure_file(harness, lines, iterations)
        rows.append((f"inlineCompletion, {lines:,} lines", misses))
        hit_rows.append((f"cache hit, {lines:,} lines", hits))
        edit_rows.append((f"didChange (one keystroke), {lines:,} lines", edits))
    rss_mb = psutil.Process().memory_info().rss / 2**20
    print(f"cube-lsp completion benchmark ({iterations} requests per row, backend answering instantly)")
    print(f"{'case':<42}{'p50 ms':>9}{'p99 ms':>9}{'p50/baseline':>14}")
    for name, values in rows + hit_rows + edit_rows:
        p50 = statistics.median(values)
        print(f"{name:<42}{p50:>9.3f}{percentile(values, 0.99):>9.3f}{p50 / base_p50:>13.1f}x")
    print(f"backend calls: {harness.backend.calls} (expected {3 * iterations}: every miss, no hit)")
    print(f"RSS after the run: {rss_mb:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.iterations))


if __name__ == "__main__":
    main()
