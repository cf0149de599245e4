"""cube-stack: the server side of cube-lsp (proxy, SuperMQ-compatible auth, runtimes, in-CVM agent)."""

__version__ = "0.1.0"
