"""Decides which errors reach the programmer: each distinct failure once, not once per keystroke.

A proxy that is down would otherwise produce a popup for every completion request. An error is
shown when it differs (by code and message) from the last one shown; a success resets that memory,
so the same failure after a recovery is shown again. Also keeps local-only acceptance counts.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from cube_wire.errors import CubeError


class ErrorNotices:
    """Remembers the last error shown so repeats are suppressed."""

    def __init__(self) -> None:
        self._last: tuple[str, str] | None = None

    def should_show(self, error: CubeError) -> bool:
        """Return True when ``error`` is new since the last success (and record it)."""
        key = (error.code, error.message)
        if key == self._last:
            return False
        self._last = key
        return True

    def succeeded(self) -> bool:
        """Forget the last error (the next failure is news again); return whether there was one."""
        had_error = self._last is not None
        self._last = None
        return had_error


@dataclass
class AcceptanceTracker:
    """Counts of completions shown and accepted, kept in memory only (never sent anywhere)."""

    max_pending: int = 1024
    shown: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    _languages: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def offered(self, completion_id: str, language_id: str) -> None:
        """Remember which language a completion was made for."""
        self._languages[completion_id] = language_id
        while len(self._languages) > self.max_pending:
            self._languages.popitem(last=False)

    def did_show(self, completion_id: str) -> None:
        """Count a completion the editor displayed."""
        self.shown[self._languages.get(completion_id, "unknown")] += 1

    def did_accept(self, completion_id: str) -> None:
        """Count a completion the programmer accepted."""
        self.accepted[self._languages.pop(completion_id, "unknown")] += 1

    def summary(self) -> dict[str, dict[str, int]]:
        """Return shown/accepted counts per language."""
        languages = set(self.shown) | set(self.accepted)
        return {
            lang: {"shown": self.shown[lang], "accepted": self.accepted[lang]} for lang in sorted(languages)
        }
