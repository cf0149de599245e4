"""The prompt token budget: how much code above and below the cursor goes to the model.

It bridges the editor's whole document and the model's small context window. The split follows
Continue (``maxPromptTokens`` 1024, ``prefixPercentage`` 0.3, ``maxSuffixPercentage`` 0.2), with
tokens estimated from characters so that no tokenizer has to ship:

1. ``total`` = ``max_prompt_tokens`` minus ``reserved_tokens`` (template markers, file name).
2. The suffix may use up to ``total * max_suffix_percentage`` tokens.
3. The prefix gets ``total * prefix_percentage`` plus whatever the suffix left unused.
4. Snippets (other files, definitions) get what remains: ``total - prefix used - suffix used``.

Both sides are pruned by whole lines, keeping the lines nearest the cursor. The text of the cursor
line on each side of the cursor is always kept, unless it alone exceeds its side's budget (a
minified file): then it is cut character-wise, keeping the characters nearest the cursor.

The document is never split into lines: the walk goes outwards from the cursor with ``str.rfind``
and ``str.find``, only as far as the budget reaches, so the cost does not grow with the document.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_CHARS_PER_TOKEN",
    "CharRatioCounter",
    "PromptContext",
    "TokenCounter",
    "build_prompt_context",
    "cut_to_tokens",
]

# Cody uses 3.5 characters per token, lsp-ai 4. Code tokenizes denser than prose, and over-counting
# only costs a few lines of context while under-counting overflows the model's window, so we take
# the lower, conservative ratio.
DEFAULT_CHARS_PER_TOKEN = 3.5


class TokenCounter(Protocol):
    """Counts the tokens of a text; a real tokenizer can implement this later."""

    def count(self, text: str) -> int:
        """Return the number of tokens ``text`` takes."""
        ...


@dataclass(frozen=True)
class CharRatioCounter:
    """Estimates tokens as ``ceil(len(text) / chars_per_token)``."""

    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN

    def count(self, text: str) -> int:
        """Return the estimated number of tokens of ``text``."""
        return math.ceil(len(text) / self.chars_per_token)


@dataclass(frozen=True)
class PromptContext:
    """The pruned code around the cursor and how the token budget was spent.

    ``prefix`` is ``text[prefix_start:offset]`` and ``suffix`` is ``text[offset:suffix_end]``, so
    the ranges identify the prompt (e.g. for a cache key) without keeping the strings.
    """

    prefix: str
    suffix: str
    prefix_start: int  # document offset where the kept prefix starts
    suffix_end: int  # document offset where the kept suffix ends
    prefix_tokens: int
    suffix_tokens: int
    snippet_tokens: int  # budget left for snippets; never negative


_DEFAULT_COUNTER = CharRatioCounter()


def build_prompt_context(
    text: str,
    offset: int,
    *,
    max_prompt_tokens: int = 1024,
    prefix_percentage: float = 0.3,
    max_suffix_percentage: float = 0.2,
    reserved_tokens: int = 0,
    counter: TokenCounter = _DEFAULT_COUNTER,
) -> PromptContext:
    """Cut the prefix and suffix around ``offset`` (a str index) to the token budget."""
    offset = min(max(offset, 0), len(text))
    total = max(max_prompt_tokens - reserved_tokens, 0)
    suffix_budget = math.floor(total * max_suffix_percentage)
    suffix_end, suffix_tokens = _walk_forward(text, offset, suffix_budget, counter)
    prefix_budget = math.floor(total * prefix_percentage) + max(suffix_budget - suffix_tokens, 0)
    prefix_start, prefix_tokens = _walk_backward(text, offset, prefix_budget, counter)
    return PromptContext(
        prefix=text[prefix_start:offset],
        suffix=text[offset:suffix_end],
        prefix_start=prefix_start,
        suffix_end=suffix_end,
        prefix_tokens=prefix_tokens,
        suffix_tokens=suffix_tokens,
        snippet_tokens=max(total - prefix_tokens - suffix_tokens, 0),
    )


def cut_to_tokens(text: str, tokens: int, counter: TokenCounter, *, keep_end: bool = False) -> str:
    """Return the longest start (or end, with ``keep_end``) of ``text`` that fits in ``tokens``."""
    if counter.count(text) <= tokens:
        return text
    if tokens <= 0:
        return ""
    # No tokenizer averages more than 16 characters per token on code; this bounds the search.
    hi = min(len(text), tokens * 16)
    lo = 0
    while lo < hi:  # largest n with count(piece of length n) <= tokens
        mid = (lo + hi + 1) // 2
        piece = text[len(text) - mid :] if keep_end else text[:mid]
        if counter.count(piece) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo :] if keep_end else text[:lo]


def _walk_backward(text: str, offset: int, budget: int, counter: TokenCounter) -> tuple[int, int]:
    """Return (start, tokens) of the whole lines before ``offset`` that fit in ``budget``."""
    line_start = text.rfind("\n", 0, offset) + 1
    partial = text[line_start:offset]
    used = counter.count(partial)
    if used > budget:
        kept = cut_to_tokens(partial, budget, counter, keep_end=True)
        return offset - len(kept), counter.count(kept)
    start = line_start
    while start > 0:
        # text[start - 1] is the newline ending the previous line.
        previous = text.rfind("\n", 0, start - 1) + 1
        cost = counter.count(text[previous:start])
        if used + cost > budget:
            break
        used += cost
        start = previous
    return start, used


def _walk_forward(text: str, offset: int, budget: int, counter: TokenCounter) -> tuple[int, int]:
    """Return (end, tokens) of the whole lines after ``offset`` that fit in ``budget``."""
    line_end = text.find("\n", offset)
    if line_end < 0:
        line_end = len(text)
    partial = text[offset:line_end]
    used = counter.count(partial)
    if used > budget:
        kept = cut_to_tokens(partial, budget, counter)
        return offset + len(kept), counter.count(kept)
    end = line_end
    while end < len(text):
        # text[end] is the newline ending the current line; the next line runs to the next one.
        following = text.find("\n", end + 1)
        if following < 0:
            following = len(text)
        cost = counter.count(text[end:following])
        if used + cost > budget:
            break
        used += cost
        end = following
    return end, used
