"""The data the search pieces hand each other: files found, chunks cut from them, hits returned.

``files`` walks a workspace into :class:`SourceFile` records (and counts what it skipped, by
:class:`SkipReason`), ``chunker`` cuts a file's text into :class:`Chunk` records, ``index`` stores them
with their embeddings, ``rank`` turns a query into :class:`Hit` records. Kept in one small module so
that none of those imports another just for a type.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class SkipReason(StrEnum):
    """Why the walker or the reader left a file (or a directory) out; the index status counts them."""

    IGNORED = "ignored"  # .gitignore / .cubeignore
    SECRET = "secret"  # the deny list for secrets (.env*, keys, *.pem, credentials...)
    VENDORED = "vendored"  # generated or vendored trees (node_modules, vendor, dist, build...)
    GENERATED = "generated"  # a file that says it is generated, or minified by its name
    TOO_LARGE = "too_large"  # over the size limit
    LONG_LINES = "long_lines"  # a line over the length limit (minified or data)
    BINARY = "binary"  # NUL bytes
    NOT_UTF8 = "not_utf8"  # not valid UTF-8
    UNREADABLE = "unreadable"  # permission denied, vanished while walking, I/O error
    SYMLINK = "symlink"  # a link leaving the workspace or closing a loop


@dataclass(frozen=True)
class SourceFile:
    """A file the walker admits: path relative to the root (POSIX separators), language when known."""

    path: str
    size: int
    mtime_ns: int
    language: str | None  # a cube_lsp.languages id ("python", "tsx"...), None for plain text


@dataclass
class WalkResult:
    """What a walk found: the files to index and the counts of what it skipped, by reason."""

    files: list[SourceFile] = field(default_factory=list)
    skipped: Counter[SkipReason] = field(default_factory=Counter)


@dataclass(frozen=True)
class Chunk:
    """A piece of a file to index: a function, method or class (or a window of lines).

    ``header`` gives the context the body lacks (file, enclosing class or module, signature) and is
    embedded with the body; ``text`` is the body exactly as in the file. Lines are 1-based, inclusive.
    """

    path: str
    symbol: str | None  # "Session.refresh", "parse_args"; None for a window of lines
    kind: str  # "function" | "method" | "class" | "module" | "lines" ...
    start_line: int
    end_line: int
    header: str
    text: str

    @property
    def embed_text(self) -> str:
        """Return what is sent to the embedding model: the header, then the body."""
        return f"{self.header}\n{self.text}" if self.header else self.text

    @property
    def content_hash(self) -> str:
        """Return the SHA-256 of what is embedded: a chunk with the same hash is never embedded twice."""
        return hashlib.sha256(self.embed_text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Hit:
    """A ranked search result."""

    path: str
    start_line: int
    end_line: int
    symbol: str | None
    score: float
    snippet: str
