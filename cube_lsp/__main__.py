"""`python -m cube_lsp` runs the language server over stdio."""

import sys

from cube_lsp.server import main

# Guarded: the search indexer's worker processes are spawned, and spawning re-runs a main script that
# was started by its path (`python cube_lsp/__main__.py`); unguarded, each worker would start a server.
if __name__ == "__main__":
    sys.exit(main())
