"""Ollama-style model names: ``name[:tag]``, with ``:latest`` implied, compared case-insensitively.

Bridges the names clients send (``qwen2.5-coder``, ``cube-demo:random``, ``library/all-minilm:l6-v2``)
and the keys of the runtime's model table, so that ``cube-demo`` and ``cube-demo:latest`` are one model.
"""

from __future__ import annotations

import re

from cube_stack.runtime.errors import BadRequestError

DEFAULT_TAG = "latest"

# Ollama allows letters, digits, '_', '-', '.', '/' (namespaces) in names and tags; ':' separates the tag.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*(?::[A-Za-z0-9_][A-Za-z0-9_.\-]*)?")


def normalize_model_name(name: str) -> str:
    """Return ``name`` lower-cased with ``:latest`` added when it has no tag; 400 when malformed."""
    candidate = name.strip()
    if len(candidate) > 256 or not _NAME.fullmatch(candidate):
        raise BadRequestError(f"model name {name[:80]!r} is not of the form name[:tag]")
    if ":" not in candidate.rsplit("/", 1)[-1]:
        candidate = f"{candidate}:{DEFAULT_TAG}"
    return candidate.lower()
