"""Cross-file context for prompts, in one place for the language server, the CLI and (later) chat.

A completion prompt is better with code from elsewhere in the workspace: the definitions of the names
the file imports (tree-sitter, from open documents or read from disk inside the workspace) and windows
of recently edited files that look like the code at the cursor. This module gathers both within a time
budget. The language server feeds :attr:`ContextSources.recent` from didOpen/didChange; ``cube complete``
has no open documents, so it gets the imported definitions, read from disk, and nothing else.

Chat, which is not racing the next keystroke, also gets the chunks that semantic search finds most
related to the selection (:meth:`ContextSources.related_snippets`), when a search index is attached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from cube_lsp.completion.definitions import find_definition_snippets
from cube_lsp.completion.engine import CompletionInput
from cube_lsp.completion.snippets import Deadline, RecentFiles
from cube_lsp.completion.types import Snippet
from cube_lsp.search.types import Hit
from cube_lsp.workspace_files import WorkspaceFiles
from cube_wire.errors import CubeError

__all__ = ["CONTEXT_BUDGET_S", "RELATED_BUDGET_S", "ContextSources", "RelatedSearch"]

log = logging.getLogger(__name__)

# Time each completion may spend gathering cross-file context before the prompt goes out.
CONTEXT_BUDGET_S = 0.03
# Time a chat request may spend finding related chunks (one query embedding through the proxy).
RELATED_BUDGET_S = 3.0
MAX_QUERY_CHARS = 2000

#: Ranked hits for (query, limit), each hit's snippet holding its chunk's text.
RelatedSearch = Callable[[str, int], Awaitable[Sequence[Hit]]]


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
        self.related: RelatedSearch | None = None  # attached when a search index serves the workspace

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

    async def related_snippets(
        self, query: str, path: str, lines: tuple[int, int], *, limit: int = 3
    ) -> list[Snippet]:
        """Return up to ``limit`` chunks related to ``query`` that are not the selection itself.

        ``path`` is workspace-relative and ``lines`` the selection's 1-based inclusive lines: a hit that
        overlaps them repeats what the prompt already has. Context is optional, so a search that is
        off, slow or failing gives none (the chat request itself then meets any attestation failure).
        """
        if self.related is None or not query.strip():
            return []
        try:
            hits = await asyncio.wait_for(self.related(query[:MAX_QUERY_CHARS], limit + 4), RELATED_BUDGET_S)
        except (CubeError, TimeoutError) as error:
            log.info("context.related_skipped %s", getattr(error, "code", "timeout"))
            return []
        snippets = []
        for hit in hits:
            if hit.path == path and hit.start_line <= lines[1] and hit.end_line >= lines[0]:
                continue
            where = f"{hit.path}:{hit.start_line}-{hit.end_line}"
            snippets.append(Snippet(path=where, text=hit.snippet, score=hit.score, source="search"))
            if len(snippets) == limit:
                break
        return snippets
