r"""Open documents and LSP position arithmetic, kept fast for large files.

pygls' own ``TextDocument`` splits the whole text into lines on every position lookup and every
incremental change, which costs milliseconds per keystroke on a 50k-line file. Here a document keeps
its text and a lazily extended table of line starts: an edit only invalidates the table *after* the
edited line, and a lookup scans forward only as far as the line it needs. Typing at the cursor is
therefore O(size of the edit) plus one string splice.

Positions are in the client's negotiated encoding (``utf-16`` by default, ``utf-8`` or ``utf-32``).
Lines end at ``\n`` (a ``\r\n`` pair keeps its ``\r`` at the end of the line's content).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal

Encoding = Literal["utf-8", "utf-16", "utf-32"]

# Documents above this size are not kept: completion answers nothing for them, and memory stays bounded.
MAX_DOCUMENT_CHARS = 4_000_000


@dataclass
class Document:
    """One open document: its text, language and version, plus a lazy line-start table."""

    uri: str
    language_id: str
    version: int
    text: str
    too_large: bool = False  # over MAX_DOCUMENT_CHARS: the text is dropped and completion is off
    _starts: list[int] = field(default_factory=lambda: [0], repr=False)

    def __post_init__(self) -> None:
        self._check_size()

    def _check_size(self) -> None:
        if len(self.text) > MAX_DOCUMENT_CHARS:
            self.text = ""
            self.too_large = True
            self._starts = [0]

    @property
    def binary(self) -> bool:
        """Whether the text looks binary (a NUL character in its first 8 KiB)."""
        return "\x00" in self.text[:8192]

    def line_start(self, line: int) -> int | None:
        """Return the offset where ``line`` (0-based) starts, or None past the last line."""
        starts = self._starts
        if line < len(starts):
            return starts[line]
        text = self.text
        pos = starts[-1]
        while len(starts) <= line:
            nl = text.find("\n", pos)
            if nl < 0:
                return None
            pos = nl + 1
            starts.append(pos)
        return starts[line]

    def line_text(self, line: int) -> str | None:
        """Return the text of ``line`` without its line break, or None past the last line."""
        start = self.line_start(line)
        if start is None:
            return None
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]

    def offset_at(self, line: int, character: int, encoding: Encoding = "utf-16") -> int | None:
        """Convert an LSP position to an index into ``text``; None when the line does not exist.

        A character past the end of the line is clamped to the line's end, as the LSP spec asks.
        """
        if line < 0 or character < 0:
            return None
        start = self.line_start(line)
        if start is None:
            return None
        text = self.line_text(line) or ""
        return start + code_points_from_units(text, character, encoding)

    def position_at(self, offset: int, encoding: Encoding = "utf-16") -> tuple[int, int]:
        """Convert an index into ``text`` to an LSP (line, character) position."""
        offset = max(0, min(offset, len(self.text)))
        starts = self._starts
        text = self.text
        while starts[-1] <= offset:  # extend the table just past the offset
            nl = text.find("\n", starts[-1])
            if nl < 0 or nl + 1 > offset:
                break
            starts.append(nl + 1)
        line = bisect.bisect_right(starts, offset) - 1
        return line, units_from_code_points(text[starts[line] : offset], encoding)

    def apply_change(
        self,
        text: str,
        start: tuple[int, int] | None = None,
        end: tuple[int, int] | None = None,
        encoding: Encoding = "utf-16",
    ) -> None:
        """Apply one content change: the whole text when no range is given, else an incremental edit.

        A range past the end of the document is clamped to the end (clients do send this when a
        change and a deletion race); a start after the end is treated as the end.
        """
        if start is None or end is None:
            self.text, self.too_large, self._starts = text, False, [0]
            self._check_size()
            return
        if self.too_large:
            return  # an edit of text we did not keep cannot be applied; wait for a full change
        begin = self._clamped_offset(start, encoding)
        finish = max(begin, self._clamped_offset(end, encoding))
        self.text = self.text[:begin] + text + self.text[finish:]
        # Line starts up to and including the edited line are unchanged; drop the rest.
        del self._starts[max(start[0], 0) + 1 :]
        self._check_size()

    def _clamped_offset(self, position: tuple[int, int], encoding: Encoding) -> int:
        offset = self.offset_at(max(position[0], 0), max(position[1], 0), encoding)
        return len(self.text) if offset is None else offset


def code_points_from_units(line: str, units: int, encoding: Encoding) -> int:
    """Return how many code points of ``line`` the first ``units`` code units cover (clamped)."""
    if encoding == "utf-32" or line.isascii():
        return min(units, len(line))
    counted = 0
    for index, char in enumerate(line):
        if counted >= units:
            return index
        code = ord(char)
        if encoding == "utf-16":
            counted += 2 if code > 0xFFFF else 1
        else:
            counted += 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    return len(line)


def units_from_code_points(text: str, encoding: Encoding) -> int:
    """Return the length of ``text`` in code units of ``encoding``."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-16":
        return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)
    return len(text.encode("utf-8", "surrogatepass"))


class DocumentStore:
    """The open documents, by URI."""

    def __init__(self) -> None:
        self._documents: dict[str, Document] = {}

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        """Start tracking a document (replacing any earlier copy)."""
        document = Document(uri, language_id, version, text)
        self._documents[uri] = document
        return document

    def get(self, uri: str) -> Document | None:
        """Return the open document, or None."""
        return self._documents.get(uri)

    def close(self, uri: str) -> None:
        """Stop tracking a document."""
        self._documents.pop(uri, None)

    def __len__(self) -> int:
        return len(self._documents)
