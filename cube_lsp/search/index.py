"""The search index of one workspace: SQLite (files, chunks, FTS5 terms) plus the embedding array.

What lives where:

- ``index.sqlite3`` (WAL, ``synchronous=NORMAL``): ``meta`` (schema version, embedding model, dimension,
  the array's file name and committed row count, skipped counts), ``files`` (size, mtime, content hash:
  what the caller compares to skip unchanged files), ``chunks``, ``embeddings`` (chunk content hash ->
  row of the array) and ``chunk_terms``, an FTS5 table of symbol, path and body terms (see ``terms``).
- ``vectors-<generation>.bin``: the :class:`~cube_lsp.search.vectors.VectorStore`, append-only.

Embeddings are keyed by the chunk's content hash, not by chunk or file: a chunk whose text did not change
keeps its vector when its file is re-chunked, when it moves lines, or when it moves to another file.

Crash safety (kill -9 at any moment): SQLite's journal covers the tables. Vector rows are written and
fsynced *before* the transaction that points at them commits, inside that write transaction (so writers
in several processes take turns); rows past the committed count are cut off by the next writer or on
open. Compaction writes a new array file, commits the switch, then deletes the old file; files no commit
names are deleted on open.

A :class:`SearchIndex` holds one SQLite connection and must be used from the thread that opened it
(the LSP from its asyncio thread or one dedicated executor thread, the CLI from its main thread);
sqlite3 raises ProgrammingError otherwise. Its only own thread scans the array during a query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import platformdirs

from cube_lsp.search.terms import chunk_terms, index_terms
from cube_lsp.search.types import Chunk, SkipReason, SourceFile
from cube_lsp.search.vectors import RowType, VectorFileError, VectorStore

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "IndexStats",
    "SearchIndex",
    "StoredChunk",
    "index_dir_for",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Bump on any change to the tables, the FTS terms or the array layout: an index of another version is
# deleted and rebuilt, never read.
SCHEMA_VERSION = 1
DB_NAME = "index.sqlite3"
_VECTOR_GLOB = "vectors-*.bin"
# compact() without force rewrites the array once this share of its rows is no longer used.
GARBAGE_RATIO = 0.30

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL, language TEXT
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, symbol TEXT, kind TEXT NOT NULL,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, header TEXT NOT NULL, text TEXT NOT NULL,
    content_hash TEXT NOT NULL, language TEXT
);
CREATE INDEX chunks_path ON chunks (path);
CREATE INDEX chunks_hash ON chunks (content_hash);
CREATE TABLE embeddings (content_hash TEXT PRIMARY KEY, row INTEGER NOT NULL UNIQUE) WITHOUT ROWID;
-- porter: "tokens" finds "token". The terms are already split and lowercased by terms.index_terms.
CREATE VIRTUAL TABLE chunk_terms USING fts5 (
    symbol_terms, path_terms, body_terms, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


def index_dir_for(root: Path, cache_dir: Path | None = None) -> Path:
    """Return the index directory of a workspace: ``<cache>/search/<sha256(resolved root)[:16]>``.

    ``cache_dir`` replaces the user cache directory (``platformdirs.user_cache_dir("cube-lsp")``). The
    index is never kept inside the workspace: a cache directory inside ``root`` is refused.
    """
    resolved = root.resolve()
    base = (cache_dir or Path(platformdirs.user_cache_dir("cube-lsp"))).resolve()
    if base == resolved or base.is_relative_to(resolved):
        raise ValueError(f"cache directory {base} is inside the workspace {resolved}")
    key = hashlib.sha256(str(resolved).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return base / "search" / key


@dataclass(frozen=True)
class IndexStats:
    """What the index holds, for ``cube/status`` and the CLI."""

    files: int
    chunks: int
    embedded: int  # chunks whose content hash has a vector
    pending: int  # distinct content hashes still waiting for a vector
    skipped: dict[str, int] = field(default_factory=dict)  # SkipReason value -> count, from set_skipped
    last_update: float | None = None  # clock time of the last write; None for a new index
    vector_rows: int = 0  # rows committed in the array, garbage included
    garbage_rows: int = 0  # rows no chunk uses any more (compact() reclaims them)


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored, with its row id (the FTS rowid) and its file's language."""

    id: int
    path: str
    symbol: str | None
    kind: str
    start_line: int
    end_line: int
    header: str
    text: str
    content_hash: str
    language: str | None


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str | None) -> bool:
    """SQLite's REGEXP operator (``value REGEXP pattern`` calls ``regexp(pattern, value)``)."""
    return value is not None and _compiled(pattern).match(value) is not None


def _path_terms(path: str) -> str:
    return index_terms(path.replace("/", " ").replace(".", " "))


class SearchIndex:
    """The index of one workspace, stored in ``directory`` (see :func:`index_dir_for`).

    ``model`` and ``dim`` name the embedding model whose vectors the array holds; an index built for
    another model, dimension, row type or schema version is deleted and rebuilt on open. ``clock``
    stamps ``last_update``.
    """

    def __init__(
        self,
        directory: Path,
        model: str,
        dim: int,
        *,
        row_type: RowType = "int8",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.model = model
        self.dim = dim
        self.row_type: RowType = row_type
        self._clock = clock
        directory.mkdir(parents=True, exist_ok=True)
        self._db_path = directory / DB_NAME
        self._scan_pool: ThreadPoolExecutor | None = None
        self._conn = self._open_database()
        try:
            self._store = VectorStore(directory / self._meta("vector_file"), dim, row_type)
        except VectorFileError as exc:
            log.warning("search index at %s: %s; deleting and rebuilding it", directory, exc)
            self._conn.close()
            self._conn = self._fresh_database()
            self._store = VectorStore(directory / self._meta("vector_file"), dim, row_type)
        self._recover()

    # -- opening ---------------------------------------------------------------------------------------

    def _open_database(self) -> sqlite3.Connection:
        """Open the database if its layout is this one's; otherwise delete the index and start afresh."""
        reason: str | None
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:  # not a database: even the WAL pragma fails
            reason = f"unreadable database ({exc})"
        else:
            try:
                reason = self._layout_mismatch(conn)
            except sqlite3.DatabaseError as exc:  # a damaged one
                reason = f"unreadable database ({exc})"
            if reason is None:
                return conn
            conn.close()
        if reason != "new index":
            log.warning("search index at %s: %s; deleting and rebuilding it", self.directory, reason)
        return self._fresh_database()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db_path, isolation_level=None)  # transactions are explicit
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # 16 MB of page cache (the default is 2 MB): the content-hash index takes random inserts,
            # and a cache that holds it made bookkeeping at 100k chunks markedly faster.
            conn.execute("PRAGMA cache_size = -16000")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        return conn

    def _layout_mismatch(self, conn: sqlite3.Connection) -> str | None:
        """Return why the stored index cannot be used as it is (None when it can)."""
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            return "new index"
        wanted = {
            "schema_version": str(SCHEMA_VERSION),
            "model": self.model,
            "dim": str(self.dim),
            "row_type": self.row_type,
        }
        for key, value in wanted.items():
            if rows.get(key) != value:
                return f"{key} is {rows.get(key)!r}, wanted {value!r}"
        return None

    def _fresh_database(self) -> sqlite3.Connection:
        """Delete every file of the index and return a connection to new, empty tables."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            (self.directory / (DB_NAME + suffix)).unlink(missing_ok=True)
        for stale in self.directory.glob(_VECTOR_GLOB):
            stale.unlink(missing_ok=True)
        self._conn = self._connect()
        with self._write():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("model", self.model),
                    ("dim", str(self.dim)),
                    ("row_type", self.row_type),
                    ("vector_file", "vectors-0.bin"),
                    ("vector_rows", "0"),
                    ("generation", "0"),
                    ("skipped", "{}"),
                    ("last_update", ""),
                ],
            )
        return self._conn

    def _recover(self) -> None:
        """Make the array agree with what SQLite committed, after a crash or a kill."""
        with self._write():
            committed = int(self._meta("vector_rows"))
            on_disk = self._store.rows
            if on_disk < committed:
                # Cannot happen when the fsync before commit held (e.g. a disk that lies): the rows
                # SQLite points at past the end are forgotten, so their chunks are embedded again.
                log.warning(
                    "search index: array has %d rows, %d committed; re-embedding the rest", on_disk, committed
                )
                self._conn.execute("DELETE FROM embeddings WHERE row >= ?", (on_disk,))
                self._set_meta("vector_rows", str(on_disk))
            self._store.truncate(min(on_disk, committed))
            current = self._meta("vector_file")
            for stray in self.directory.glob(_VECTOR_GLOB):
                if stray.name != current:
                    stray.unlink(missing_ok=True)

    # -- plumbing --------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        """Run the body in one write transaction (BEGIN IMMEDIATE: writers in other processes wait).

        Inside :meth:`batch` the body joins the batch's transaction.
        """
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[None]:
        """Run the body on one snapshot, so that the array's committed count and the rows agree."""
        if self._conn.in_transaction:  # inside a batch: its transaction is the snapshot
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def _meta(self, key: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _touch(self) -> None:
        self._set_meta("last_update", repr(self._clock()))

    def _committed_store(self) -> tuple[VectorStore, int]:
        """Return the array the current snapshot names, and its committed row count.

        The array is reopened when another process compacted it into a new file.
        """
        name = self._meta("vector_file")
        if self._store.path.name != name:
            self._store.close()
            self._store = VectorStore(self.directory / name, self.dim, self.row_type)
        return self._store, int(self._meta("vector_rows"))

    def _scanner(self) -> ThreadPoolExecutor:
        """Return the one worker thread that scans the array (started on first use)."""
        if self._scan_pool is None:
            self._scan_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cube-search-scan")
        return self._scan_pool

    def close(self) -> None:
        """Close the database connection and the array, and stop the scan thread."""
        if self._scan_pool is not None:
            self._scan_pool.shutdown(wait=True)
            self._scan_pool = None
        self._store.close()
        self._conn.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files and chunks ------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes (``replace_file``, ``remove_files``...) into one transaction.

        Commits once at the end (FTS5 flushes its terms per transaction, so a run of files in one
        batch indexes about a third faster); an exception or a kill inside leaves none of them.
        """
        with self._write():
            yield

    def file_state(self) -> dict[str, tuple[int, int, str]]:
        """Return ``{path: (size, mtime_ns, content_hash)}`` of every indexed file."""
        rows = self._conn.execute("SELECT path, size, mtime_ns, content_hash FROM files")
        return {path: (size, mtime_ns, content_hash) for path, size, mtime_ns, content_hash in rows}

    def replace_file(
        self,
        file: SourceFile,
        content_hash: str,
        chunks: Sequence[Chunk],
        terms: Sequence[tuple[str, str]] | None = None,
        *,
        new: bool = False,
    ) -> None:
        """Replace a file's record and all its chunks in one transaction.

        Vectors are kept by the chunks' content hashes: unchanged chunks need no new embedding.
        ``terms`` are :func:`chunk_terms` of each chunk when the caller made them already (in another
        process, while this one writes). ``new``: the caller knows the file is not indexed yet, so
        there is nothing to delete first (a third of the cost of a first index).
        """
        with self._write():
            if not new:
                self._delete_paths([file.path])
            self._conn.execute(
                "INSERT INTO files (path, size, mtime_ns, content_hash, language) VALUES (?, ?, ?, ?, ?)",
                (file.path, file.size, file.mtime_ns, content_hash, file.language),
            )
            path_terms = _path_terms(file.path)
            first_id = self._conn.execute("SELECT coalesce(max(id), 0) + 1 FROM chunks").fetchone()[0]
            chunk_rows = []
            fts_rows = []
            for chunk_id, chunk in enumerate(chunks, start=first_id):
                chunk_rows.append(
                    (
                        chunk_id,
                        file.path,
                        chunk.symbol,
                        chunk.kind,
                        chunk.start_line,
                        chunk.end_line,
                        chunk.header,
                        chunk.text,
                        chunk.content_hash,
                        file.language,
                    )
                )
                made = terms[chunk_id - first_id] if terms is not None else chunk_terms(chunk)
                symbol_terms, body_terms = made
                fts_rows.append((chunk_id, symbol_terms, path_terms, body_terms))
            self._conn.executemany(
                "INSERT INTO chunks (id, path, symbol, kind, start_line, end_line, header, text,"
                " content_hash, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                chunk_rows,
            )
            self._conn.executemany(
                "INSERT INTO chunk_terms (rowid, symbol_terms, path_terms, body_terms) VALUES (?, ?, ?, ?)",
                fts_rows,
            )
            self._touch()

    def remove_files(self, paths: Iterable[str]) -> None:
        """Forget files and their chunks (their vectors become garbage until :meth:`compact`)."""
        with self._write():
            self._delete_paths(list(paths))
            self._touch()

    def _delete_paths(self, paths: list[str]) -> None:
        for path in paths:
            self._conn.execute(
                "DELETE FROM chunk_terms WHERE rowid IN (SELECT id FROM chunks WHERE path = ?)", (path,)
            )
            self._conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
            self._conn.execute("DELETE FROM files WHERE path = ?", (path,))

    def set_skipped(self, skipped: Counter[SkipReason]) -> None:
        """Store the walker's counts of skipped files by reason (shown by :meth:`stats`)."""
        counts = {SkipReason(reason).value: int(n) for reason, n in skipped.items() if n}
        with self._write():
            self._set_meta("skipped", json.dumps(counts, sort_keys=True))

    # -- embeddings ------------------------------------------------------------------------------------

    def pending(self, limit: int) -> list[tuple[str, str]]:
        """Return up to ``limit`` ``(content_hash, embed_text)`` pairs without a vector, one per hash.

        Hashes come in index order, not file order.
        """
        # DISTINCT walks the content-hash index (small, covering) and stops at ``limit``; the bodies are
        # read for those hashes only. A GROUP BY over all chunks took 0.2 s a call at 100k chunks.
        hashes = [
            h
            for (h,) in self._conn.execute(
                "SELECT DISTINCT content_hash FROM chunks c WHERE NOT EXISTS"
                " (SELECT 1 FROM embeddings e WHERE e.content_hash = c.content_hash) LIMIT ?",
                (limit,),
            )
        ]
        rows = []
        for start in range(0, len(hashes), 500):
            batch = hashes[start : start + 500]
            rows += self._conn.execute(
                "SELECT content_hash, header, text FROM chunks WHERE id IN (SELECT min(id) FROM chunks"
                f" WHERE content_hash IN ({','.join('?' * len(batch))}) GROUP BY content_hash) ORDER BY id",
                batch,
            ).fetchall()
        return [(h, f"{header}\n{text}" if header else text) for h, header, text in rows]

    def store_embeddings(self, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store one vector per content hash; return how many were stored.

        Hashes that already have a vector, repeat earlier in ``hashes``, or that no chunk uses any more
        (the file changed while it was being embedded) are skipped. The rows are on disk before the
        transaction that refers to them commits.
        """
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape != (len(hashes), self.dim):
            raise ValueError(f"vectors have shape {matrix.shape}, wanted ({len(hashes)}, {self.dim})")
        with self._write():
            wanted = self._wanted_hashes(hashes)
            keep = [i for i, h in enumerate(hashes) if h in wanted and wanted.pop(h)]
            if not keep:
                return 0
            store, committed = self._committed_store()  # another process may have compacted
            store.truncate(committed)  # a tail no commit names (an earlier failed write)
            first = store.append(matrix[keep])
            self._conn.executemany(
                "INSERT INTO embeddings (content_hash, row) VALUES (?, ?)",
                [(hashes[i], first + n) for n, i in enumerate(keep)],
            )
            self._set_meta("vector_rows", str(first + len(keep)))
            self._touch()
        return len(keep)

    def _wanted_hashes(self, hashes: Sequence[str]) -> dict[str, bool]:
        wanted: dict[str, bool] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):
            batch = unique[start : start + 500]
            marks = ",".join("?" * len(batch))
            wanted.update(
                (h, True)
                for (h,) in self._conn.execute(
                    f"SELECT DISTINCT content_hash FROM chunks WHERE content_hash IN ({marks})"
                    " AND content_hash NOT IN (SELECT content_hash FROM embeddings)",
                    batch,
                )
            )
        return wanted

    def compact(self, force: bool = False) -> bool:
        """Rewrite the array without rows no chunk uses, when over 30 % are garbage or ``force``.

        Returns whether it rewrote. The new file is complete and fsynced before the commit that
        switches to it; the old one is deleted after. Not allowed inside :meth:`batch`.
        """
        if self._conn.in_transaction:
            raise RuntimeError("compact() inside batch(): the switch to the new array must commit alone")
        with self._write():
            old, total = self._committed_store()
            live = self._conn.execute(
                "SELECT content_hash, row FROM embeddings e"
                " WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = e.content_hash) ORDER BY row"
            ).fetchall()
            garbage = total - len(live)
            if garbage <= 0 or (not force and garbage <= GARBAGE_RATIO * total):
                return False
            generation = int(self._meta("generation")) + 1
            name = f"vectors-{generation}.bin"
            old.truncate(total)
            new = old.copy_rows(self.directory / name, np.array([row for _, row in live], dtype=np.int64))
            self._conn.execute("DELETE FROM embeddings")
            self._conn.executemany(
                "INSERT INTO embeddings (content_hash, row) VALUES (?, ?)",
                [(h, n) for n, (h, _) in enumerate(live)],
            )
            self._set_meta("vector_file", name)
            self._set_meta("vector_rows", str(len(live)))
            self._set_meta("generation", str(generation))
            self._touch()
        self._store = new
        old.close()
        old.path.unlink(missing_ok=True)
        log.info("search index: compacted the array from %d to %d rows", total, len(live))
        return True

    # -- queries ---------------------------------------------------------------------------------------

    def stats(self) -> IndexStats:
        """Return the counts of files, chunks, embedded and pending chunks, skipped files, last update."""
        with self._read():
            one = self._conn.execute
            files = one("SELECT count(*) FROM files").fetchone()[0]
            chunks = one("SELECT count(*) FROM chunks").fetchone()[0]
            embedded = one(
                "SELECT count(*) FROM chunks WHERE content_hash IN (SELECT content_hash FROM embeddings)"
            ).fetchone()[0]
            pending = one(
                "SELECT count(DISTINCT content_hash) FROM chunks"
                " WHERE content_hash NOT IN (SELECT content_hash FROM embeddings)"
            ).fetchone()[0]
            live = one(
                "SELECT count(*) FROM embeddings WHERE content_hash IN (SELECT content_hash FROM chunks)"
            ).fetchone()[0]
            rows = int(self._meta("vector_rows"))
            last = self._meta("last_update")
            skipped = json.loads(self._meta("skipped"))
        return IndexStats(
            files=files,
            chunks=chunks,
            embedded=embedded,
            pending=pending,
            skipped=skipped,
            last_update=float(last) if last else None,
            vector_rows=rows,
            garbage_rows=rows - live,
        )

    def has_embeddings(self) -> bool:
        """Return whether any chunk has a vector (otherwise search is lexical only)."""
        row = self._conn.execute(
            "SELECT 1 FROM chunks WHERE content_hash IN (SELECT content_hash FROM embeddings) LIMIT 1"
        ).fetchone()
        return row is not None

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        """Return the stored chunks with these ids."""
        wanted = list(dict.fromkeys(ids))
        found: dict[int, StoredChunk] = {}
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ",".join("?" * len(batch))
            for row in self._conn.execute(
                "SELECT id, path, symbol, kind, start_line, end_line, header, text, content_hash, language"
                f" FROM chunks WHERE id IN ({marks})",
                batch,
            ):
                found[row[0]] = StoredChunk(*row)
        return found

    def lexical(
        self,
        match: str,
        limit: int,
        weights: tuple[float, float, float] = (8.0, 3.0, 1.0),
        path_regex: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """Return up to ``limit`` ``(chunk id, BM25 score)`` for an FTS5 MATCH expression, best first.

        ``weights`` are the BM25 weights of the symbol, path and body columns; the score is positive
        (FTS5's bm25() is lower-is-better; it is negated here). ``path_regex`` is a Python regular
        expression matched against the whole relative path; ``languages`` keeps chunks of those languages.
        """
        if not match or limit <= 0:
            return []
        where, params = _filters(path_regex, languages)
        sql = (
            "SELECT t.rowid, bm25(chunk_terms, ?, ?, ?) AS score FROM chunk_terms t"
            + (" JOIN chunks c ON c.id = t.rowid" if where else "")
            + " WHERE chunk_terms MATCH ?"
            + (f" AND {where}" if where else "")
            + " ORDER BY score LIMIT ?"
        )
        rows = self._conn.execute(sql, (*weights, match, *params, limit)).fetchall()
        return [(chunk_id, -score) for chunk_id, score in rows]

    def vector(
        self,
        query: np.ndarray,
        limit: int,
        path_regex: str | None = None,
        languages: Sequence[str] | None = None,
        *,
        alongside: Callable[[], object] | None = None,
    ) -> list[tuple[int, float]]:
        """Return up to ``limit`` ``(chunk id, cosine)`` nearest to ``query``, best first (exact search).

        Chunks that share a content hash share a vector and its score. ``alongside``, when given, is
        called once on this thread while the array is scanned on a worker thread (numpy releases the
        GIL there), so a caller's lexical query overlaps the scan; all SQL stays on this thread.
        """
        if limit <= 0:
            return _call(alongside, [])
        where, params = _filters(path_regex, languages)
        with self._read():
            store, committed = self._committed_store()
            candidates = None
            if where:
                selected = self._conn.execute(
                    "SELECT e.row FROM chunks c JOIN embeddings e ON e.content_hash = c.content_hash"
                    f" WHERE {where}",
                    params,
                )
                candidates = np.fromiter((r for (r,) in selected), dtype=np.int64)
                if candidates.size == 0:
                    return _call(alongside, [])
            k = limit + 16
            scan = self._scanner().submit(store.search, query, candidates, k, committed)
            try:
                _call(alongside, None)
            finally:
                rows, scores = scan.result()
            while True:
                hits = self._chunks_of_rows(rows, scores, where, params)
                if len(hits) >= limit or len(rows) < k:
                    return hits[:limit]
                k *= 4  # garbage rows or filtered-out duplicates took places: look further
                rows, scores = store.search(query, candidates, k=k, upto=committed)

    def _chunks_of_rows(
        self, rows: np.ndarray, scores: np.ndarray, where: str, params: list[object]
    ) -> list[tuple[int, float]]:
        if rows.size == 0:
            return []
        score_of = {int(r): float(s) for r, s in zip(rows, scores, strict=True)}
        found: list[tuple[int, float]] = []
        keys = list(score_of)
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            marks = ",".join("?" * len(batch))
            found.extend(
                (chunk_id, score_of[row])
                for chunk_id, row in self._conn.execute(
                    f"SELECT c.id, e.row FROM embeddings e JOIN chunks c ON c.content_hash = e.content_hash"
                    f" WHERE e.row IN ({marks})" + (f" AND {where}" if where else ""),
                    [*batch, *params],
                )
            )
        found.sort(key=lambda hit: (-hit[1], hit[0]))
        return found


def _call(function: Callable[[], object] | None, result: _T) -> _T:
    """Call ``function`` when there is one, then return ``result``."""
    if function is not None:
        function()
    return result


def _filters(path_regex: str | None, languages: Sequence[str] | None) -> tuple[str, list[object]]:
    """Return the SQL condition on ``chunks c`` for the filters, and its parameters."""
    clauses: list[str] = []
    params: list[object] = []
    if path_regex is not None:
        # Match the files table (one row per file), not every chunk: the subquery runs once.
        clauses.append("c.path IN (SELECT path FROM files WHERE path REGEXP ?)")
        params.append(path_regex)
    if languages is not None:
        clauses.append(f"c.language IN ({','.join('?' * len(languages))})" if languages else "0")
        params.extend(languages)
    return " AND ".join(clauses), params
