"""A bounded LRU of recent completions that also answers while the programmer types ahead.

An entry remembers where a completion was shown: how long the text before the cursor was, a window
of the text just before and after the cursor, and the completion. A later request matches when the
text before its cursor is that same text plus some typed characters, the text after the cursor is
unchanged, and the completion starts with what was typed; the answer is the rest of the completion.
Typing the first characters of a ghost text thus answers from memory, with no backend call.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# How much text around the cursor must match for an entry to apply.
PREFIX_WINDOW = 512
SUFFIX_WINDOW = 256


@dataclass(frozen=True)
class CacheEntry:
    """A completion shown at one place of one document."""

    model: str
    prefix_len: int
    prefix_tail: str
    suffix_head: str
    text: str
    replace_suffix_chars: int


@dataclass(frozen=True)
class CacheHit:
    """What remains of a cached completion after the characters typed since it was made."""

    text: str
    replace_suffix_chars: int
    typed: str


class CompletionCache:
    """LRU of completions keyed by document, with typed-ahead lookup."""

    def __init__(self, max_entries: int = 512, per_document: int = 16) -> None:
        self.max_entries = max_entries
        self.per_document = per_document
        self._entries: OrderedDict[tuple[str, int], CacheEntry] = OrderedDict()
        self._serial = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry (settings or model changed)."""
        self._entries.clear()

    def store(self, uri: str, model: str, text: str, offset: int, completion: str, replace: int) -> None:
        """Remember ``completion`` shown at ``offset`` of ``text``."""
        if not completion:
            return
        self._serial += 1
        entry = CacheEntry(
            model=model,
            prefix_len=offset,
            prefix_tail=text[max(0, offset - PREFIX_WINDOW) : offset],
            suffix_head=text[offset : offset + SUFFIX_WINDOW],
            text=completion,
            replace_suffix_chars=replace,
        )
        self._entries[(uri, self._serial)] = entry
        same_document = [key for key in self._entries if key[0] == uri]
        for key in same_document[: max(0, len(same_document) - self.per_document)]:
            del self._entries[key]
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, uri: str, model: str, text: str, offset: int) -> CacheHit | None:
        """Return the rest of a cached completion that applies at ``offset`` of ``text``, if any."""
        suffix_head = text[offset : offset + SUFFIX_WINDOW]
        for key in reversed([key for key in self._entries if key[0] == uri]):
            entry = self._entries[key]
            start = entry.prefix_len
            if entry.model != model or start > offset or entry.suffix_head != suffix_head:
                continue
            typed = text[start:offset]
            if len(typed) >= len(entry.text) or not entry.text.startswith(typed):
                continue
            if text[max(0, start - PREFIX_WINDOW) : start] != entry.prefix_tail:
                continue
            self._entries.move_to_end(key)
            return CacheHit(entry.text[len(typed) :], entry.replace_suffix_chars, typed)
        return None
