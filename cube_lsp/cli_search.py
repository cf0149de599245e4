"""`cube search`: semantic search of a workspace from the command line, over the server's engine.

``cube search "QUERY" [--root DIR] [--settings F] [--json] [--limit N]`` indexes DIR on first use
(a progress bar on stderr; later runs update only what changed) and prints ``path:line  symbol  score``
lines, best first. ``--batch FILE --json`` runs one query per line of FILE and prints one JSON array
per line, in query order, each hit ``{"path", "start_line", "end_line", "symbol", "score"}`` (1-based
lines, paths relative to DIR): the evaluation format of ``bench/search_quality.py``.

Embeddings go through the attested proxy client, like completions: a proxy that does not attest gets
nothing, not even the query. Exit status: 0 hits printed, 1 no hits, 2 bad arguments or settings,
3 the proxy failed (attestation included).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cube_lsp.cube.attested import AttestationStatus, make_client_transport
from cube_lsp.cube.client import CubeClient
from cube_lsp.search.engine import IndexProgress, WorkspaceSearch
from cube_lsp.search.types import Hit
from cube_lsp.settings import Settings
from cube_wire.errors import CubeError

SEARCH_OPTIONS = ["settings", "endpoint", "domain", "token", "api", "attestation", "policy"]
DEFAULT_LIMIT = 10


def add_search_parser(commands: Any, add_options: Callable[..., None]) -> None:
    """Add `cube search` to the subcommands."""
    search = commands.add_parser("search", help="semantic search of a workspace")
    search.add_argument("query", nargs="?", help="what to look for, in words or identifiers")
    search.add_argument("--root", type=Path, default=Path("."), help="workspace root (default: .)")
    search.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="hits per query (default: 10)")
    search.add_argument("--json", action="store_true", dest="search_json", help="print JSON")
    search.add_argument("--batch", type=Path, metavar="FILE", help="one query per line; needs --json")
    search.add_argument("--path", dest="path_glob", metavar="GLOB", help="only paths matching GLOB")
    search.add_argument(
        "--lang", action="append", dest="languages", metavar="ID", help="only this language (repeatable)"
    )
    add_options(search, SEARCH_OPTIONS)


def check_search_arguments(args: argparse.Namespace) -> str | None:
    """Return why the arguments are unusable, or None."""
    if args.batch is None and not args.query:
        return "give a QUERY, or --batch FILE --json"
    if args.batch is not None and args.query:
        return "give a QUERY or --batch FILE, not both"
    if args.batch is not None and not args.search_json:
        return "--batch prints JSON: add --json"
    if args.limit < 1:
        return "--limit must be at least 1"
    if not args.root.is_dir():
        return f"--root {args.root}: not a directory"
    return None


def hit_json(hit: Hit) -> dict[str, Any]:
    """One hit in the batch format."""
    return {
        "path": hit.path,
        "start_line": hit.start_line,
        "end_line": hit.end_line,
        "symbol": hit.symbol,
        "score": round(hit.score, 6),
    }


def hit_line(hit: Hit) -> str:
    """One hit as ``path:line  symbol  score``."""
    return f"{hit.path}:{hit.start_line}  {hit.symbol or '-'}  {hit.score:.4f}"


async def run_search(
    settings: Settings,
    args: argparse.Namespace,
    say: Callable[[str], None],
    write: Callable[[str], None],
) -> int:
    """Index (or update) the root, run the queries and write the results; return the number of hits."""

    def warn_simulated(status: AttestationStatus) -> None:
        if status.simulated:
            say(f"WARNING: {status.message}")

    queries = _queries(args)
    factory = partial(make_client_transport, on_status=warn_simulated)
    async with CubeClient(settings, transport_factory=factory) as client:
        model = settings.models.embedding
        embed = partial(client.embed, model=model) if model else None
        if model is None:
            say("no embedding model configured (`models.embedding`): lexical search only")
        search = WorkspaceSearch(args.root, embed=embed, model=model)
        try:
            with _progress_bar() as show:
                report = await search.update(show)
            if report.skipped:
                skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items()))
                say(f"indexed {report.files_seen} files; skipped {skipped}")
            found = 0
            filters = {"path_glob": args.path_glob, "languages": args.languages}
            for hits in await search.search_many(queries, limit=args.limit, **filters):
                found += len(hits)
                if args.search_json:
                    write(json.dumps([hit_json(hit) for hit in hits]))
                else:
                    for hit in hits:
                        write(hit_line(hit))
            return found
        finally:
            await search.aclose()


def _queries(args: argparse.Namespace) -> list[str]:
    if args.batch is None:
        return [args.query]
    try:
        text = args.batch.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CubeError(f"cannot read --batch {args.batch}: {exc}", code="cli.file") from exc
    return text.splitlines()


class _progress_bar:
    """A progress bar on stderr for indexing; it shows nothing when stderr is not a terminal."""

    def __init__(self) -> None:
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("cube: {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> Callable[[IndexProgress], None]:
        self._progress.start()
        return self._show

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def _show(self, progress: IndexProgress) -> None:
        if progress.phase == "embedding":
            description, done, total = "embedding chunks", progress.chunks_embedded, progress.chunks_to_embed
        else:
            description, done, total = f"{progress.phase} files", progress.files_done, progress.files_total
        if self._task is None:
            self._task = self._progress.add_task(description, total=total or None)
        self._progress.update(self._task, description=description, completed=done, total=total or None)


def write_line(text: str) -> None:
    """Write one result line to stdout, flushed (a batch consumer reads line by line)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


__all__ = ["add_search_parser", "check_search_arguments", "run_search", "write_line"]
