"""Cut the completion where it starts writing the code that already follows the cursor.

Two anchors are looked for. On the cursor line, the text after the cursor (when it holds a word: pure
closers are left to ``balance_brackets``). Below it, the first non-blank lines of the suffix, joined
until they hold ``anchor_min_chars`` characters so that a lone ``}`` is not taken for the suffix; a
completion line matches them when its indentation and its text (whitespace aside) are the same.
"""

from __future__ import annotations

from dataclasses import replace

from cube_lsp.completion.postprocess._text import (
    has_word,
    indent_width,
    line_prefix,
    line_suffix,
    nonblank_lines_below,
    squash,
)
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _find_on_line(line: str, target: str) -> int:
    """Return where ``target`` first occurs in ``line`` as whole tokens, or -1."""
    start = line.find(target)
    while start >= 0:
        end = start + len(target)
        cuts_word_before = start > 0 and _is_word_char(target[0]) and _is_word_char(line[start - 1])
        cuts_word_after = end < len(line) and _is_word_char(target[-1]) and _is_word_char(line[end])
        if not cuts_word_before and not cuts_word_after:
            return start
        start = line.find(target, start + 1)
    return -1


def _anchor(below: list[str], config: PostprocessConfig) -> list[str]:
    """Return the first non-blank suffix lines that together hold enough text, or [] if they do not.

    At the end of the file, fewer characters do when they include a word (``return b``).
    """
    anchor: list[str] = []
    size = 0
    for line in below[: config.anchor_max_lines]:
        anchor.append(line)
        size += len(squash(line))
        if size >= config.anchor_min_chars:
            return anchor
    at_end = len(below) <= config.anchor_max_lines
    return anchor if at_end and any(has_word(line) for line in anchor) else []


def _line_match(
    lines: list[str], context: CursorContext, config: PostprocessConfig, anchor: list[str]
) -> int:
    """Return the index of the completion line where the anchor lines start, or -1."""
    before = line_prefix(context)
    numbered = [
        (index, before + line if index == 0 else line)
        for index, line in enumerate(lines)
        if line.strip() and not (index == 0 and before.strip())
    ]
    wanted = [squash(line) for line in anchor]
    indent = indent_width(anchor[0], config.tab_size)
    for position in range(len(numbered) - len(anchor) + 1):
        index, first = numbered[position]
        if indent_width(first, config.tab_size) != indent:
            continue
        if [squash(line) for _, line in numbered[position : position + len(anchor)]] == wanted:
            return index
    return -1


def stop_at_suffix_start(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Cut the completion before the text that follows the cursor (same line or next lines)."""
    text = candidate.text
    lines = text.split("\n")
    target = line_suffix(context).strip()
    cut = -1
    if target and has_word(target):
        cut = _find_on_line(lines[0], target)
    if cut < 0:
        anchor = _anchor(nonblank_lines_below(context, config), config)
        if anchor:
            index = _line_match(lines, context, config, anchor)
            if index >= 0:
                cut = sum(len(line) + 1 for line in lines[:index]) - (1 if index else 0)
    if cut < 0:
        return candidate
    kept = text[:cut]
    if text.startswith("\n", cut) or not text[text.rfind("\n", 0, cut) + 1 : cut].strip():
        kept = kept.rstrip()  # whole lines were removed: so are the blank lines before them
    return replace(candidate, text=kept) if kept.strip() else None
