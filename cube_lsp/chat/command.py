"""The ``cube.chat`` command as the language server runs it: check, stream with progress, apply or show.

Kept out of server.py so its handlers stay thin. Nothing is applied unless the document is still the
version the action was listed on and still the version the model answered about; prose answers go to
the client as ``cube/chatResult`` (when it says it shows them) or as a markdown document it opens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from cube_lsp.chat.edits import TextEdit, place_code
from cube_lsp.chat.engine import EDIT_ACTIONS, ChatRequest, whole_lines
from cube_lsp.chat.lsp_convert import (
    CHAT_DELTA,
    CHAT_RESULT,
    ApplyArgs,
    ChatArgs,
    lsp_range,
    workspace_edit,
)
from cube_lsp.documents import Document
from cube_wire.errors import CubeError

if TYPE_CHECKING:
    from cube_lsp.server import CubeLanguageServer

__all__ = ["run_apply_command", "run_chat_command"]

log = logging.getLogger(__name__)

_TITLES = {
    "explain": "Explain",
    "document": "Add documentation",
    "refactor": "Refactor",
    "tests": "Write tests",
    "fix": "Fix",
    "ask": "Ask",
}


async def run_chat_command(ls: CubeLanguageServer, args: ChatArgs) -> dict[str, Any]:
    """Run one chat action; return what happened. Raise CubeError for what the user must fix."""
    document = ls.documents.get(args.uri)
    if document is None:
        raise CubeError(
            f"{args.uri} is not open: open it, then run the action again", code="chat.no_document"
        )
    if document.binary or document.too_large:
        raise CubeError("this file is binary or too large for chat", code="chat.bad_document")
    if args.version is not None and args.version != document.version:
        raise CubeError(
            "the document changed since this action was offered: run it again", code="chat.document_changed"
        )
    encoding = ls.position_encoding
    start = document.offset_at(*args.start, encoding)
    end = document.offset_at(*args.end, encoding)
    if start is None or end is None or start > end:
        raise CubeError("cube.chat: `range` is outside the document", code="chat.bad_args")
    start, end = whole_lines(document.text, start, end)
    version = document.version
    title = f"Cube: {_TITLES.get(args.action, args.action)}"
    # The id is known before the first piece streams, so a client can put the pieces in their thread.
    chat_id = args.chat_id or str(uuid.uuid4())
    request = ChatRequest(
        action=args.action,
        uri=args.uri,
        path=ls.context.files.relative(_path(args.uri)),
        language_id=document.language_id,
        text=document.text,
        start=start,
        end=end,
        instruction=args.instruction,
        diagnostics=args.diagnostics,
        chat_id=chat_id,
    )
    progress = _Progress(ls, title)
    about = {"chatId": chat_id, "action": args.action, "title": title, "uri": args.uri}
    on_text = _streamer(ls, about, progress)
    # A task of its own, so that cancelling the progress (window/workDoneProgress/cancel) cancels the
    # stream, which closes the HTTP response and the model's generation behind the proxy.
    task = asyncio.ensure_future(ls.chat.run(request, on_text=on_text))
    if progress.token is not None:
        ls.chat_tasks[progress.token] = task
    try:
        outcome = await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # the command itself was cancelled
        _tell(ls, types.MessageType.Info, f"{title}: cancelled; nothing applied.")
        return {"applied": False, "reason": "cancelled"}
    finally:
        progress.end()
        if progress.token is not None:
            ls.chat_tasks.pop(progress.token, None)
    if args.action not in EDIT_ACTIONS:
        where = {"version": version, "range": lsp_range(document, start, end, encoding)}
        _show_prose(ls, about | where, outcome.answer)
        return {"chatId": chat_id, "applied": False, "answer": outcome.answer}
    if outcome.edit is None:
        _tell(ls, types.MessageType.Warning, f"{title}: nothing applied: {outcome.reason}.")
        return {"chatId": chat_id, "applied": False, "reason": outcome.reason}
    current = ls.documents.get(args.uri)
    if current is None or current.version != version:
        reason = "the document changed while the model was answering"
        _tell(ls, types.MessageType.Warning, f"{title}: nothing applied: {reason}; run it again.")
        return {"chatId": chat_id, "applied": False, "reason": reason}
    return {"chatId": chat_id, **await _apply(ls, args.uri, current, outcome.edit, title)}


async def run_apply_command(ls: CubeLanguageServer, args: ApplyArgs) -> dict[str, Any]:
    """Put code the user picked from an answer over a range of the version the answer was about."""
    document = ls.documents.get(args.uri)
    if document is None:
        raise CubeError(f"{args.uri} is not open: open it, then apply again", code="chat.no_document")
    if document.version != args.version:
        reason = "the document changed since this answer: ask again to apply code to it"
        _tell(ls, types.MessageType.Warning, f"{args.title}: nothing applied: {reason}.")
        return {"applied": False, "reason": reason}
    encoding = ls.position_encoding
    start = document.offset_at(*args.start, encoding)
    end = document.offset_at(*args.end, encoding)
    if start is None or end is None or start > end:
        raise CubeError("cube.chat.apply: `range` is outside the document", code="chat.bad_args")
    start, end = whole_lines(document.text, start, end)
    result = place_code(document.text, start, end, args.code, document.language_id)
    if result.edit is None:
        _tell(ls, types.MessageType.Warning, f"{args.title}: nothing applied: {result.reason}.")
        return {"applied": False, "reason": result.reason}
    return await _apply(ls, args.uri, document, result.edit, args.title)


async def _apply(
    ls: CubeLanguageServer, uri: str, document: Document, edit: TextEdit, title: str
) -> dict[str, Any]:
    """Ask the client to apply ``edit`` to this version of the document, to be confirmed if it can."""
    confirm = title if ls.settings.chat.confirm_edits and _confirms_edits(ls) else None
    change = workspace_edit(uri, document.version, document, edit, ls.position_encoding, confirm=confirm)
    result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=change, label=title))
    if result.applied:
        return {"applied": True}
    if confirm is not None and not result.failure_reason:
        # Shown as a change to confirm, and the user discarded it: their choice, no warning.
        return {"applied": False, "reason": "discarded"}
    failure = result.failure_reason
    _tell(ls, types.MessageType.Warning, f"{title}: the editor did not apply the edit ({failure}).")
    return {"applied": False, "reason": result.failure_reason or "not applied"}


def _confirms_edits(ls: CubeLanguageServer) -> bool:
    """Whether the client shows annotated edits for confirmation (LSP changeAnnotationSupport)."""
    workspace = getattr(ls.client_capabilities, "workspace", None)
    edit = getattr(workspace, "workspace_edit", None)
    return getattr(edit, "change_annotation_support", None) is not None


def _experimental(ls: CubeLanguageServer, name: str) -> bool:
    experimental = getattr(ls.client_capabilities, "experimental", None)
    return isinstance(experimental, dict) and bool(experimental.get(name))


def _streamer(ls: CubeLanguageServer, about: dict[str, Any], progress: _Progress) -> Callable[[str], None]:
    """Each streamed piece to the progress report and, for a client that streams chat, as cube/chatDelta."""
    if not _experimental(ls, "cubeChatStream"):
        return progress.text

    def on_text(piece: str) -> None:
        progress.text(piece)
        ls.protocol.notify(CHAT_DELTA, about | {"text": piece})

    return on_text


class _Progress:
    """``$/progress`` while the answer streams, when the client supports it."""

    def __init__(self, ls: CubeLanguageServer, title: str) -> None:
        self._ls = ls
        self._chars = 0
        self._token: str | None = None
        self._begun = False
        window = getattr(ls.client_capabilities, "window", None)
        if window and window.work_done_progress:
            self._token = f"cube-chat-{uuid.uuid4()}"
            token, progress = self._token, ls.work_done_progress

            def begin(*_: object) -> None:
                progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=True))
                self._begun = True

            progress.create(token, callback=begin)

    @property
    def token(self) -> str | None:
        """The progress token (None when the client shows no progress)."""
        return self._token

    def text(self, piece: str) -> None:
        self._chars += len(piece)
        if self._token is not None and self._begun:
            message = f"{self._chars} characters"
            self._ls.work_done_progress.report(self._token, types.WorkDoneProgressReport(message=message))

    def end(self) -> None:
        if self._token is not None and self._begun:
            self._ls.work_done_progress.end(self._token, types.WorkDoneProgressEnd(message="done"))


def _show_prose(ls: CubeLanguageServer, about: dict[str, Any], answer: str) -> None:
    """Send the answer as cube/chatResult; a client that does not declare it gets a markdown document."""
    ls.protocol.notify(CHAT_RESULT, about | {"markdown": answer})
    if _experimental(ls, "cubeChatResult"):
        return
    action, title = about["action"], about["title"]
    window = getattr(ls.client_capabilities, "window", None)
    if window and window.show_document and window.show_document.support:
        # mkstemp: a new 0600 file made with O_EXCL, so nothing another user put in /tmp beforehand
        # (a directory, a symlink) can receive the answer, which quotes the user's code.
        fd, name = tempfile.mkstemp(prefix=f"cube-{action}-", suffix=".md")
        with os.fdopen(fd, "w", encoding="utf-8") as page:
            page.write(f"# {title}\n\n{answer}\n")
        ls.window_show_document(types.ShowDocumentParams(uri=Path(name).as_uri(), take_focus=False))
        return
    first = answer.strip().split("\n", 1)[0][:300]
    _tell(ls, types.MessageType.Info, f"{title}: {first}")


def _tell(ls: CubeLanguageServer, kind: types.MessageType, message: str) -> None:
    ls.window_show_message(types.ShowMessageParams(type=kind, message=message))


def _path(uri: str) -> str:
    from pygls.uris import to_fs_path

    return to_fs_path(uri) or uri
