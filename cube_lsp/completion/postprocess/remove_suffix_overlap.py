"""Trim the end of the completion when it repeats the start of the code after the cursor.

This is the most reported fault of FIM completion: the model writes the new code and then the code
that is already below the cursor. Two comparisons find the overlap. Token by token, whitespace aside,
the tail of the completion against the head of the suffix (it must include a word, so a lone ``)`` is
left to ``balance_brackets``). Line by line, trailing closing lines (``}``, ``)``) against the next
lines below the cursor at the same indentation, unless they close a block the completion opened.
"""

from __future__ import annotations

import re
from dataclasses import replace

from cube_lsp.completion.postprocess._text import (
    has_word,
    indent_width,
    line_prefix,
    line_suffix,
    nonblank_lines_below,
    scan_brackets,
    squash,
    suffix_window,
    tokens,
)
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext


def _line_start_indent(text: str, start: int, before: str, tab: int) -> int | None:
    """Return the indentation of the line ``start`` begins in ``before + text``, or None if it is mid-line."""
    line_start = text.rfind("\n", 0, start) + 1
    lead = text[line_start:start]
    if lead.strip():
        return None
    if line_start == 0:
        if before.strip():
            return None
        lead = before + lead
    return indent_width(lead, tab)


def _token_overlap(text: str, head: str, context: CursorContext, config: PostprocessConfig) -> int:
    """Return where the tail of ``text`` that repeats the head of the suffix starts, or -1."""
    # The repeated tail is about as long as the completion; indentation may make it longer.
    wanted = tokens(head[: 4 * len(text) + 256])[: config.overlap_max_tokens]
    if not wanted:
        return -1
    found = tokens(text)[-config.overlap_max_tokens :]
    values = [match.group() for match in found]
    wanted_values = [match.group() for match in wanted]
    before, tab = line_prefix(context), config.tab_size
    for position, value in enumerate(values):
        size = len(values) - position
        if (
            value != wanted_values[0]
            or size > len(wanted_values)
            or values[position:] != wanted_values[:size]
        ):
            continue
        if not any(has_word(value) for value in values[position:]):
            continue
        start = found[position].start()
        indent = _line_start_indent(text, start, before, tab)
        if indent is not None:
            # A whole line is repeated: it must sit where the suffix line sits, not in a nested block.
            suffix_indent = _line_start_indent(head, wanted[0].start(), before, tab)
            if suffix_indent != indent:
                continue
        return start
    return -1


def _closing_line_overlap(text: str, context: CursorContext, config: PostprocessConfig) -> int:
    """Return where trailing lines that repeat the closing lines below the cursor start, or -1."""
    if line_suffix(context).strip():
        return -1
    below = nonblank_lines_below(context, config)
    before, tab = line_prefix(context), config.tab_size
    lines = text.split("\n")
    offsets = [match.start() for match in re.finditer(r"^", text, re.MULTILINE)]
    numbered = [
        (offsets[index], before + line if index == 0 else line)
        for index, line in enumerate(lines)
        if line.strip() and not (index == 0 and before.strip())
    ]
    unclosed = len(scan_brackets(text, context.language_id).unclosed_openers)
    for size in range(min(len(numbered), len(below)), 0, -1):
        tail = numbered[len(numbered) - size :]
        if any(
            squash(line) != squash(wanted) or indent_width(line, tab) != indent_width(wanted, tab)
            for (_, line), wanted in zip(tail, below, strict=False)
        ):
            continue
        start = tail[0][0] - (1 if tail[0][0] else 0)
        kept = text[:start]
        if len(scan_brackets(kept, context.language_id).unclosed_openers) > unclosed:
            continue  # the tail closes what the completion opened: it is not the suffix's
        return start
    return -1


def remove_suffix_overlap(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Remove the end of the completion that the suffix already holds; drop one that is all overlap."""
    text = candidate.text
    cut = _token_overlap(text, suffix_window(context, config), context, config)
    if cut < 0:
        cut = _closing_line_overlap(text, context, config)
    if cut < 0:
        return candidate
    kept = text[:cut]
    if not text[text.rfind("\n", 0, cut) + 1 : cut].strip():
        kept = kept.rstrip()  # whole lines were removed: so are the line breaks before them
    return replace(candidate, text=kept) if kept.strip() else None
