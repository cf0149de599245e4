"""The console scripts ``cube-lsp`` and ``cube``: say how to install the client when it is missing.

The package's base install is only the wire formats it shares with the server side (``cube_wire``); the
language server and the CLI need the ``client`` extra (pygls, tree-sitter, ...). Without it, a
traceback about a missing ``pygls`` would be the user's first sight of the product, so these entry
points import lazily and answer with the command that fixes it.
"""

from __future__ import annotations

import sys

INSTALL_HINT = "install the client: python3 -m pip install 'cube-lsp[client]'"


def _missing(program: str, error: ModuleNotFoundError) -> int:
    print(
        f"{program}: the client's dependencies are not installed ({error.name} is missing); {INSTALL_HINT}",
        file=sys.stderr,
    )
    return 2


def server() -> int:
    """Run ``cube-lsp`` (the language server over stdio)."""
    try:
        from cube_lsp.server import main
    except ModuleNotFoundError as error:
        return _missing("cube-lsp", error)
    return main()


def cli() -> int:
    """Run ``cube`` (complete, search, chat, attest)."""
    try:
        from cube_lsp.cli import main
    except ModuleNotFoundError as error:
        return _missing("cube", error)
    return main()
