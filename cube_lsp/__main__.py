"""`python -m cube_lsp` runs the language server over stdio."""

import sys

from cube_lsp.server import main

sys.exit(main())
