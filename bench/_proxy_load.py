"""Benchmark helper: a multi-process asyncio HTTP/1.1 load generator, for when ``wrk`` is not installed.

Run by ``bench/proxy.py``. ``--concurrency`` keep-alive connections, spread over ``--processes`` worker
processes, each send the same request back to back for ``--duration`` seconds; the workers start at the
same wall-clock instant. The HTTP handling is a few lines over asyncio streams (Content-Length or chunked
answers), not httpx, so one worker costs little CPU per request -- but it is still Python, and on a
small machine it takes CPU from the servers it measures, which is why ``wrk`` is preferred.

Prints one JSON object: ``{"requests", "errors", "duration"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import queue
import ssl
import time
from typing import Any
from urllib.parse import urlsplit


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent by the servers measured here
                break
            await reader.readexactly(size + 2)
    elif length > 0:
        await reader.readexactly(length)
    return status


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_warm(url: str, request: bytes) -> Stream:
    """Connect (TLS unverified: a bench) and send one request, so the clock starts on a warm connection."""
    parts = urlsplit(url)
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, ssl=context)
    writer.write(request)
    await read_response(reader)
    return reader, writer


async def drive(stream: Stream, request: bytes, deadline: float) -> tuple[int, int]:
    """Send ``request`` on one connection until ``deadline``; return (successes, failures)."""
    reader, writer = stream
    ok = failed = 0
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            status = await read_response(reader)
            if time.perf_counter() > deadline:
                break
            if 200 <= status < 400:
                ok += 1
            else:
                failed += 1
    finally:
        writer.close()
    return ok, failed


def worker(url: str, request: bytes, connections: int, start_at: float, duration: float, out: Any) -> None:
    """Open ``connections`` connections, then from ``start_at`` (wall clock) load for ``duration``."""

    async def run() -> tuple[int, int]:
        streams = await asyncio.gather(*(open_warm(url, request) for _ in range(connections)))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + duration
        results = await asyncio.gather(*(drive(stream, request, deadline) for stream in streams))
        return sum(r[0] for r in results), sum(r[1] for r in results)

    try:
        out.put(asyncio.run(run()))
    except BaseException as error:  # the parent must hear of it, or it would wait for ever
        out.put(f"{type(error).__name__}: {error}")
        raise


def build_request(url: str, headers: list[str], body: bytes) -> bytes:
    """Return the raw HTTP/1.1 POST for ``url``."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += headers
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    with open(args.body_file, "rb") as handle:
        request = build_request(args.url, args.header, handle.read())
    processes = max(1, min(args.processes, args.concurrency))
    shares = [args.concurrency // processes + (i < args.concurrency % processes) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 3.0  # time for every worker to start and connect before the clock runs
    workers = [
        context.Process(target=worker, args=(args.url, request, n, start_at, args.duration, out))
        for n in shares
    ]
    for process in workers:
        process.start()
    results = []
    for _ in workers:
        try:
            results.append(out.get(timeout=start_at - time.time() + args.duration + 60))
        except queue.Empty:
            codes = [process.exitcode for process in workers]
            raise SystemExit(
                f"_proxy_load: a worker neither answered nor said why (exit codes {codes})"
            ) from None
    failed = [r for r in results if isinstance(r, str)]
    if failed:
        raise SystemExit(f"_proxy_load: a worker failed: {failed[0]}")
    for process in workers:
        process.join()
    print(
        json.dumps(
            {
                "requests": sum(r[0] for r in results),
                "errors": sum(r[1] for r in results),
                "duration": args.duration,
            }
        )
    )


if __name__ == "__main__":
    main()
