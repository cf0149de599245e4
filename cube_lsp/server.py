"""The pygls wiring of cube-lsp: capabilities, thin handlers, settings and status notifications.

Handlers read the document and settings, call an engine and convert its result with ``lsp_*``
helpers; the logic lives in ``completion/`` (pure) and ``cube/`` (HTTP). Documents are kept in our
own :class:`~cube_lsp.documents.DocumentStore` (fast incremental edits, size limits) instead of
pygls' workspace, so the protocol subclass below replaces pygls' built-in didOpen/didChange/didClose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.uris import to_fs_path

from cube_lsp import __version__
from cube_lsp.chat.command import run_apply_command, run_chat_command
from cube_lsp.chat.engine import ChatEngine
from cube_lsp.chat.lsp_convert import (
    CHAT_APPLY_COMMAND,
    CHAT_COMMAND,
    chat_code_actions,
    parse_apply_args,
    parse_chat_args,
    resolve_command,
)
from cube_lsp.completion.engine import CompletionEngine, CompletionInput, CompletionResult
from cube_lsp.context import ContextSources
from cube_lsp.cube.attested import AttestationStatus, initial_status, make_client_transport
from cube_lsp.cube.client import CubeClient
from cube_lsp.documents import Document, DocumentStore, Encoding
from cube_lsp.lsp_convert import ACCEPT_COMMAND, lsp_completion_list, lsp_inline_completion_list
from cube_lsp.notices import AcceptanceTracker, ErrorNotices
from cube_lsp.search.lsp_convert import SEARCH_REQUEST, parse_search_params, search_items, workspace_symbols
from cube_lsp.search.service import SearchService
from cube_lsp.settings import Settings, merge_raw, parse_settings
from cube_lsp.workspace_files import WorkspaceFiles
from cube_wire.errors import CubeError, SettingsError

log = logging.getLogger("cube_lsp")

STATUS_NOTIFICATION = "cube/status"
DID_SHOW_NOTIFICATION = "cube/didShowCompletion"
STATS_REQUEST = "cube/acceptanceStats"
CONFIG_SECTION = "cube"
REQUEST_FAILED = -32803  # LSP's RequestFailed: the request was valid but could not be answered


class CubeProtocol(LanguageServerProtocol):
    """pygls' protocol with document sync routed to our DocumentStore."""

    _server: CubeLanguageServer

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Parse a message; a request with malformed params gets an InvalidParams error response.

        pygls raises for such a request without answering it, which leaves the client waiting forever.
        """
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            msg_id = data.get("id") if isinstance(data, dict) else None
            if "method" in data and isinstance(msg_id, int | str):
                self._send_response(msg_id, error=error.to_response_error())
            raise

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        """Start tracking a document."""
        doc = params.text_document
        self._server.documents.open(doc.uri, doc.language_id, doc.version, doc.text)
        self._server.document_changed(doc.uri)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        """Apply full or incremental changes."""
        document = self._server.documents.get(params.text_document.uri)
        if document is None:
            return
        encoding = self._server.position_encoding
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                document.apply_change(
                    change.text, (start.line, start.character), (end.line, end.character), encoding
                )
            else:
                document.apply_change(change.text)
        document.version = params.text_document.version
        self._server.document_changed(document.uri, keystroke=True)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        """Stop tracking a document."""
        self._server.documents.close(params.text_document.uri)


class CubeLanguageServer(LanguageServer):
    """cube-lsp's state: documents, settings, the proxy client and the completion engine."""

    def __init__(self, base_settings: Mapping[str, Any] | None = None) -> None:
        super().__init__("cube-lsp", __version__, protocol_cls=CubeProtocol)
        self.documents = DocumentStore()
        self.context = ContextSources()
        self.base_settings: dict[str, Any] = dict(base_settings or {})
        self.init_options: dict[str, Any] = {}
        self.settings = Settings()
        self.attestation = initial_status(self.settings)
        self.client: CubeClient | None = None
        self.engine = CompletionEngine(None, snippet_source=self.context.snippets)
        self.notices = ErrorNotices()
        self.acceptance = AcceptanceTracker()
        self._applied = False  # apply_settings ran at least once
        self.chat_tasks: dict[str, asyncio.Future[Any]] = {}  # running chats by progress token
        self.chat = ChatEngine(
            client=lambda: self.client, model=lambda: self.settings.models.chat, context=self.context
        )
        self.search = SearchService(
            client=lambda: self.client,
            report_error=self.report_cube_error,
            status_changed=self.send_status,
            progress=_WorkDoneProgress(self),
        )
        self.context.related = self.search.related  # chat prompts get the chunks search finds related
        self._settings_errors_shown: tuple[str, ...] = ()

    @property
    def position_encoding(self) -> Encoding:
        """The position encoding negotiated at initialize (utf-16 unless the client offered another)."""
        try:
            encoding = self.workspace.position_encoding
        except RuntimeError:
            return "utf-16"
        return encoding if encoding in ("utf-8", "utf-16", "utf-32") else "utf-16"  # type: ignore[return-value]

    # ---- documents -------------------------------------------------------------------------------
    def document_changed(self, uri: str, *, keystroke: bool = False) -> None:
        """Feed an opened or edited document to the cross-file context and the debounce."""
        document = self.documents.get(uri)
        if document is None or document.too_large or document.binary:
            return
        self.context.recent.update(uri, _path_of(uri), document.language_id, document.text)
        if keystroke:
            self.engine.note_keystroke(uri)

    def completion_input(
        self, uri: str, position: types.Position, *, automatic: bool
    ) -> tuple[Document, CompletionInput] | None:
        """Return the engine input for a position, or None when nothing should be completed there."""
        document = self.documents.get(uri)
        if document is None or document.too_large or document.binary:
            return None
        offset = document.offset_at(position.line, position.character, self.position_encoding)
        if offset is None:
            return None
        request = CompletionInput(
            uri=uri,
            language_id=document.language_id,
            path=_path_of(uri),
            text=document.text,
            offset=offset,
            automatic=automatic,
        )
        return document, request

    async def complete(self, request: CompletionInput) -> CompletionResult | None:
        """Run the engine; a failure is reported once and answered with no completion."""
        try:
            result = await self.engine.complete(request)
        except CubeError as error:
            self.report_cube_error(error)
            return None
        self.succeeded()
        if result is not None:
            self.acceptance.offered(result.id, request.language_id)
        return result

    # ---- settings ---------------------------------------------------------------------------------
    async def reload_settings(self, workspace_raw: Mapping[str, Any] | None = None) -> None:
        """Rebuild settings from file, initializationOptions and workspace configuration, then apply."""
        raw = merge_raw(merge_raw(self.base_settings, self.init_options), workspace_raw or {})
        settings, errors = parse_settings(raw)
        shown = tuple(f"{error.field}: {error.message}" for error in errors)
        if errors and shown != self._settings_errors_shown:
            self.show_settings_errors(errors)
        self._settings_errors_shown = shown
        if self._applied and settings == self.settings:
            # The same settings again (an editor pushing on every unrelated change, a second settings
            # file): keep the client, its pinned key and its status rather than attest anew.
            return
        await self.apply_settings(settings)

    def show_settings_errors(self, errors: Sequence[SettingsError]) -> None:
        """Show one message naming every invalid setting; the server goes on with defaults for them."""
        fields = ", ".join(error.field for error in errors)
        details = "; ".join(error.message for error in errors)
        log.warning("invalid settings: %s", fields)
        self.window_show_message(
            types.ShowMessageParams(
                type=types.MessageType.Error,
                message=f"cube-lsp: invalid settings ({fields}), using defaults for them. {details}",
            )
        )

    async def apply_settings(self, settings: Settings) -> None:
        """Switch to new settings: a new proxy client and a reconfigured engine."""
        old_client, self.client = self.client, None
        self.settings = settings
        self._applied = True
        self.attestation = initial_status(settings)
        if settings.endpoint and settings.domain:
            factory = partial(make_client_transport, on_status=self._attestation_reporter(settings))
            self.client = CubeClient(settings, transport_factory=factory)
        self.engine.configure(self.client, settings.completion, settings.models.completion, api_raw=False)
        if old_client is not None:
            await old_client.aclose()
        await self.search.configure(self.context.files.roots, settings)
        self.notices.succeeded()
        self.send_status()

    def _attestation_reporter(self, settings: Settings) -> Any:
        """Return the callback through which the client's attestor updates the status (SIMULATED too)."""

        def report(status: AttestationStatus) -> None:
            if self.settings is settings:  # a client of replaced settings may still finish an attestation
                self.attestation = status
                self.send_status()

        return report

    def search_root(self) -> Path | None:
        """Return the workspace folder search indexes (the first one), or None without a folder."""
        roots = self.context.files.roots
        return roots[0] if roots else None

    # ---- status and errors ------------------------------------------------------------------------
    def status_payload(self, error: CubeError | None = None) -> dict[str, Any]:
        """Return the body of a cube/status notification."""
        settings = self.settings
        if not settings.completion.enabled:
            state, message = "disabled", "completions are switched off"
        elif self.client is None:
            state, message = "unconfigured", "set `endpoint` and `domain` to enable completions"
        elif error is not None:
            state, message = "error", error.message
        else:
            state, message = "ready", "ready"
        return {
            "state": state,
            "message": message,
            "code": error.code if error is not None else None,
            "endpoint": settings.endpoint,
            "model": settings.models.completion,
            "attestation": self.attestation.payload(),
            "index": self.search.status(),
        }

    def send_status(self, error: CubeError | None = None) -> None:
        """Send a cube/status notification."""
        self.protocol.notify(STATUS_NOTIFICATION, self.status_payload(error))

    def report_cube_error(self, error: CubeError) -> None:
        """Show a failure once (not per keystroke) and put it in the status."""
        if not self.notices.should_show(error):
            return
        log.warning("completion failed: %s", error.code)
        self.send_status(error)
        self.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Error, message=f"cube-lsp: {error.message}")
        )

    def succeeded(self) -> None:
        """Note a success: clear a shown error so the status returns to ready."""
        if self.notices.succeeded():
            self.send_status()

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Log unexpected errors by type only: their text may quote the request (code, tokens)."""
        log.error("internal error (%s) from %s", type(error).__name__, getattr(source, "__name__", source))


def build_server(base_settings: Mapping[str, Any] | None = None) -> CubeLanguageServer:
    """Create the server with its handlers registered."""
    ls = CubeLanguageServer(base_settings)

    @ls.feature(types.INITIALIZE)
    def initialize(ls: CubeLanguageServer, params: types.InitializeParams) -> None:
        folders = [folder.uri for folder in params.workspace_folders or []] or [params.root_uri or ""]
        ls.context.files = WorkspaceFiles(path for uri in folders if uri and (path := to_fs_path(uri)))
        options = params.initialization_options
        if isinstance(options, Mapping):
            ls.init_options = dict(options.get(CONFIG_SECTION, options))
        inline = params.capabilities.text_document and params.capabilities.text_document.inline_completion
        if not inline:
            ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())(completion)

    @ls.feature(types.INITIALIZED)
    async def initialized(ls: CubeLanguageServer, params: types.InitializedParams) -> None:
        await ls.reload_settings(await _pull_configuration(ls))
        await _watch_files(ls)

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: CubeLanguageServer, params: types.DidChangeConfigurationParams
    ) -> None:
        pushed = params.settings.get(CONFIG_SECTION) if isinstance(params.settings, Mapping) else None
        await ls.reload_settings(pushed if isinstance(pushed, Mapping) else await _pull_configuration(ls))

    @ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CubeLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        found = ls.completion_input(params.text_document.uri, params.position, automatic=automatic)
        if found is None:
            return types.InlineCompletionList(items=[])
        document, request = found
        result = await ls.complete(request)
        return lsp_inline_completion_list(result, document, request.offset, ls.position_encoding)

    async def completion(ls: CubeLanguageServer, params: types.CompletionParams) -> types.CompletionList:
        found = ls.completion_input(params.text_document.uri, params.position, automatic=True)
        if found is None:
            return types.CompletionList(is_incomplete=True, items=[])
        document, request = found
        result = await ls.complete(request)
        return lsp_completion_list(result, document, request.offset, ls.position_encoding)

    @ls.command(ACCEPT_COMMAND)
    def accept_completion(ls: CubeLanguageServer, completion_id: str) -> None:
        ls.acceptance.did_accept(str(completion_id))

    @ls.feature(DID_SHOW_NOTIFICATION)
    def did_show_completion(ls: CubeLanguageServer, params: Any) -> None:
        completion_id = _completion_id_of(params)
        if completion_id is not None:
            ls.acceptance.did_show(completion_id)

    @ls.feature(STATS_REQUEST)
    def acceptance_stats(ls: CubeLanguageServer, params: Any) -> dict[str, dict[str, int]]:
        return ls.acceptance.summary()

    @ls.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.Refactor],
            resolve_provider=True,
        ),
    )
    def code_action(ls: CubeLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        document = ls.documents.get(params.text_document.uri)
        if not ls.settings.models.chat or document is None or document.binary or document.too_large:
            return None  # listing never calls the model: actions carry data, the command asks
        uri, diagnostics = params.text_document.uri, params.context.diagnostics
        actions = chat_code_actions(uri, params.range, document.version, diagnostics)
        text_document = ls.client_capabilities.text_document
        code_action = text_document.code_action if text_document else None
        if not (code_action and code_action.resolve_support):
            # An older client (Neovim 0.7, Emacs eglot) does not resolve: it gets the command now. Still
            # no model call: the command asks the model only when it runs.
            actions = [resolve_command(action) for action in actions]
        return actions

    @ls.feature(types.CODE_ACTION_RESOLVE)
    def code_action_resolve(ls: CubeLanguageServer, action: types.CodeAction) -> types.CodeAction:
        return resolve_command(action)

    @ls.command(CHAT_COMMAND)
    async def chat(ls: CubeLanguageServer, *arguments: Any) -> dict[str, Any]:
        try:
            return await run_chat_command(ls, parse_chat_args(list(arguments)))
        except CubeError as error:
            if not error.code.startswith("chat."):
                ls.report_cube_error(error)  # attestation, auth, proxy: shown once, like completions
            raise JsonRpcException(error.message, code=REQUEST_FAILED, data={"code": error.code}) from None

    @ls.command(CHAT_APPLY_COMMAND)
    async def chat_apply(ls: CubeLanguageServer, *arguments: Any) -> dict[str, Any]:
        try:
            return await run_apply_command(ls, parse_apply_args(list(arguments)))
        except CubeError as error:
            raise JsonRpcException(error.message, code=REQUEST_FAILED, data={"code": error.code}) from None

    @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def cancel_progress(ls: CubeLanguageServer, params: types.WorkDoneProgressCancelParams) -> None:
        task = ls.chat_tasks.get(str(params.token))
        if task is not None:
            task.cancel()  # closes the chat's HTTP stream

    @ls.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: CubeLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.search.files_changed([_path_of(params.text_document.uri)])

    @ls.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: CubeLanguageServer, params: types.DidChangeWatchedFilesParams) -> None:
        ls.search.files_changed(_path_of(change.uri) for change in params.changes)

    @ls.feature(types.WORKSPACE_SYMBOL)
    async def workspace_symbol(
        ls: CubeLanguageServer, params: types.WorkspaceSymbolParams
    ) -> list[types.SymbolInformation]:
        root = ls.search_root()
        if root is None:
            return []
        try:
            hits = await ls.search.symbols(params.query)
        except CubeError as error:
            ls.report_cube_error(error)
            return []
        return workspace_symbols(hits, root)

    @ls.feature(SEARCH_REQUEST)
    async def search(ls: CubeLanguageServer, params: Any) -> dict[str, Any]:
        try:
            parsed = parse_search_params(params)
            root = ls.search_root()
            if root is None:
                raise CubeError("cube/search: no workspace folder is open", code="search.no_workspace")
            hits = await ls.search.search(
                parsed.query, limit=parsed.limit, path_glob=parsed.path_glob, languages=parsed.languages
            )
        except CubeError as error:
            # The answer carries the stable code; the message says what to do (attestation included).
            raise JsonRpcException(error.message, code=REQUEST_FAILED, data={"code": error.code}) from None
        return search_items(hits, root)

    @ls.feature(types.SHUTDOWN)
    async def shutdown(ls: CubeLanguageServer, params: Any) -> None:
        await ls.search.aclose()
        await ls.engine.aclose()
        if ls.client is not None:
            await ls.client.aclose()

    return ls


async def _watch_files(ls: CubeLanguageServer) -> None:
    """Ask the client to report file changes in the workspace (for the search index), when it can."""
    workspace = ls.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if not watched or not watched.dynamic_registration:
        return  # didSave and the periodic rescan still keep the index fresh
    watchers = [types.FileSystemWatcher(glob_pattern="**/*")]
    options = types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers)
    registration = types.Registration(
        id="cube-search-watch", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options
    )
    try:
        await asyncio.wait_for(
            ls.client_register_capability_async(types.RegistrationParams(registrations=[registration])), 5
        )
    except Exception as exc:  # the client may refuse; saves and rescans still keep the index fresh
        log.warning("file watching not registered: %s", type(exc).__name__)


class _WorkDoneProgress:
    """Indexing progress as ``$/progress`` (when the client supports it), through pygls.

    ``begin`` may only follow the client's answer to ``window/workDoneProgress/create``; an update that
    ends before that answer must still end the progress after its begin, or the client shows
    "indexing" for ever.
    """

    def __init__(self, ls: CubeLanguageServer) -> None:
        self._ls = ls
        self._count = 0
        self._begun: set[str] = set()
        self._ended_early: dict[str, str] = {}

    def _supported(self) -> bool:
        window = getattr(self._ls.client_capabilities, "window", None)
        return bool(window and window.work_done_progress)

    def begin(self, title: str) -> object:
        if not self._supported():
            return None
        self._count += 1
        token = f"cube-index-{self._count}"
        progress = self._ls.work_done_progress

        def created(*_: object) -> None:
            progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=False, percentage=0))
            self._begun.add(token)
            if token in self._ended_early:
                self.end(token, self._ended_early.pop(token))

        progress.create(token, callback=created)
        return token

    def report(self, handle: object, message: str, percentage: int | None) -> None:
        if isinstance(handle, str) and handle in self._begun:
            self._ls.work_done_progress.report(
                handle, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def end(self, handle: object, message: str) -> None:
        if not isinstance(handle, str):
            return
        if handle not in self._begun:
            self._ended_early[handle] = message  # sent right after the begin
            return
        self._begun.discard(handle)
        self._ls.work_done_progress.end(handle, types.WorkDoneProgressEnd(message=message))


async def _pull_configuration(ls: CubeLanguageServer) -> Mapping[str, Any] | None:
    """Ask the client for the `cube` configuration section, when it supports workspace/configuration."""
    workspace = ls.client_capabilities.workspace
    if not workspace or not workspace.configuration:
        return None
    try:
        items = await asyncio.wait_for(
            ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=CONFIG_SECTION)])
            ),
            timeout=5,
        )
    except (TimeoutError, Exception) as exc:  # the client may not answer; defaults still apply
        log.warning("workspace/configuration failed: %s", type(exc).__name__)
        return None
    first = items[0] if items else None
    return first if isinstance(first, Mapping) else None


def redact_library_records(record: logging.LogRecord) -> bool:
    """Keep only the first line of pygls' log records, without arguments or tracebacks.

    pygls logs whole messages and deserialisation tracebacks, which quote document text and
    settings (tokens). Our own records never contain them, so they pass unchanged.
    """
    if record.name.startswith("pygls"):
        message = record.getMessage() if not record.args else str(record.msg)
        record.msg = message.split("\n", 1)[0][:200]
        record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


def _completion_id_of(params: Any) -> str | None:
    """Find the completion id in a cube/didShowCompletion notification (Copilot's `item` shape too)."""
    if hasattr(params, "_asdict"):
        params = params._asdict()
    if isinstance(params, Mapping):
        if isinstance(params.get("id"), str):
            return str(params["id"])
        item = params.get("item")
        if hasattr(item, "_asdict"):
            item = item._asdict()
        if isinstance(item, Mapping):
            command = item.get("command")
            if hasattr(command, "_asdict"):
                command = command._asdict()
            arguments = command.get("arguments") if isinstance(command, Mapping) else None
            if isinstance(arguments, list) and arguments and isinstance(arguments[0], str):
                return str(arguments[0])
    return None


def _path_of(uri: str) -> str:
    return to_fs_path(uri) or uri


def main(argv: Sequence[str] | None = None) -> int:
    """Run cube-lsp over stdio."""
    parser = argparse.ArgumentParser(prog="cube-lsp", description="Confidential AI code completion over LSP")
    parser.add_argument("--version", action="version", version=f"cube-lsp {__version__}")
    parser.add_argument("--stdio", action="store_true", help="use stdio (the default and only transport)")
    parser.add_argument(
        "--settings", metavar="FILE", help="settings JSON (same contract as initializationOptions)"
    )
    parser.add_argument("--log-file", metavar="FILE", help="write logs here instead of stderr")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)

    handler: logging.Handler = (
        logging.FileHandler(args.log_file, encoding="utf-8")
        if args.log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(redact_library_records)
    logging.basicConfig(level=args.log_level, handlers=[handler])
    # pygls logs whole messages (document text included) at INFO/DEBUG: keep them out of the log.
    logging.getLogger("pygls").setLevel(logging.WARNING)

    base: dict[str, Any] = {}
    if args.settings:
        try:
            with open(args.settings, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            print(f"cube-lsp: cannot read --settings {args.settings}: {exc}", file=sys.stderr)
            return 2
        base = loaded if isinstance(loaded, dict) else {}
    build_server(base).start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
