"""`cube chat`: a chat code action from the command line, over the server's chat engine.

``cube chat ACTION FILE:START-END [--instruction TEXT] [--settings F] [--apply]`` sends lines START to
END (1-based, inclusive) of FILE with the action (explain, document, refactor, tests, fix, ask) and
prints the answer as it streams. For document, refactor and fix, ``--apply`` writes the edit into FILE,
and only if FILE is unchanged since it was read. Exit status: 0 answered (and applied, with
``--apply``), 1 nothing to apply (the reason is printed), 2 bad arguments or settings, 3 the proxy
failed (attestation included: nothing is sent unless the proxy attests).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cube_lsp.chat.edits import TextEdit
from cube_lsp.chat.engine import EDIT_ACTIONS, ChatEngine, ChatRequest
from cube_lsp.chat.prompts import ACTIONS
from cube_lsp.context import ContextSources
from cube_lsp.cube.attested import AttestationStatus, make_client_transport
from cube_lsp.cube.client import CubeClient
from cube_lsp.languages import language_for_path
from cube_lsp.settings import Settings
from cube_lsp.text_files import read_text_file
from cube_lsp.workspace_files import WorkspaceFiles
from cube_wire.errors import CubeError

CHAT_OPTIONS = ["settings", "endpoint", "domain", "token", "api", "attestation", "policy"]
_RANGE = re.compile(r"^(?P<path>.+):(?P<start>\d+)-(?P<end>\d+)$")


def add_chat_parser(commands: Any, add_options: Callable[..., None]) -> None:
    """Add `cube chat` to the subcommands."""
    chat = commands.add_parser("chat", help="run a chat code action on lines of a file")
    chat.add_argument("action", choices=sorted(ACTIONS), help="what to do")
    chat.add_argument("location", metavar="FILE:START-END", help="1-based, inclusive line range")
    chat.add_argument("--instruction", default="", help="refactor: what to do; ask: the question")
    chat.add_argument("--apply", action="store_true", help="write the edit into FILE if it is unchanged")
    add_options(chat, CHAT_OPTIONS)


def read_selection(location: str) -> tuple[Path, bytes, str, int, int]:
    """Return (path, raw bytes, text, start, end) for FILE:START-END; raise CubeError when unusable."""
    match = _RANGE.match(location)
    if match is None:
        raise CubeError(f"expected FILE:START-END with 1-based lines, got {location!r}", code="cli.location")
    path, first, last = Path(match["path"]), int(match["start"]), int(match["end"])
    raw, text = read_text_file(path, "chatting about")
    lines = text.split("\n")
    if not 1 <= first <= last <= len(lines):
        raise CubeError(
            f"{path} has {len(lines)} lines; {first}-{last} is not a range in it", code="cli.location"
        )
    start = sum(len(line) + 1 for line in lines[: first - 1])
    end = min(len(text), sum(len(line) + 1 for line in lines[:last]))
    return path, raw, text, start, end


async def run_chat(
    settings: Settings,
    args: argparse.Namespace,
    say: Callable[[str], None],
    write: Callable[[str], None],
    project_root: Callable[[Path], Path],
) -> int:
    """Run the action; stream the answer with ``write``; apply with ``--apply``. Return the exit status."""
    path, raw, text, start, end = read_selection(args.location)
    if args.apply and args.action not in EDIT_ACTIONS:
        raise CubeError(
            f"--apply is for {', '.join(sorted(EDIT_ACTIONS))}, not {args.action}", code="cli.usage"
        )

    def warn_simulated(status: AttestationStatus) -> None:
        if status.simulated:
            say(f"WARNING: {status.message}")

    info = language_for_path(str(path))
    factory = partial(make_client_transport, on_status=warn_simulated)
    context = ContextSources(files=WorkspaceFiles([str(project_root(path))]), budget_s=0.5)
    async with CubeClient(settings, transport_factory=factory) as client:
        engine = ChatEngine(client=lambda: client, model=lambda: settings.models.chat, context=context)
        request = ChatRequest(
            action=args.action,
            uri=path.resolve().as_uri(),
            path=context.files.relative(str(path.resolve())),
            language_id=info.name if info else "plaintext",
            text=text,
            start=start,
            end=end,
            instruction=args.instruction,
        )
        outcome = await engine.run(request, on_text=write)
    write("\n")
    if args.action not in EDIT_ACTIONS:
        return 0
    if outcome.edit is None:
        say(f"nothing to apply: {outcome.reason}")
        return 1
    if not args.apply:
        say("run again with --apply to write this into the file")
        return 0
    return _apply(path, raw, text, outcome.edit, say)


def _apply(path: Path, raw: bytes, text: str, edit: TextEdit, say: Callable[[str], None]) -> int:
    """Write the edit if the file still holds what was read (same bytes), atomically; else refuse."""
    try:
        now = path.read_bytes()
    except OSError as exc:
        raise CubeError(f"cannot read {path} again: {exc.strerror}", code="cli.file") from exc
    if hashlib.sha256(now).digest() != hashlib.sha256(raw).digest():
        say(f"not applied: {path} changed since it was read; run the action again")
        return 1
    new_text = text[: edit.start] + edit.new_text + text[edit.end :]
    mode = path.stat().st_mode & 0o7777
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".cube")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(new_text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    say(f"applied to {path}")
    return 0


def write_piece(text: str) -> None:
    """Write a piece of the streamed answer to stdout at once."""
    sys.stdout.write(text)
    sys.stdout.flush()
