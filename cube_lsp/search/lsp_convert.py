"""Search hits in LSP shapes: ``cube/search`` items, ``workspace/symbol`` entries, ``$/progress`` values.

Pure: paths are made URIs against the workspace root; lines stay as the index keeps them (1-based,
inclusive) in ``cube/search`` items, and become LSP ranges (0-based, end exclusive at the start of the
next line) where LSP wants a Range.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsprotocol import types

from cube_lsp.search.types import Hit
from cube_wire.errors import CubeError

__all__ = ["SEARCH_REQUEST", "SearchParams", "parse_search_params", "search_items", "workspace_symbols"]

SEARCH_REQUEST = "cube/search"
MAX_LIMIT = 200
MAX_QUERY_CHARS = 100_000  # a longer query is refused as bad params (a pasted file is fine below it)


class SearchParams:
    """The params of ``cube/search``, validated."""

    def __init__(self, query: str, limit: int, path_glob: str | None, languages: list[str] | None) -> None:
        self.query = query
        self.limit = limit
        self.path_glob = path_glob
        self.languages = languages


def parse_search_params(params: Any) -> SearchParams:
    """Validate ``{"query", "limit"?, "pathGlob"?, "languages"?}``; raise CubeError naming the bad field."""
    if hasattr(params, "_asdict"):
        params = params._asdict()
    if not isinstance(params, Mapping):
        raise CubeError("cube/search: params must be an object with a `query`", code="search.bad_params")
    query = params.get("query")
    if not isinstance(query, str):
        raise CubeError("cube/search: `query` must be a string", code="search.bad_params")
    if len(query) > MAX_QUERY_CHARS:
        raise CubeError(
            f"cube/search: `query` is longer than {MAX_QUERY_CHARS} characters", code="search.bad_params"
        )
    limit = params.get("limit", 20)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise CubeError(f"cube/search: `limit` must be an integer 1..{MAX_LIMIT}", code="search.bad_params")
    glob = params.get("pathGlob")
    if glob is not None and not isinstance(glob, str):
        raise CubeError("cube/search: `pathGlob` must be a string", code="search.bad_params")
    languages = params.get("languages")
    if languages is not None and (
        not isinstance(languages, list) or not all(isinstance(x, str) for x in languages)
    ):
        raise CubeError("cube/search: `languages` must be a list of strings", code="search.bad_params")
    return SearchParams(query, limit, glob or None, languages or None)


def _range(hit: Hit) -> types.Range:
    return types.Range(types.Position(hit.start_line - 1, 0), types.Position(hit.end_line, 0))


def search_items(hits: list[Hit], root: Path) -> dict[str, Any]:
    """Return the result of ``cube/search``: ranked locations with score, symbol and snippet."""
    return {
        "items": [
            {
                "uri": (root / hit.path).as_uri(),
                "path": hit.path,
                "startLine": hit.start_line,
                "endLine": hit.end_line,
                "range": {
                    "start": {"line": hit.start_line - 1, "character": 0},
                    "end": {"line": hit.end_line, "character": 0},
                },
                "symbol": hit.symbol,
                "score": round(hit.score, 6),
                "snippet": hit.snippet,
            }
            for hit in hits
        ]
    }


def workspace_symbols(hits: list[Hit], root: Path) -> list[types.SymbolInformation]:
    """``workspace/symbol`` entries for hits naming a symbol (``Class.method``: ``method`` in ``Class``)."""
    symbols = []
    for hit in hits:
        if not hit.symbol:
            continue
        container, _, name = hit.symbol.rpartition(".")
        kind = types.SymbolKind.Method if container else types.SymbolKind.Function
        symbols.append(
            types.SymbolInformation(
                name=name,
                kind=kind,
                location=types.Location(uri=(root / hit.path).as_uri(), range=_range(hit)),
                container_name=container or None,
            )
        )
    return symbols
