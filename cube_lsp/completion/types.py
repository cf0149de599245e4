"""Value types shared by the completion stages (context, templates, post-processing, engine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CursorContext:
    """The document around the cursor, as the post-processing filters see it.

    ``prefix`` is all text before the cursor and ``suffix`` all text after it (not truncated to the
    prompt budget: filters need the real code below the cursor to find overlap).
    """

    language_id: str  # LSP languageId, e.g. "python", "typescriptreact"
    prefix: str
    suffix: str
    multiline: bool  # whether a multi-line completion is wanted here (see completion/multiline.py)

    @property
    def line_prefix(self) -> str:
        """Text of the cursor line before the cursor."""
        return self.prefix[self.prefix.rfind("\n") + 1 :]

    @property
    def line_suffix(self) -> str:
        """Text of the cursor line after the cursor."""
        end = self.suffix.find("\n")
        return self.suffix if end < 0 else self.suffix[:end]


@dataclass(frozen=True)
class Candidate:
    """A completion on its way through post-processing.

    ``text`` is inserted at the cursor. ``replace_suffix_chars`` counts the characters of the cursor
    line after the cursor that the insertion replaces (closing brackets already on the line that the
    completion writes too), so the editor item gets a ``range`` that covers them.
    """

    text: str
    replace_suffix_chars: int = 0


@dataclass(frozen=True)
class Snippet:
    """A piece of another file (or a definition) offered to the model as context."""

    path: str  # workspace-relative path or URI shown to the model
    text: str
    score: float  # higher is more relevant; Jaccard similarity for recent files
    source: str  # "recent", "definition", ...
