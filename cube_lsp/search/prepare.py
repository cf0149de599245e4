"""The CPU-heavy half of indexing, apart from the index: read, chunk and make the FTS terms of files.

Pure and picklable, so :class:`~cube_lsp.search.engine.WorkspaceSearch` can run it in worker processes
while its own thread writes the previous batch to SQLite: on a 300k-line tree, chunking and terms are
three quarters of the bookkeeping, and they need no index.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from cube_lsp.search.chunker import ChunkOptions, chunk_source
from cube_lsp.search.files import WalkOptions, read_source
from cube_lsp.search.terms import chunk_terms
from cube_lsp.search.types import Chunk, SkipReason, SourceFile

__all__ = ["Prepared", "Skipped", "prepare_files"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A file ready to store: its content hash, chunks and each chunk's FTS terms."""

    file: SourceFile
    content_hash: str
    chunks: list[Chunk]
    terms: list[tuple[str, str]]


@dataclass(frozen=True)
class Skipped:
    """A file the reader refused (binary, too long lines, vanished...)."""

    file: SourceFile
    reason: SkipReason


def prepare_files(
    root: str, files: list[SourceFile], walk: WalkOptions, chunking: ChunkOptions
) -> list[Prepared | Skipped]:
    """Read, chunk and make the terms of ``files`` (relative to ``root``), in order."""
    out: list[Prepared | Skipped] = []
    base = Path(root)
    for file in files:
        text = read_source(base, file, walk)
        if isinstance(text, SkipReason):
            out.append(Skipped(file, text))
            continue
        content_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            chunks = chunk_source(file.path, text, file.language, chunking)
        except Exception:  # a grammar bug must not stop the whole index; logged by type only
            log.warning("search index: chunking %s failed; indexed as plain lines", file.path)
            chunks = chunk_source(file.path, text, None, chunking)
        out.append(Prepared(file, content_hash, chunks, [chunk_terms(chunk) for chunk in chunks]))
    return out
