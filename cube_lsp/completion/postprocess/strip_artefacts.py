"""Remove what the model emits besides code: special tokens, reasoning blocks and markdown code fences.

FIM models leak their control tokens (``<|endoftext|>``, ``<|file_sep|>``, ``<｜end▁of▁sentence｜>`` ...)
when the server does not stop on them; everything from the first one on is noise. Reasoning models wrap
thoughts in ``<think>...</think>``; chat-tuned models wrap code in ```` ``` ```` fences.
"""

from __future__ import annotations

import re
from dataclasses import replace

from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext

# Languages where fences are content, not wrapping.
_FENCED_LANGUAGES = frozenset({"markdown", "mdx", "quarto", "rmd"})
_OPENING_FENCE = re.compile(r"\s*```[\w+#.-]*[ \t]*\n")
_CLOSING_FENCE = re.compile(r"(?:^|\n)[ \t]*```[ \t]*(?:\n|$)")


def _cut_at_stop_token(text: str, stop_tokens: tuple[str, ...]) -> str:
    cut = len(text)
    for token in stop_tokens:
        index = text.find(token, 0, cut)
        if index >= 0:
            cut = index
    return text[:cut]


def _remove_think_blocks(text: str, config: PostprocessConfig) -> str | None:
    opening, closing = config.think_open, config.think_close
    # Some templates put the opening marker in the prompt, so the output starts inside the block.
    start, end = text.find(opening), text.find(closing)
    if end >= 0 and (start < 0 or end < start):
        text = text[end + len(closing) :]
    while (start := text.find(opening)) >= 0:
        end = text.find(closing, start + len(opening))
        if end < 0:
            return None  # still thinking: there is no code yet
        text = text[:start] + text[end + len(closing) :]
    return text


def _remove_code_fences(text: str) -> str:
    opening = _OPENING_FENCE.match(text)
    if opening:
        text = text[opening.end() :]
    closing = _CLOSING_FENCE.search(text)
    return text[: closing.start()] if closing else text


def strip_artefacts(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Cut at the first stop token, remove think blocks (drop if one is unterminated) and code fences."""
    text = _cut_at_stop_token(candidate.text, config.stop_tokens)
    if config.think_open:
        removed = _remove_think_blocks(text, config)
        if removed is None:
            return None
        text = removed
    prose = context.language_id.lower() in _FENCED_LANGUAGES
    if config.strip_code_fences and "```" in text and not prose:
        text = _remove_code_fences(text)
    return candidate if text == candidate.text else replace(candidate, text=text)
