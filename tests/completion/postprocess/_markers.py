"""Build cursor contexts from text with markers, for the post-processing tests.

Markers (see tests/golden/postprocess/README.md):
    ║  the cursor, when the completion is given separately (unit tests);
    ├  the cursor and the start of the raw model completion, ┤ its end;
    ╣  the end of the text after the cursor, on the cursor line, that the completion replaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from cube_lsp.completion.multiline import decide_multiline
from cube_lsp.completion.types import CursorContext

CURSOR, START, END, REPLACED = "║", "├", "┤", "╣"


class MarkerError(ValueError):
    """A marked text does not use the markers as the convention says."""


def _count(text: str, marker: str, allowed: tuple[int, ...]) -> None:
    found = text.count(marker)
    if found not in allowed:
        raise MarkerError(f"marker {marker} occurs {found} times, expected {' or '.join(map(str, allowed))}")


def context_at(marked: str, language: str = "python", multiline: bool | None = None) -> CursorContext:
    """Build the context of a text holding exactly one ║; multiline defaults to decide_multiline("auto")."""
    _count(marked, CURSOR, (1,))
    for marker in (START, END, REPLACED):
        _count(marked, marker, (0,))
    prefix, suffix = marked.split(CURSOR)
    if multiline is None:
        multiline = decide_multiline(prefix + suffix, len(prefix), language, "auto")
    return CursorContext(language_id=language, prefix=prefix, suffix=suffix, multiline=multiline)


@dataclass(frozen=True)
class MarkedCompletion:
    """A document with a raw completion at the cursor, read from ├…┤ markers."""

    context: CursorContext
    completion: str
    replaced: int | None  # characters between ┤ and ╣; None without ╣


def parse_marked(marked: str, language: str, multiline: bool | None = None) -> MarkedCompletion:
    """Read ``prefix├completion┤suffix`` (optionally with ╣ on the cursor line) into a context."""
    _count(marked, CURSOR, (0,))
    _count(marked, START, (1,))
    _count(marked, END, (1,))
    _count(marked, REPLACED, (0, 1))
    prefix, rest = marked.split(START)
    if END not in rest:
        raise MarkerError(f"{END} must come after {START}")
    completion, suffix = rest.split(END)
    if REPLACED in prefix or REPLACED in completion:
        raise MarkerError(f"{REPLACED} must come after {END}")
    replaced = None
    if REPLACED in suffix:
        covered, after = suffix.split(REPLACED)
        if "\n" in covered:
            raise MarkerError(f"{REPLACED} must be on the cursor line")
        replaced, suffix = len(covered), covered + after
    if multiline is None:
        multiline = decide_multiline(prefix + suffix, len(prefix), language, "auto")
    context = CursorContext(language_id=language, prefix=prefix, suffix=suffix, multiline=multiline)
    return MarkedCompletion(context, completion, replaced)
