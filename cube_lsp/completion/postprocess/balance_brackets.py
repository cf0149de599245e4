"""Make the closing brackets and quotes of the completion fit the ones already in the document.

Editors auto-close brackets, so the cursor often sits in ``foo(║)`` and the model writes ``a, b)``.
Rather than insert a second ``)``, the completion keeps its text and ``replace_suffix_chars`` covers
the closers it rewrites on the cursor line (Tabby's replace range). A closing bracket that closes
something opened before the cursor, and is not on the cursor line, is cut when the code below already
closes it. Closers are never added.
"""

from __future__ import annotations

from dataclasses import replace

from cube_lsp.completion.postprocess._text import (
    CLOSERS,
    line_prefix,
    line_suffix,
    open_quote,
    prefix_window,
    scan_brackets,
    suffix_window,
)
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext

# Characters that may follow the cursor and be rewritten by a completion that ends with them.
_CLOSING_CHARS = frozenset(')]}>"' + "'`;,:")


def _closing_run(line_suffix: str, quote: str) -> str:
    """Return the leading closers and separators of the rest of the cursor line.

    A quote belongs to the run only when it closes the string the cursor is in (``quote``).
    """
    end = 0
    while end < len(line_suffix) and line_suffix[end] in _CLOSING_CHARS:
        if line_suffix[end] in "\"'`":
            if line_suffix[end] != quote:
                break
            quote = ""
        end += 1
    return line_suffix[:end]


def _rewritten_by_closers(closers: list[str], run: str) -> tuple[int, int]:
    """Pair the completion's unmatched closers with the brackets of ``run``: (paired, chars covered)."""
    paired = covered = 0
    for index, char in enumerate(run):
        if char not in CLOSERS:
            continue
        if paired == len(closers) or closers[paired] != char:
            break
        paired += 1
        covered = index + 1
    return paired, covered


def balance_brackets(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Cover closers rewritten on the line with ``replace_suffix_chars``; cut those the suffix has."""
    text = candidate.text
    language = context.language_id
    before = line_prefix(context)
    quote = open_quote(before, language)
    run = _closing_run(line_suffix(context), quote)
    # Scanned with the quote the cursor is in, so `hi")` reads as the end of a string then a `)`.
    closers = [
        (index - len(quote), char) for index, char in scan_brackets(quote + text, language).unmatched_closers
    ]
    paired, covered = _rewritten_by_closers([char for _, char in closers], run)
    if len(closers) > paired:
        # Brackets open before the cursor, innermost first; the suffix's unmatched closers close the
        # outermost of them, so the innermost `unclosed - closed_below` ones are still open.
        unclosed = len(scan_brackets(prefix_window(context, config), language).unclosed_openers)
        closed_below = len(
            scan_brackets(suffix_window(context, config)[covered:], language).unmatched_closers
        )
        still_open = unclosed - paired - closed_below
        duplicates = [index for depth, (index, _) in enumerate(closers[paired:]) if depth >= still_open]
        if duplicates:
            kept = text[: duplicates[0]].rstrip()
            if not kept.strip():
                return None
            text = kept
    # Quotes and separators the completion ends with are rewritten too; brackets only when paired above.
    ending = max(
        (
            size
            for size in range(len(run), 0, -1)
            if text.endswith(run[:size]) and sum(char in CLOSERS for char in run[:size]) <= paired
        ),
        default=0,
    )
    replaced = max(covered, ending)
    if text == candidate.text and replaced == candidate.replace_suffix_chars:
        return candidate
    return replace(candidate, text=text, replace_suffix_chars=replaced)
