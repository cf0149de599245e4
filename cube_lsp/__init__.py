"""cube-lsp: confidential AI coding assistance over LSP.

The language server, the CLI and the engines they share (completion, proxy client, attestation).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
