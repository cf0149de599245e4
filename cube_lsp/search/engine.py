"""One workspace's semantic search: keeps the index up to date and answers queries.

The pieces are pure and tested on their own (``files`` walks, ``chunker`` cuts, ``index`` stores,
``rank`` ranks); this module drives them for the language server and the CLI:

- :meth:`WorkspaceSearch.update` walks the workspace, re-chunks only the files whose size, mtime or
  content changed, forgets deleted ones, then embeds the chunks that have no vector yet, in batches,
  through ``embed`` (the attested proxy client: code is only embedded by a proxy that attested).
  Files are committed in batches, so a killed indexer resumes where it stopped; an unchanged chunk is
  never embedded twice (vectors are keyed by content hash).
- :meth:`WorkspaceSearch.update_paths` does the same for a few paths (``didSave``, watched files).
- :meth:`WorkspaceSearch.search` embeds the query (cached) and runs the hybrid ranking.

The SQLite index must be used from one thread: every index operation runs on this object's own
single worker thread (walking, reading and chunking too, so the event loop stays free). A failure to
embed (attestation included) propagates: the caller shows it, nothing else is sent. The index stays
usable and the next update resumes.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np

from cube_lsp.cube.errors import ProxyRateLimited
from cube_lsp.search.chunker import ChunkOptions
from cube_lsp.search.files import WalkOptions, admits, language_of, walk_workspace
from cube_lsp.search.index import IndexStats, SearchIndex, index_dir_for
from cube_lsp.search.prepare import Prepared, Skipped, prepare_files
from cube_lsp.search.rank import RankOptions, hybrid_search
from cube_lsp.search.types import Hit, SkipReason, SourceFile

__all__ = [
    "Embed",
    "IndexProgress",
    "IndexReport",
    "SearchOptions",
    "WorkspaceSearch",
    "describe",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Sends texts to the embedding model and returns one vector per text (CubeClient.embed, bound).
Embed = Callable[[Sequence[str]], Awaitable[list[list[float]]]]
#: Not user code: sent once per model to learn the vectors' width before the index is opened.
WIDTH_PROBE = "cube-lsp: embedding width probe"
LEXICAL_ONLY_MODEL = ""  # the index of a workspace with no embedding model: FTS only
PREPARE_TASK = 50  # files per worker task: small enough to spread over workers, large enough to amortise


@dataclass(frozen=True)
class SearchOptions:
    """How the workspace is indexed and searched; the defaults suit a source tree."""

    walk: WalkOptions = field(default_factory=WalkOptions)
    chunk: ChunkOptions = field(default_factory=ChunkOptions)
    rank: RankOptions = field(default_factory=RankOptions)
    files_per_commit: int = 200  # a kill loses at most this many files' chunking
    # worker processes that read and chunk while the index thread writes, for updates of more than one
    # batch; 0: everything on the index thread
    prepare_workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    embed_batch: int = 64  # texts per embedding request (the proxy rate-limits requests, not texts)
    rate_limit_retries: int = 30  # HTTP 429 answers waited out per embedding call before giving up
    max_retry_wait_s: float = 30.0  # longest wait for one Retry-After
    max_query_chars: int = 2000  # a longer query is cut (a 100 KB paste still answers)
    query_cache: int = 256  # query embeddings kept


@dataclass(frozen=True)
class IndexProgress:
    """Where an update stands, for ``$/progress`` and the CLI's progress bar."""

    phase: str  # "scanning" | "chunking" | "embedding" | "done"
    files_done: int = 0
    files_total: int = 0
    chunks_embedded: int = 0
    chunks_to_embed: int = 0


@dataclass(frozen=True)
class IndexReport:
    """What an update did."""

    files_seen: int
    files_changed: int
    files_removed: int
    chunks_embedded: int
    skipped: dict[str, int]
    seconds: float


ProgressCallback = Callable[[IndexProgress], None]


class WorkspaceSearch:
    """The search of one workspace root; close it with :meth:`aclose`."""

    def __init__(
        self,
        root: Path,
        *,
        embed: Embed | None,
        model: str | None,
        options: SearchOptions = SearchOptions(),
        index_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.root = root.resolve()
        self.options = options
        self._embed = embed if model else None
        self._model = model or LEXICAL_ONLY_MODEL
        self._index_dir = index_dir or index_dir_for(self.root, cache_dir)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="cube-search")
        self._index: SearchIndex | None = None
        self._open_lock = asyncio.Lock()
        self._update_lock = asyncio.Lock()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._stats: IndexStats | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the index and stop the worker thread."""
        if self._index is not None:
            index, self._index = self._index, None
            await self._run(index.close)
        self._thread.shutdown(wait=True)

    @property
    def stats(self) -> IndexStats | None:
        """Return what the index held after the last update (None before the first)."""
        return self._stats

    # -- indexing ------------------------------------------------------------------------------------

    async def update(self, progress: ProgressCallback | None = None) -> IndexReport:
        """Bring the index up to date with the workspace; return what was done."""
        async with self._update_lock:
            started = time.monotonic()
            index = await self._open()
            report = _Progress(progress)
            report.say(IndexProgress("scanning"))
            walked = await self._run(walk_workspace, self.root, self.options.walk)
            stored = await self._run(index.file_state)
            seen = {f.path for f in walked.files}
            removed = [path for path in stored if path not in seen]
            candidates = [
                f for f in walked.files if stored.get(f.path, (None, None))[:2] != (f.size, f.mtime_ns)
            ]
            skipped: Counter[SkipReason] = Counter(walked.skipped)
            changed = 0
            async for done, batch in self._prepared_batches(candidates):
                stored_now, batch_skipped, batch_removed = await self._run(self._store, index, batch, stored)
                changed += stored_now
                skipped.update(batch_skipped)
                removed.extend(batch_removed)
                report.say(IndexProgress("chunking", done, len(candidates)))
            if removed:
                await self._run(index.remove_files, removed)
            await self._run(index.set_skipped, skipped)
            embedded = await self._embed_pending(index, report)
            await self._run(index.compact)
            self._stats = await self._run(index.stats)
            report.say(IndexProgress("done", len(candidates), len(candidates), embedded, embedded))
            seconds = time.monotonic() - started
            log.info(
                "search index: %d files seen, %d changed, %d removed, %d chunks embedded in %.1f s",
                len(walked.files),
                changed,
                len(removed),
                embedded,
                seconds,
            )
            counts = {reason.value: n for reason, n in skipped.items() if n}
            return IndexReport(len(walked.files), changed, len(removed), embedded, counts, seconds)

    async def update_paths(self, paths: Iterable[str]) -> int:
        """Re-index the given workspace-relative paths (saved, created, changed or deleted files).

        Return how many chunks were embedded. Paths outside the workspace or refused by the ignore
        rules are dropped from the index, so a file that became ignored stops being searchable.
        """
        async with self._update_lock:
            index = await self._open()
            files: list[SourceFile] = []
            gone: list[str] = []
            for rel in dict.fromkeys(paths):
                found = await self._run(self._stat, rel)
                (files.append(found) if found is not None else gone.append(rel))
            stored = await self._run(index.file_state)
            prepared = await self._run(
                prepare_files, str(self.root), files, self.options.walk, self.options.chunk
            )
            _, _, removed = await self._run(self._store, index, prepared, stored)
            gone += removed
            if gone:
                await self._run(index.remove_files, [path for path in gone if path in stored])
            embedded = await self._embed_pending(index, _Progress(None))
            self._stats = await self._run(index.stats)
            return embedded

    def _stat(self, rel: str) -> SourceFile | None:
        """Return the file at ``rel`` if the walker would admit it now, else None."""
        if admits(self.root, rel, self.options.walk) is not None:
            return None
        path = self.root / rel
        try:
            info = path.lstat()
        except OSError:
            return None
        if not path.is_file() or path.is_symlink() or info.st_size > self.options.walk.max_file_bytes:
            return None
        return SourceFile(rel, info.st_size, info.st_mtime_ns, language_of(PurePosixPath(rel).name))

    async def _prepared_batches(
        self, files: list[SourceFile]
    ) -> AsyncIterator[tuple[int, list[Prepared | Skipped]]]:
        """Yield ``(files done, prepared batch)`` in order, ``files_per_commit`` files at a time.

        A large update prepares files in worker processes, in tasks of ``PREPARE_TASK`` files a few
        ahead, while the caller stores the previous batch; a small one (most saves and rescans)
        prepares on the index thread.
        """
        step = self.options.files_per_commit
        root, walk, chunking = str(self.root), self.options.walk, self.options.chunk
        workers = self.options.prepare_workers if len(files) > step else 0
        if workers < 1:
            for start in range(0, len(files), step):
                batch = files[start : start + step]
                yield start + len(batch), await self._run(prepare_files, root, batch, walk, chunking)
            return
        loop = asyncio.get_running_loop()
        tasks = [files[start : start + PREPARE_TASK] for start in range(0, len(files), PREPARE_TASK)]
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            ahead = 4 * workers  # tasks in flight: every worker busy, memory bounded
            futures = [
                loop.run_in_executor(pool, prepare_files, root, t, walk, chunking) for t in tasks[:ahead]
            ]
            batch: list[Prepared | Skipped] = []
            done = 0
            for index, task in enumerate(tasks):
                batch += await futures[index]
                if index + ahead < len(tasks):
                    later = tasks[index + ahead]
                    futures.append(loop.run_in_executor(pool, prepare_files, root, later, walk, chunking))
                done += len(task)
                if len(batch) >= step or index == len(tasks) - 1:
                    yield done, batch
                    batch = []
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _store(
        self,
        index: SearchIndex,
        prepared: Sequence[Prepared | Skipped],
        stored: dict[str, tuple[int, int, str]],
    ) -> tuple[int, Counter[SkipReason], list[str]]:
        """Write prepared files in one transaction (runs on the index thread); count what was skipped."""
        skipped: Counter[SkipReason] = Counter()
        removed: list[str] = []
        changed = 0
        with index.batch():
            for item in prepared:
                if isinstance(item, Skipped):
                    skipped[item.reason] += 1
                    if item.file.path in stored:
                        removed.append(item.file.path)
                    continue
                previous = stored.get(item.file.path)
                changed += previous is None or previous[2] != item.content_hash  # else touched: new mtime
                new = previous is None
                index.replace_file(item.file, item.content_hash, item.chunks, item.terms, new=new)
        return changed, skipped, removed

    async def _embed_pending(self, index: SearchIndex, report: _Progress) -> int:
        if self._embed is None:
            return 0
        total = (await self._run(index.stats)).pending
        embedded = 0
        batch = self.options.embed_batch
        while True:
            pending = await self._run(index.pending, batch)
            if not pending:
                return embedded
            hashes = [h for h, _ in pending]
            vectors = await self._embed_patiently([text for _, text in pending])
            embedded += await self._run(index.store_embeddings, hashes, np.asarray(vectors, dtype=np.float32))
            to_embed = max(total, embedded)
            report.say(IndexProgress("embedding", chunks_embedded=embedded, chunks_to_embed=to_embed))
            if len(pending) < batch and embedded >= total:
                return embedded

    # -- searching -----------------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        limit: int = 10,
        path_glob: str | None = None,
        languages: Sequence[str] | None = None,
        rank: RankOptions | None = None,
    ) -> list[Hit]:
        """Return the best ``limit`` hits for ``query`` (the query is embedded first, if a model is set)."""
        query = query[: self.options.max_query_chars]
        if not query.strip() or limit <= 0:
            return []
        index = await self._open()
        options = rank or self.options.rank
        vector = await self._query_vector(query) if options.mode != "lexical" else None
        run = partial(hybrid_search, index, query, vector, limit, path_glob, languages, options)
        return await self._run(run)

    async def search_many(
        self, queries: Sequence[str], *, limit: int = 10, rank: RankOptions | None = None, **filters: Any
    ) -> list[list[Hit]]:
        """Return the hits of each query, in order; the queries are embedded in batches, not one by one."""
        cut = [query[: self.options.max_query_chars] for query in queries]
        options = rank or self.options.rank
        vectors: dict[str, np.ndarray] = {}
        if self._embed is not None and options.mode != "lexical":
            await self._open()
            wanted = list(dict.fromkeys(q for q in cut if q.strip()))
            for start in range(0, len(wanted), self.options.embed_batch):
                batch = wanted[start : start + self.options.embed_batch]
                for query, vector in zip(batch, await self._embed_patiently(batch), strict=True):
                    vectors[query] = np.asarray(vector, dtype=np.float32)
        results = []
        for query in cut:
            if not query.strip():
                results.append([])
                continue
            index = await self._open()
            run = partial(hybrid_search, index, query, vectors.get(query), limit, options=options, **filters)
            results.append(await self._run(run))
        return results

    async def _query_vector(self, query: str) -> np.ndarray | None:
        if self._embed is None:
            return None
        cached = self._query_cache.get(query)
        if cached is not None:
            self._query_cache.move_to_end(query)
            return cached
        vector = np.asarray((await self._embed_patiently([query]))[0], dtype=np.float32)
        self._query_cache[query] = vector
        while len(self._query_cache) > self.options.query_cache:
            self._query_cache.popitem(last=False)
        return vector

    async def _embed_patiently(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed, waiting out the proxy's rate limit (HTTP 429 with Retry-After) a bounded number of times.

        Indexing a workspace is batch work that may well exceed a per-user burst; it slows down to the
        allowed rate instead of failing. Any other error (attestation included) propagates at once.
        """
        assert self._embed is not None
        for attempt in range(self.options.rate_limit_retries + 1):
            try:
                return await self._embed(texts)
            except ProxyRateLimited as limited:
                if attempt == self.options.rate_limit_retries:
                    raise
                wait = limited.retry_after if limited.retry_after is not None else 1.0
                log.info("search index: rate-limited by the proxy; waiting %.1f s", wait)
                await asyncio.sleep(min(wait, self.options.max_retry_wait_s))
        raise AssertionError("unreachable")

    # -- plumbing ------------------------------------------------------------------------------------

    async def _open(self) -> SearchIndex:
        async with self._open_lock:
            if self._index is None:
                width = 1
                if self._embed is not None:
                    width = len((await self._embed([WIDTH_PROBE]))[0])
                self._index = await self._run(SearchIndex, self._index_dir, self._model, width)
            return self._index

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(function, *args))


class _Progress:
    """Calls the progress callback at most every 100 ms, and always for the first report of a phase."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = 0.0
        self._phase = ""

    def say(self, progress: IndexProgress) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if progress.phase != self._phase or progress.phase == "done" or now - self._last >= 0.1:
            self._last, self._phase = now, progress.phase
            self._callback(progress)


def describe(stats: IndexStats | None, *, indexing: bool = False) -> dict[str, Any]:
    """Return the index part of ``cube/status``."""
    if stats is None:
        return {"state": "indexing" if indexing else "none"}
    return {
        "state": "indexing" if indexing else "ready",
        "files": stats.files,
        "chunks": stats.chunks,
        "embedded": stats.embedded,
        "pending": stats.pending,
        "skipped": dict(stats.skipped),
    }
