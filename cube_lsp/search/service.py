"""Search as the language server runs it: one index per workspace, kept up to date in the background.

:class:`SearchService` owns the :class:`~cube_lsp.search.engine.WorkspaceSearch` of the first workspace
folder and decides when it updates: a full update after start and after a settings change that changes
what is indexed, a few paths after ``didSave`` and ``workspace/didChangeWatchedFiles`` (coalesced while
an update runs), and a periodic rescan for changes made outside the editor. The server's handlers stay
thin: they call :meth:`search`, :meth:`symbols`, :meth:`files_changed` and :meth:`status`.

Embedding goes through the server's current proxy client, looked up at each call, so a settings change
(new token, new endpoint) applies at once and attestation guards every request. A failed update
(attestation included) is reported once through ``report_error``; nothing else is sent, the index
keeps what it had, and the next update resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.errors import ProxyNotConfigured
from cube_lsp.search.engine import Embed, IndexProgress, SearchOptions, WorkspaceSearch, describe
from cube_lsp.search.files import WalkOptions
from cube_lsp.search.types import Hit
from cube_lsp.settings import Settings
from cube_wire.errors import CubeError

__all__ = ["ProgressSink", "SearchService"]

log = logging.getLogger(__name__)


class ProgressSink(Protocol):
    """Where indexing progress goes (the server's ``$/progress``, or nowhere)."""

    def begin(self, title: str) -> object:
        """Start a progress; return a handle (None: nothing will be shown)."""
        ...

    def report(self, handle: object, message: str, percentage: int | None) -> None:
        """Say how far it got."""
        ...

    def end(self, handle: object, message: str) -> None:
        """Finish the progress."""
        ...


@dataclass(frozen=True)
class _Config:
    """What decides which index is used: a change to any of these opens another one."""

    root: Path
    model: str | None
    exclude: tuple[str, ...]
    rescan_interval_s: int


class SearchService:
    """Semantic search for the language server; every method is called on the server's event loop."""

    def __init__(
        self,
        *,
        client: Callable[[], CubeClient | None],
        report_error: Callable[[CubeError], None],
        status_changed: Callable[[], None],
        progress: ProgressSink | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._client = client
        self._report_error = report_error
        self._status_changed = status_changed
        self._progress = progress
        self._cache_dir = cache_dir
        self._config: _Config | None = None
        self._search: WorkspaceSearch | None = None
        self._task: asyncio.Task[None] | None = None
        self._rescan: asyncio.Task[None] | None = None
        self._full_wanted = False
        self._paths_wanted: set[str] = set()
        self._indexing = False
        self._error: CubeError | None = None

    # -- configuration -------------------------------------------------------------------------------

    async def configure(self, roots: Sequence[Path], settings: Settings) -> None:
        """Use these roots and settings; a change that alters the index opens another one and rescans."""
        search = settings.search
        if not search.enabled or not roots:
            await self._close()
            self._config = None
            return
        model = settings.models.embedding if settings.endpoint and settings.domain else None
        config = _Config(roots[0].resolve(), model, search.exclude, search.rescan_interval_s)
        if config == self._config and self._search is not None:
            return
        await self._close()
        self._config = config
        options = SearchOptions(walk=WalkOptions(extra_deny=config.exclude))
        embed = self._embedder(model) if model else None
        self._search = WorkspaceSearch(
            config.root, embed=embed, model=model, options=options, cache_dir=self._cache_dir
        )
        self._full_wanted = True
        self._kick()
        self._rescan = asyncio.ensure_future(self._rescan_every(config.rescan_interval_s))

    def _embedder(self, model: str) -> Embed:
        async def embed(texts: Sequence[str]) -> list[list[float]]:
            client = self._client()
            if client is None:
                raise ProxyNotConfigured("no proxy configured: set `endpoint` and `domain` to search")
            return await client.embed(texts, model=model)

        return embed

    # -- updates -------------------------------------------------------------------------------------

    def files_changed(self, paths: Iterable[str]) -> None:
        """Re-index these files (absolute paths) soon: saved, created, changed or deleted."""
        if self._config is None:
            return
        root = self._config.root
        for path in paths:
            try:
                rel = Path(path).resolve().relative_to(root)
            except (ValueError, OSError):
                continue  # outside the workspace
            self._paths_wanted.add(rel.as_posix())
        self._kick()

    def rescan(self) -> None:
        """Schedule a full update."""
        if self._search is not None:
            self._full_wanted = True
            self._kick()

    async def wait_idle(self) -> None:
        """Wait until no update runs or is wanted (tests and the CLI; the server never blocks on it)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run_updates())

    async def _run_updates(self) -> None:
        while self._search is not None and (self._full_wanted or self._paths_wanted):
            search = self._search
            full, paths = self._full_wanted, sorted(self._paths_wanted)
            self._full_wanted, self._paths_wanted = False, set()
            self._indexing = True
            self._status_changed()
            handle = self._progress.begin("Cube: indexing the workspace") if self._progress and full else None
            try:
                if full:
                    await search.update(partial(self._report_progress, handle))
                else:
                    await search.update_paths(paths)
                self._error = None
            except CubeError as error:
                self._error = error
                self._report_error(error)
            except Exception as exc:  # never let a bug end indexing for good; logged by type only
                log.warning("search index update failed: %s", type(exc).__name__)
            finally:
                self._indexing = False
                if handle is not None and self._progress is not None:
                    done = "indexed" if self._error is None else "stopped: see the status"
                    self._progress.end(handle, done)
                self._status_changed()

    def _report_progress(self, handle: object, progress: IndexProgress) -> None:
        if handle is None or self._progress is None:
            return
        if progress.phase == "embedding":
            done, total = progress.chunks_embedded, progress.chunks_to_embed
            message = f"embedding {done}/{total} chunks"
        else:
            done, total = progress.files_done, progress.files_total
            message = f"{progress.phase} {done}/{total} files"
        percentage = int(100 * done / total) if total else None
        self._progress.report(handle, message, percentage)

    async def _rescan_every(self, seconds: int) -> None:
        while True:
            await asyncio.sleep(seconds)  # a period, not synchronisation: changes made outside the editor
            self.rescan()

    # -- queries -------------------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        limit: int = 20,
        path_glob: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Ranked hits for ``query``; raises CubeError (attestation included) when it cannot search."""
        if self._search is None:
            raise CubeError("search is off: set `search.enabled` and open a folder", code="search.disabled")
        return await self._search.search(query, limit=limit, path_glob=path_glob, languages=languages)

    async def related(self, query: str, limit: int) -> list[Hit]:
        """Return hits for chat context, each snippet holding its chunk's whole text.

        The index's chunks are already small. No search (off, or no folder) gives none, not an error.
        """
        if self._search is None:
            return []
        rank = replace(self._search.options.rank, snippet_lines=10_000, snippet_chars=4000)
        return await self._search.search(query, limit=limit, rank=rank)

    async def symbols(self, query: str, limit: int = 50) -> list[Hit]:
        """Hits for ``workspace/symbol``: definitions whose name matches, then semantic matches."""
        if self._search is None or not query.strip():
            return []
        hits = await self._search.search(query, limit=limit)
        return [hit for hit in hits if hit.symbol]

    def status(self) -> dict[str, Any]:
        """Return the ``index`` object of ``cube/status``."""
        if self._search is None:
            return {"state": "off"}
        described = describe(self._search.stats, indexing=self._indexing)
        if self._error is not None and not self._indexing:
            described |= {"state": "error", "code": self._error.code}
        return described

    async def aclose(self) -> None:
        """Stop updating and close the index."""
        await self._close()

    async def _close(self) -> None:
        for task in (self._rescan, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._rescan = self._task = None
        if self._search is not None:
            search, self._search = self._search, None
            await search.aclose()
