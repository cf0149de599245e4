"""Stop a multi-line completion where it leaves the block the cursor is in.

The scope is found from indentation, which works the same for every language: a completion line
indented less than the cursor's block ends the completion. A closing line (``}``, ``)``, ``end``) at
the level of a block the cursor line opened is kept when the code below does not close that block
already; ``} else {`` / ``else:`` at that level continue the block instead of ending it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from cube_lsp.completion.multiline import opens_block
from cube_lsp.completion.postprocess._text import (
    indent_width,
    is_closing_line,
    line_prefix,
    nonblank_lines_below,
    previous_nonblank_line,
)
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext

_CONTINUATION = re.compile(r"(else|elif|except|finally|catch)\b")


def _scope(context: CursorContext, config: PostprocessConfig, below: list[str]) -> tuple[int, bool]:
    """Return the indentation of the block the cursor is in and whether the line at or above opens it."""
    tab = config.tab_size
    before = line_prefix(context)
    if before.strip():
        return indent_width(before, tab), opens_block(before, context.language_id)
    above = previous_nonblank_line(context, config)
    if above is None:
        return 0, False
    base = indent_width(above, tab)
    if opens_block(above, context.language_id):
        return base, True
    if not below or indent_width(below[0], tab) < base:
        # The block above ends here: the cursor's own indentation says which block the user is in.
        base = min(base, indent_width(before, tab))
    return base, False


def limit_scope_by_indentation(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Cut a multi-line completion at the first line indented less than the cursor's block."""
    text = candidate.text
    if "\n" not in text:
        return candidate
    tab = config.tab_size
    below = nonblank_lines_below(context, config)
    base, opens = _scope(context, config, below)
    least = base + 1 if opens else base
    before = line_prefix(context)
    lines = text.split("\n")
    below_indent = indent_width(below[0], tab) if below else -1
    for index, line in enumerate(lines):
        full = before + line if index == 0 else line
        if not line.strip() or (index == 0 and before.strip()):
            continue
        width = indent_width(full, tab)
        if width >= least:
            continue
        stripped = line.strip()
        reopens = opens_block(stripped, context.language_id)
        if (
            opens
            and width == base
            and reopens
            and (is_closing_line(stripped) or _CONTINUATION.match(stripped))
        ):
            continue  # `} else {` or `else:` keeps the block going
        at_level = width == base or not opens
        if is_closing_line(stripped) and at_level and below_indent < width:
            # Closes the cursor's block, which the code below does not close: keep it, then stop.
            return replace(candidate, text="\n".join(lines[: index + 1]))
        return replace(candidate, text="\n".join(lines[:index]))
    return candidate
