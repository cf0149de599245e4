"""Benchmark helper: a fake model runtime speaking OpenAI's and Ollama's wire formats, as fast as asyncio can.

Run by ``bench/proxy.py`` in its own process; it is the upstream that is measured directly and behind each
proxy. A raw :class:`asyncio.Protocol` (no framework, no per-request task for plain answers) keeps its own
cost and noise low. Routes: ``GET /health``, ``POST /v1/chat/completions``, ``POST /v1/completions``,
``POST /api/generate``, ``POST /api/chat``, ``GET /v1/models`` and ``GET /api/tags``. A request with
``"stream": true`` (Ollama: unless ``"stream": false``) is answered in chunked encoding: the headers and
the first chunk in one write at once, then ``--chunks`` more every ``--chunk-interval-ms``, then the end
(``data: [DONE]`` for SSE). Everything else is a small JSON answer with a Content-Length. HTTP/1.1
keep-alive; requests on one connection are answered in order.

Usage: python bench/_proxy_upstream.py --ready-file PATH [--port 0]; the bound port is written to
``--ready-file`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from dataclasses import dataclass

CREATED = 1_700_000_000
TEXT = "Hello there"


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _chat_completion() -> bytes:
    return _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TEXT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    )


def _text_completion() -> bytes:
    return _json(
        {
            "id": "cmpl-bench",
            "object": "text_completion",
            "created": CREATED,
            "model": "bench",
            "choices": [{"index": 0, "text": TEXT, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    )


def _chat_chunk(content: str | None, finish: str | None = None) -> bytes:
    delta: dict[str, str] = {} if content is None else {"role": "assistant", "content": content}
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + _json(chunk) + b"\n\n"


def _ollama(chat: bool, piece: str, done: bool) -> dict[str, object]:
    answer: dict[str, object] = {"model": "bench", "created_at": "2024-01-01T00:00:00Z", "done": done}
    if chat:
        answer["message"] = {"role": "assistant", "content": piece}
    else:
        answer["response"] = piece
    if done:
        answer.update(done_reason="stop", total_duration=1000, eval_count=2, prompt_eval_count=5)
    return answer


@dataclass(frozen=True)
class Stream:
    """A streamed answer: its content type, the events and the closing event."""

    content_type: bytes
    events: tuple[bytes, ...]  # the first goes out with the headers
    tail: bytes


def _sse_stream(count: int) -> Stream:
    events = tuple(_chat_chunk(f"tok{i} ") for i in range(count))
    return Stream(b"text/event-stream", events, _chat_chunk(None, "stop") + b"data: [DONE]\n\n")


def _ndjson_stream(chat: bool, count: int) -> Stream:
    events = tuple(_json(_ollama(chat, f"tok{i} ", False)) + b"\n" for i in range(count))
    return Stream(b"application/x-ndjson", events, _json(_ollama(chat, "", True)) + b"\n")


def _plain(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Answers:
    """The pre-rendered answers, per (method, path)."""

    def __init__(self, chunks: int) -> None:
        self.plain: dict[tuple[bytes, bytes], bytes] = {
            (b"GET", b"/health"): _plain(b"200 OK", b'{"status":"ok"}'),
            (b"POST", b"/v1/chat/completions"): _plain(b"200 OK", _chat_completion()),
            (b"POST", b"/v1/completions"): _plain(b"200 OK", _text_completion()),
            (b"POST", b"/api/generate"): _plain(b"200 OK", _json(_ollama(False, TEXT, True))),
            (b"POST", b"/api/chat"): _plain(b"200 OK", _json(_ollama(True, TEXT, True))),
            (b"GET", b"/v1/models"): _plain(
                b"200 OK", _json({"object": "list", "data": [{"id": "bench", "object": "model"}]})
            ),
            (b"GET", b"/api/tags"): _plain(b"200 OK", _json({"models": [{"name": "bench"}]})),
        }
        self.streams: dict[bytes, Stream] = {
            b"/v1/chat/completions": _sse_stream(chunks + 1),
            b"/api/generate": _ndjson_stream(False, chunks + 1),
            b"/api/chat": _ndjson_stream(True, chunks + 1),
        }
        self.not_found = _plain(b"404 Not Found", b'{"error":"not found"}')
        self.bad_request = _plain(b"400 Bad Request", b'{"error":"bad request"}')


def wants_stream(path: bytes, body: bytes) -> bool:
    """Return whether the request asks for a streamed answer (Ollama streams unless told not to)."""
    ollama = path.startswith(b"/api/")
    if b'"stream"' not in body:
        return ollama
    try:
        value = json.loads(body).get("stream")
    except (ValueError, AttributeError):
        return False
    return bool(value) if value is not None else ollama


class UpstreamProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parse requests from the buffer, answer in order."""

    def __init__(self, answers: Answers, interval: float) -> None:
        self.answers = answers
        self.interval = interval
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.streaming: asyncio.Task[None] | None = None
        self.pending: deque[bytes] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None:
            self.streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.streaming is None:
            self._process()

    def _process(self) -> None:
        transport = self.transport
        assert transport is not None
        while self.streaming is None:
            request = self._next_request()
            if request is None:
                return
            method, path, body, close = request
            stream = self.answers.streams.get(path) if method == b"POST" else None
            if stream is not None and wants_stream(path, body):
                self.streaming = asyncio.ensure_future(self._stream(stream, close))
                return
            transport.write(self.answers.plain.get((method, path), self.answers.not_found))
            if close:
                transport.close()
                return

    def _next_request(self) -> tuple[bytes, bytes, bytes, bool] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).split(b"\r\n")
        try:
            method, target, _version = head[0].split(b" ", 2)
        except ValueError:
            assert self.transport is not None
            self.transport.write(self.answers.bad_request)
            self.transport.close()
            self.buffer.clear()
            return None
        length = 0
        chunked = close = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        start = end + 4
        if chunked:
            decoded = self._dechunk(start)
            if decoded is None:
                return None
            body, consumed = decoded
        else:
            if len(self.buffer) < start + length:
                return None
            body, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        return method, target.split(b"?", 1)[0], body, close

    def _dechunk(self, at: int) -> tuple[bytes, int] | None:
        parts: list[bytes] = []
        buf = self.buffer
        while True:
            eol = buf.find(b"\r\n", at)
            if eol < 0:
                return None
            size = int(bytes(buf[at:eol]).split(b";", 1)[0], 16)
            at = eol + 2
            if size == 0:
                trailer = buf.find(b"\r\n\r\n", at - 2)
                return (b"".join(parts), trailer + 4) if trailer >= 0 else None
            if len(buf) < at + size + 2:
                return None
            parts.append(bytes(buf[at : at + size]))
            at += size + 2

    async def _stream(self, stream: Stream, close: bool) -> None:
        transport = self.transport
        assert transport is not None
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: "
            + stream.content_type
            + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        try:
            transport.write(head + _chunk(stream.events[0]))
            for event in stream.events[1:]:
                await asyncio.sleep(self.interval)
                transport.write(_chunk(event))
            transport.write(_chunk(stream.tail) + b"0\r\n\r\n")
        except asyncio.CancelledError:
            return
        self.streaming = None
        if close:
            transport.close()
        elif self.buffer:
            self._process()


def write_ready(path: str, info: dict[str, object]) -> None:
    """Write ``info`` as JSON to ``path`` atomically (the parent polls for the file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> None:
    """Listen on 127.0.0.1, report the port, and serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    answers = Answers(args.chunks)
    interval = args.chunk_interval_ms / 1000
    server = await loop.create_server(
        lambda: UpstreamProtocol(answers, interval), "127.0.0.1", args.port, backlog=1024, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_ready(args.ready_file, {"url": f"http://127.0.0.1:{port}", "pid": os.getpid()})
    async with server:
        await stop.wait()
    with contextlib.suppress(Exception):
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=4, help="streamed chunks after the first")
    parser.add_argument("--chunk-interval-ms", type=float, default=5.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
