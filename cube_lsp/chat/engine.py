"""Runs one chat code action: prompt, streamed answer, and the edit (or the reason there is none).

The language server and ``cube chat`` share it. The answer streams through the proxy client's attested
transport (nothing is sent to a proxy that did not attest); each piece goes to ``on_text`` as it comes.
Actions that change code turn the answer into the smallest edit of the selection with
:func:`cube_lsp.chat.edits.apply_answer`; the caller decides whether the document is still the one the
edit was made for. Follow-up questions keep a bounded thread per chat id.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cube_lsp.chat.edits import TextEdit, apply_answer
from cube_lsp.chat.prompts import ACTIONS, ChatInput, build_chat_prompt
from cube_lsp.completion.engine import CompletionInput
from cube_lsp.completion.types import Snippet
from cube_lsp.context import ContextSources
from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.errors import ProxyNotConfigured
from cube_wire.errors import CubeError

__all__ = ["EDIT_ACTIONS", "ChatEngine", "ChatOutcome", "ChatRequest", "whole_lines"]

#: Actions whose answer replaces the selection; the others answer in prose (markdown).
EDIT_ACTIONS = frozenset({"document", "refactor", "fix"})
MAX_THREADS = 64  # chat ids remembered
MAX_TURNS = 6  # question/answer pairs kept per thread


def whole_lines(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a selection (str offsets) to whole lines; an empty one (the cursor) becomes its line.

    Editors select from a column, and Neovim's visual line selections end one character into the next
    line; a model answers with whole lines, so the edit is placed over whole lines.
    """
    start = text.rfind("\n", 0, start) + 1
    if end <= start or text[end - 1] != "\n":
        newline = text.find("\n", max(end, start))
        end = len(text) if newline < 0 else newline + 1
    return start, end


@dataclass(frozen=True)
class ChatRequest:
    """One code action on a document's selection."""

    action: str
    uri: str
    path: str
    language_id: str
    text: str  # the document as the action saw it
    start: int  # the selection, str offsets into text
    end: int
    instruction: str = ""
    diagnostics: Sequence[str] = ()
    chat_id: str | None = None  # follow-ups with the same id see the earlier turns


@dataclass(frozen=True)
class ChatOutcome:
    """The whole answer, and for an edit action the edit or the reason nothing is applied."""

    answer: str
    edit: TextEdit | None
    reason: str | None
    truncated: bool  # the selection was cut to fit the prompt


@dataclass
class _Thread:
    """The turns of one conversation and the code its last turn was about."""

    turns: deque[dict[str, str]]
    selection: str | None = None


class ChatEngine:
    """Chat code actions over the current proxy client (looked up per call, as settings change)."""

    def __init__(
        self,
        *,
        client: Callable[[], CubeClient | None],
        model: Callable[[], str | None],
        context: ContextSources | None = None,
        max_prompt_tokens: int = 4096,
    ) -> None:
        self._client = client
        self._model = model
        self._context = context
        self._max_prompt_tokens = max_prompt_tokens
        self._threads: OrderedDict[str, _Thread] = OrderedDict()

    async def run(self, request: ChatRequest, on_text: Callable[[str], None] | None = None) -> ChatOutcome:
        """Ask the chat model; raise CubeError (attestation included) when it cannot be asked."""
        if request.action not in ACTIONS:
            raise CubeError(f"unknown chat action {request.action!r}", code="chat.bad_action")
        client = self._client()
        if client is None:
            raise ProxyNotConfigured("no proxy configured: set `endpoint` and `domain` to use chat")
        model = self._model()
        if not model:
            raise CubeError("no chat model configured: set `models.chat`", code="chat.no_model")
        snippets = await self._snippets(request)
        source = ChatInput(
            request.action,
            request.path,
            request.language_id,
            request.text,
            request.start,
            request.end,
            request.instruction,
            tuple(request.diagnostics),
            tuple(snippets),
        )
        try:
            prompt = build_chat_prompt(source, max_prompt_tokens=self._max_prompt_tokens)
        except ValueError as exc:
            raise CubeError(str(exc), code="chat.bad_selection") from None
        system, user = prompt.messages
        thread = self._thread(request.chat_id)
        selected = request.text[request.start : request.end]
        if thread is not None and thread.turns and thread.selection == selected and request.action == "ask":
            # A follow-up about the same code: the thread already holds it, so only the question goes
            # out, and the conversation does not grow by the whole context at every turn.
            user = {"role": "user", "content": f"Question: {request.instruction.strip()}"}
        messages = [system, *(thread.turns if thread is not None else ()), user]
        pieces: list[str] = []
        async for piece in client.stream_chat(messages, model=model):
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
        answer = "".join(pieces)
        if thread is not None:
            thread.turns.extend([user, {"role": "assistant", "content": answer}])
            thread.selection = selected
        if request.action not in EDIT_ACTIONS:
            return ChatOutcome(answer, None, None, prompt.truncated)
        if prompt.truncated:
            reason = "the selection was too long to send whole, so its answer is not applied"
            return ChatOutcome(answer, None, reason, True)
        result = apply_answer(request.text, request.start, request.end, answer, request.language_id)
        return ChatOutcome(answer, result.edit, result.reason, False)

    async def _snippets(self, request: ChatRequest) -> list[Snippet]:
        """Return imported definitions first, then what search finds related, then similar recent code."""
        if self._context is None:
            return []
        probe = CompletionInput(
            uri=request.uri,
            language_id=request.language_id,
            path=request.path,
            text=request.text,
            offset=request.start,
            automatic=False,
        )
        nearby = self._context.snippets(probe)
        definitions = [s for s in nearby if s.source == "definition"]
        recent = [s for s in nearby if s.source != "definition"]
        query = f"{request.instruction}\n{request.text[request.start : request.end]}".strip()
        first = request.text.count("\n", 0, request.start) + 1
        last = first + request.text.count("\n", request.start, max(request.start, request.end - 1))
        related = await self._context.related_snippets(query, request.path, (first, last))
        known = {(s.path, s.text) for s in definitions}
        return [*definitions, *(s for s in related if (s.path, s.text) not in known), *recent]

    def _thread(self, chat_id: str | None) -> _Thread | None:
        if chat_id is None:
            return None
        thread = self._threads.get(chat_id)
        if thread is None:
            thread = self._threads[chat_id] = _Thread(deque(maxlen=2 * MAX_TURNS))
            while len(self._threads) > MAX_THREADS:
                self._threads.popitem(last=False)
        self._threads.move_to_end(chat_id)
        return thread
