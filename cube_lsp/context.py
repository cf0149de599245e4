"""Cross-file context for prompts, in one place for the language server, the CLI and (later) chat.

A completion prompt is better with code from elsewhere in the workspace: the definitions of the names
the file imports (tree-sitter, from open documents or read from disk inside the workspace) and windows
of recently edited files that look like the code at the cursor. This module gathers both within a time
budget. The language server feeds :attr:`ContextSources.recent` from didOpen/didChange; ``cube complete``
has no open documents, so it gets the imported definitions, read from disk, and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from cube_lsp.completion.definitions import find_definition_snippets
from cube_lsp.completion.engine import CompletionInput
from cube_lsp.completion.snippets import Deadline, RecentFiles
from cube_lsp.completion.types import Snippet
from cube_lsp.workspace_files import WorkspaceFiles

__all__ = ["CONTEXT_BUDGET_S", "ContextSources"]

# Time each completion may spend gathering cross-file context before the prompt goes out.
CONTEXT_BUDGET_S = 0.03


class ContextSources:
    """Where cross-file context comes from: open and recent documents, and the workspace's files."""

    def __init__(
        self,
        *,
        recent: RecentFiles | None = None,
        files: WorkspaceFiles | None = None,
        budget_s: float = CONTEXT_BUDGET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recent = recent if recent is not None else RecentFiles()
        self.files = files if files is not None else WorkspaceFiles()
        self.budget_s = budget_s
        self.clock = clock

    def snippets(self, request: CompletionInput) -> list[Snippet]:
        """Return the snippets for a completion: imported definitions first, then similar windows.

        Paths are made relative to the workspace folder holding them (that is what the model sees).
        """
        deadline = Deadline.after(self.clock, self.budget_s)
        definitions = find_definition_snippets(
            request.text,
            request.offset,
            request.language_id,
            request.path,
            documents=self.recent.texts(),
            read_file=self.files.read,
            deadline=deadline,
        )
        similar = self.recent.snippets_for(request.uri, request.text, request.offset)
        return [replace(s, path=self.files.relative(s.path)) for s in (*definitions, *similar)]
