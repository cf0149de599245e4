"""Cross-file context: windows of recently used files that resemble the code around the cursor.

It bridges the documents the editor has open or edited (fed by the server on didOpen/didChange
into a :class:`RecentFiles` store) and the snippets offered to the model. As in Continue and Cody,
each file is cut into overlapping windows of lines, and windows are ranked by the Jaccard
similarity of their identifier sets to the window of lines ending at the cursor.

Every source of context is time-boxed: it gets a :class:`Deadline` built from an injected clock,
checks it as it goes and returns what it has found when the deadline passes, so one slow source
never delays a completion. Windows are computed lazily and kept per file version, so the work
done before a deadline is not lost.
"""

from __future__ import annotations

import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cube_lsp.completion.types import Snippet

__all__ = [
    "DEFAULT_SOURCE_BUDGET_S",
    "Clock",
    "Deadline",
    "RecentFiles",
    "find_similar_snippets",
    "jaccard",
    "window_tokens",
]

Clock = Callable[[], float]  # monotonic seconds, e.g. time.monotonic

DEFAULT_SOURCE_BUDGET_S = 0.03  # each context source gets 30 ms (Continue races its sources at 100 ms)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Keywords common to the languages we serve: they occur in every window and say nothing of its topic.
_STOP_WORDS = frozenset(
    (
        "and",
        "as",
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "def",
        "default",
        "do",
        "elif",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "final",
        "fn",
        "for",
        "from",
        "func",
        "function",
        "go",
        "if",
        "impl",
        "import",
        "in",
        "int",
        "interface",
        "is",
        "let",
        "match",
        "mod",
        "new",
        "nil",
        "none",
        "not",
        "null",
        "or",
        "package",
        "pass",
        "private",
        "protected",
        "pub",
        "public",
        "raise",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "type",
        "use",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "string",
        "bool",
    )
)

_DEADLINE_CHECK_EVERY = 32  # windows between two clock reads


@dataclass(frozen=True)
class Deadline:
    """A point in time on an injected clock after which a context source must stop."""

    clock: Clock
    at: float

    @classmethod
    def after(cls, clock: Clock, seconds: float) -> Deadline:
        """Return the deadline ``seconds`` from now on ``clock``."""
        return cls(clock, clock() + seconds)

    def expired(self) -> bool:
        """Return whether the deadline has passed."""
        return self.clock() >= self.at


def window_tokens(text: str) -> frozenset[str]:
    """Return the identifiers of ``text`` that carry meaning (keywords and 1-letter names dropped)."""
    # Interned, so the many windows share one string per identifier and compare by identity.
    return frozenset(
        sys.intern(t) for t in _IDENTIFIER.findall(text) if len(t) > 1 and t.lower() not in _STOP_WORDS
    )


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Return the Jaccard similarity |a ∩ b| / |a ∪ b| of two token sets (0 when both are empty)."""
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


@dataclass
class _Window:
    start_line: int
    text: str
    tokens: frozenset[str]


@dataclass
class _Entry:
    path: str  # shown to the model
    text: str
    language_id: str | None
    lines: list[str] | None = None  # split lazily, dropped once every window is built
    windows: list[_Window] = field(default_factory=list)
    next_line: int = 0  # first line of the next window to build
    done: bool = False


class RecentFiles:
    """A bounded LRU store of recently opened or edited documents, most recent last.

    The server calls :meth:`update` on didOpen and didChange. Documents are keyed by URI and
    carry the path shown to the model. Files longer than ``max_file_chars`` keep only their first
    ``max_file_chars`` characters; beyond ``max_files`` the least recently used file is dropped.
    ``clock`` (monotonic seconds) times :meth:`snippets_for`.
    """

    def __init__(
        self,
        *,
        max_files: int = 20,
        max_file_chars: int = 100_000,
        window_lines: int = 20,
        clock: Clock = time.monotonic,
    ) -> None:
        self.max_files = max_files
        self.max_file_chars = max_file_chars
        self.window_lines = window_lines  # lines per window; windows overlap by half
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def update(self, uri: str, path: str, language_id: str | None, text: str) -> None:
        """Record the current text of the document ``uri`` and mark it most recently used."""
        entry = self._entries.pop(uri, None)
        text = text[: self.max_file_chars]
        if entry is None or entry.text != text or entry.path != path:
            entry = _Entry(path, text, language_id)
        self._entries[uri] = entry
        while len(self._entries) > self.max_files:
            self._entries.popitem(last=False)

    def remove(self, uri: str) -> None:
        """Forget the document ``uri`` (e.g. when the file is deleted)."""
        self._entries.pop(uri, None)

    def get(self, uri: str) -> str | None:
        """Return the stored text of the document ``uri``, or None."""
        entry = self._entries.get(uri)
        return entry.text if entry else None

    def texts(self) -> dict[str, str]:
        """Return path -> text for every stored document, most recent last (for definitions)."""
        return {entry.path: entry.text for entry in self._entries.values()}

    def uris(self) -> list[str]:
        """Return the stored URIs, most recent last."""
        return list(self._entries)

    def snippets_for(
        self, uri: str, text: str, offset: int, *, budget_s: float = DEFAULT_SOURCE_BUDGET_S
    ) -> list[Snippet]:
        """Return :func:`find_similar_snippets` for a cursor in ``uri``, time-boxed to ``budget_s``."""
        return find_similar_snippets(self, text, offset, uri, deadline=Deadline.after(self.clock, budget_s))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uri: object) -> bool:
        return uri in self._entries

    def _path(self, uri: str) -> str:
        return self._entries[uri].path

    def _windows(self, uri: str, deadline: Deadline) -> Iterator[_Window]:
        """Yield the windows of ``uri``, building missing ones until the deadline passes."""
        entry = self._entries[uri]
        yield from entry.windows
        if entry.done:
            return
        if entry.lines is None:
            entry.lines = entry.text.splitlines(keepends=True)
        lines = entry.lines
        step = max(self.window_lines // 2, 1)
        built = 0
        while lines and not entry.done:
            if built % _DEADLINE_CHECK_EVERY == 0 and deadline.expired():
                return
            start = entry.next_line
            text = "".join(lines[start : start + self.window_lines])
            window = _Window(start, text, window_tokens(text))
            entry.windows.append(window)
            if start + self.window_lines >= len(lines):
                entry.done = True
            else:
                entry.next_line = start + step
            built += 1
            yield window
        entry.done = True
        entry.lines = None


def find_similar_snippets(
    recent: RecentFiles,
    text: str,
    offset: int,
    uri: str,
    *,
    deadline: Deadline,
    max_snippets: int = 5,
    max_chars: int = 2000,
    min_score: float = 0.1,
) -> list[Snippet]:
    """Return up to ``max_snippets`` windows of other recent files most similar to the cursor window.

    ``uri`` is the current document, which is left out. Windows of one file never overlap; the
    snippets total at most ``max_chars`` characters and are ordered best first. Stops early, with
    what it has, when ``deadline`` passes.
    """
    query = window_tokens(_cursor_window(text, offset, recent.window_lines))
    if not query:
        return []
    scored: list[tuple[float, str, _Window]] = []
    for other in reversed(recent.uris()):  # most recent first: they matter most when cut short
        if other == uri:
            continue
        if deadline.expired():
            break
        for n, window in enumerate(recent._windows(other, deadline)):
            if n % _DEADLINE_CHECK_EVERY == _DEADLINE_CHECK_EVERY - 1 and deadline.expired():
                break
            score = jaccard(query, window.tokens)
            if score > min_score:
                scored.append((score, other, window))
    scored.sort(key=lambda item: item[0], reverse=True)
    chosen: list[Snippet] = []
    taken: dict[str, list[int]] = {}
    used = 0
    for score, other, window in scored:
        if len(chosen) >= max_snippets:
            break
        starts = taken.setdefault(other, [])
        if any(abs(window.start_line - s) < recent.window_lines for s in starts):
            continue
        snippet_text = window.text.rstrip("\n")
        if used + len(snippet_text) > max_chars:
            continue
        starts.append(window.start_line)
        used += len(snippet_text)
        chosen.append(Snippet(path=recent._path(other), text=snippet_text, score=score, source="recent"))
    return chosen


def _cursor_window(text: str, offset: int, lines: int) -> str:
    """Return the ``lines`` lines ending with the cursor line, up to the cursor."""
    offset = min(max(offset, 0), len(text))
    start = text.rfind("\n", 0, offset) + 1
    for _ in range(lines - 1):
        if start <= 0:
            break
        start = text.rfind("\n", 0, start - 1) + 1
    return text[start:offset]
