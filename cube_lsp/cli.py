"""`cube`: the command line over the same engines as the language server.

``cube complete FILE:LINE:COL`` prints the completion the editor would show at that place (LINE and
COL are 1-based and count characters, as editors display them). Exit status: 0 a completion was
printed, 1 the model had nothing to add there, 2 bad arguments or settings, 3 the proxy failed
(attestation included: nothing is sent unless the proxy attests). ``cube attest ...`` is in
:mod:`cube_lsp.cli_attest`, ``cube search ...`` in :mod:`cube_lsp.cli_search`, ``cube chat ...`` in
:mod:`cube_lsp.cli_chat`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from cube_lsp import __version__
from cube_lsp.cli_attest import ATTEST_OPTIONS, add_attest_parser, run_attest
from cube_lsp.cli_chat import add_chat_parser, run_chat, write_piece
from cube_lsp.cli_search import add_search_parser, check_search_arguments, run_search, write_line
from cube_lsp.completion.engine import CompletionEngine, CompletionInput
from cube_lsp.context import ContextSources
from cube_lsp.cube.attested import AttestationStatus, make_client_transport
from cube_lsp.cube.client import CubeClient
from cube_lsp.languages import language_for_path
from cube_lsp.settings import Models, Settings, load_settings_file, parse_settings
from cube_lsp.text_files import read_text_file
from cube_lsp.workspace_files import WorkspaceFiles
from cube_wire.errors import CubeError

EXIT_OK, EXIT_EMPTY, EXIT_USAGE, EXIT_PROXY = 0, 1, 2, 3
CLI_CONTEXT_BUDGET_S = 0.5
_LOCATION = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<col>\d+)$")


# Every option of every subcommand, by dest: (flags, add_argument keywords without a default). `cube`
# accepts each before the subcommand as well as after it, as `cube-stack` does: the top-level parser
# holds them with a None default and each subcommand with SUPPRESS, so a value given after the
# subcommand wins and one given before it is kept otherwise.
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "settings": (
        ("--settings",),
        {"metavar": "FILE", "help": "settings JSON (the cube-lsp settings contract)"},
    ),
    "endpoint": (("--endpoint",), {"help": "proxy base URL (overrides settings)"}),
    "domain": (("--domain",), {"help": "domain id (overrides settings)"}),
    "token": (("--token",), {"help": "bearer token (overrides settings and CUBE_TOKEN)"}),
    "model": (("--model",), {"help": "completion model (overrides settings)"}),
    "api": (("--api",), {"choices": ["ollama", "openai"], "help": "proxy wire format (overrides settings)"}),
    "attestation": (
        ("--attestation",),
        {"choices": ["required", "simulated", "off"], "help": "attestation mode (overrides settings)"},
    ),
    "policy": (("--policy",), {"metavar": "FILE", "help": "attestation policy JSON (overrides settings)"}),
    "language": (("--language",), {"help": "LSP languageId (default: from the file extension)"}),
} | ATTEST_OPTIONS
_COMPLETE_OPTIONS = [
    "settings",
    "endpoint",
    "domain",
    "token",
    "model",
    "api",
    "attestation",
    "policy",
    "language",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `cube`."""
    parser = argparse.ArgumentParser(prog="cube", description="Confidential AI coding assistance")
    parser.add_argument("--version", action="version", version=f"cube {__version__}")
    top = parser.add_argument_group("options of the subcommands, also accepted before the subcommand")
    for name, (flags, keywords) in OPTIONS.items():
        default = False if keywords.get("action") == "store_true" else None
        top.add_argument(*flags, dest=name, default=default, **keywords)
    parser.set_defaults(accepts=(), requires=())
    commands = parser.add_subparsers(dest="command", required=True)
    complete = commands.add_parser("complete", help="print the completion at FILE:LINE:COL")
    complete.add_argument("location", metavar="FILE:LINE:COL", help="1-based line and column")
    add_options(complete, _COMPLETE_OPTIONS)
    add_attest_parser(commands, add_options)
    add_search_parser(commands, add_options)
    add_chat_parser(commands, add_options)
    return parser


def add_options(
    parser: argparse.ArgumentParser,
    names: Sequence[str],
    required: Sequence[str] = (),
    helps: dict[str, str] | None = None,
) -> None:
    """Give a subcommand the named OPTIONS; a value given before the subcommand stays unless repeated."""
    for name in names:
        flags, keywords = OPTIONS[name]
        keywords = keywords | ({"help": helps[name]} if helps and name in helps else {})
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, **keywords)
    parser.set_defaults(accepts=tuple(names), requires=tuple(required))


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `cube`'s arguments; exit 2 on an option the subcommand does not take or one it requires."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "attest_command", None))))
    stray = [
        OPTIONS[n][0][0] for n in OPTIONS if n not in args.accepts and getattr(args, n) not in (None, False)
    ]
    if stray:
        parser.error(f"`cube {command}` does not take {', '.join(stray)}")
    missing = [OPTIONS[n][0][0] for n in args.requires if getattr(args, n) is None]
    if missing:
        parser.error(f"`cube {command}` requires {', '.join(missing)}")
    return args


def load_cli_settings(args: argparse.Namespace) -> Settings:
    """Merge --settings FILE with the flags given on the command line; raise on invalid settings."""
    if args.settings:
        settings, errors = load_settings_file(args.settings)
    else:
        settings, errors = parse_settings({})
    if errors:
        raise CubeError("; ".join(error.message for error in errors), code="settings.invalid")
    overrides: dict[str, Any] = {
        key: getattr(args, key) for key in ("endpoint", "domain", "token", "api") if getattr(args, key)
    }
    if args.model:
        overrides["models"] = replace(settings.models or Models(), completion=args.model)
    if args.attestation or args.policy:
        attestation = {"mode": args.attestation, "policy": args.policy}
        overrides["attestation"] = replace(
            settings.attestation, **{k: v for k, v in attestation.items() if v is not None}
        )
    settings = replace(settings, **overrides)
    if not settings.endpoint or not settings.domain:
        raise CubeError(
            "no proxy configured: pass --endpoint and --domain, or --settings FILE", code="settings.missing"
        )
    return settings


def parse_location(location: str) -> tuple[Path, int, int]:
    """Split FILE:LINE:COL (1-based) into a path and 0-based line and column."""
    match = _LOCATION.match(location)
    if match is None or int(match["line"]) < 1 or int(match["col"]) < 1:
        raise CubeError(f"expected FILE:LINE:COL with 1-based numbers, got {location!r}", code="cli.location")
    return Path(match["path"]), int(match["line"]) - 1, int(match["col"]) - 1


def completion_input(path: Path, line: int, column: int, language: str | None) -> CompletionInput:
    """Read the file and locate the cursor; raise CubeError with a clear message on bad input."""
    _, text = read_text_file(path, "completing")
    lines = text.split("\n")
    if line >= len(lines):
        raise CubeError(f"{path} has {len(lines)} lines; line {line + 1} does not exist", code="cli.location")
    offset = sum(len(current) + 1 for current in lines[:line]) + min(column, len(lines[line]))
    info = language_for_path(str(path))
    return CompletionInput(
        uri=path.resolve().as_uri(),
        language_id=language or (info.name if info else "plaintext"),
        path=str(path),
        text=text,
        offset=offset,
        automatic=False,
    )


async def run_complete(settings: Settings, request: CompletionInput) -> str | None:
    """Ask the proxy for one completion through the same engine the server uses."""

    def warn_simulated(status: AttestationStatus) -> None:
        if status.simulated:
            say(f"WARNING: {status.message}")

    factory = partial(make_client_transport, on_status=warn_simulated)
    # The same cross-file context as in the editor, less what only an editor has (open documents):
    # definitions of the names the file imports, read from the project around it. A one-shot command
    # starts cold (parsers, grammars), so it gets more time than the editor's per-keystroke budget.
    root = project_root(Path(request.path))
    context = ContextSources(files=WorkspaceFiles([str(root)]), budget_s=CLI_CONTEXT_BUDGET_S)
    async with CubeClient(settings, transport_factory=factory) as client:
        engine = CompletionEngine(
            client,
            settings=settings.completion,
            model=settings.models.completion,
            snippet_source=context.snippets,
        )
        result = await engine.complete(request)
        await engine.aclose()
    return result.text if result is not None else None


def project_root(path: Path) -> Path:
    """Return the project a file belongs to: the nearest folder above it holding .git, else its folder."""
    folder = path.resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def say(message: str) -> None:
    """Write one whole ``cube: ...`` line to stderr, flushed, so it never shares a line with the result."""
    sys.stderr.write(f"cube: {message}\n")
    sys.stderr.flush()


def print_result(text: str) -> None:
    """Write the result on lines of its own: stderr first flushed, then the text ending in a newline."""
    sys.stderr.flush()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


class _StderrLines(logging.Handler):
    """Write each log record as one whole ``cube: LEVEL: ...`` line, through :func:`say`."""

    def emit(self, record: logging.LogRecord) -> None:
        # The attestor logs its own verdict; `cube` reports that verdict itself, once.
        if not str(record.msg).startswith(("attestation.verified", "attestation.failed")):
            say(f"{record.levelname}: {record.getMessage()}")


def configure_logging() -> None:
    """Route library warnings to stderr as whole ``cube:`` lines, instead of logging's bare lastResort."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrLines)]:
        root.removeHandler(handler)  # main() may run more than once in one process (tests)
    root.addHandler(_StderrLines(logging.WARNING))
    root.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `cube` command line."""
    args = parse_arguments(argv)
    configure_logging()
    if args.command == "attest":
        return run_attest(args)
    if args.command == "search":
        return _main_search(args)
    if args.command == "chat":
        return _main_chat(args)
    try:
        settings = load_cli_settings(args)
        path, line, column = parse_location(args.location)
        request = completion_input(path, line, column, args.language)
    except CubeError as error:
        say(error.message)
        return EXIT_USAGE
    try:
        text = asyncio.run(run_complete(settings, request))
    except CubeError as error:
        say(f"{error.message} [{error.code}]")
        return EXIT_PROXY
    except KeyboardInterrupt:
        return 130
    if not text:
        say("no completion at this position")
        return EXIT_EMPTY
    print_result(text)
    return EXIT_OK


def _main_chat(args: argparse.Namespace) -> int:
    try:
        settings = load_cli_settings(args)
    except CubeError as error:
        say(error.message)
        return EXIT_USAGE
    try:
        return asyncio.run(run_chat(settings, args, say, write_piece, project_root))
    except CubeError as error:
        say(f"{error.message} [{error.code}]")
        return EXIT_USAGE if error.code.startswith(("cli.", "chat.bad")) else EXIT_PROXY
    except KeyboardInterrupt:
        return 130


def _main_search(args: argparse.Namespace) -> int:
    problem = check_search_arguments(args)
    if problem is not None:
        say(problem)
        return EXIT_USAGE
    try:
        settings = load_cli_settings(args)
    except CubeError as error:
        say(error.message)
        return EXIT_USAGE
    try:
        found = asyncio.run(run_search(settings, args, say, write_line))
    except CubeError as error:
        say(f"{error.message} [{error.code}]")
        return EXIT_PROXY if not error.code.startswith("cli.") else EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    if not found:
        say("no hits")
        return EXIT_EMPTY
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
