"""Adaptive debounce: wait a little longer than the programmer's typing rhythm before asking the model.

A fast typist (keystrokes 100 ms apart) would otherwise fire a request mid-burst that is stale a
moment later; a slow one (a second between keys) gains nothing from waiting. So the delay follows an
exponential moving average of the recent keystroke intervals of each document: 1.2 x the average,
clamped to 75-400 ms, and the 75 ms floor once the average is beyond the ceiling. A fixed
``debounceMs`` setting replaces all of this.
"""

from __future__ import annotations

from collections import OrderedDict

MIN_DELAY_S = 0.075
MAX_DELAY_S = 0.4
# Intervals longer than this are pauses, not typing rhythm, and are not averaged.
PAUSE_S = 2.0
SMOOTHING = 0.3
_MAX_TRACKED = 256


class AdaptiveDebounce:
    """Per-document debounce delays from keystroke intervals (time in seconds, from an injected clock)."""

    def __init__(self, fixed_ms: int | None = None) -> None:
        self.fixed_ms = fixed_ms
        self._last: OrderedDict[str, float] = OrderedDict()
        self._average: dict[str, float] = {}

    def note_keystroke(self, uri: str, now: float) -> None:
        """Record an edit of ``uri`` at time ``now``."""
        previous = self._last.pop(uri, None)
        self._last[uri] = now
        if previous is not None and 0 <= now - previous < PAUSE_S:
            interval = now - previous
            average = self._average.get(uri)
            self._average[uri] = interval if average is None else average + SMOOTHING * (interval - average)
        while len(self._last) > _MAX_TRACKED:
            stale, _ = self._last.popitem(last=False)
            self._average.pop(stale, None)

    def delay(self, uri: str) -> float:
        """Return how long to wait before an automatic completion request for ``uri`` goes out."""
        if self.fixed_ms is not None:
            return self.fixed_ms / 1000
        average = self._average.get(uri)
        if average is None:
            return MIN_DELAY_S * 2
        wanted = average * 1.2
        if wanted > MAX_DELAY_S:
            return MIN_DELAY_S
        return max(MIN_DELAY_S, wanted)
