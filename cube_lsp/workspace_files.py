"""Read workspace files for completion context, and nothing outside the workspace.

Definitions of imported names may live in files the editor has not opened. Reading them is allowed
only below a workspace folder the client announced, never through a symlink out of it, only for
regular files up to a size limit, and only as UTF-8 text: everything read may end up in a prompt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

MAX_FILE_BYTES = 512 * 1024


class WorkspaceFiles:
    """A reader confined to the workspace folders."""

    def __init__(self, roots: Iterable[str] = ()) -> None:
        self.roots = [Path(root).resolve() for root in roots]

    def read(self, path: str) -> str | None:
        """Return the text of ``path`` when it is a small UTF-8 file inside a workspace folder."""
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not any(resolved.is_relative_to(root) for root in self.roots):
            return None
        try:
            stat = resolved.stat()
            if not os.path.isfile(resolved) or stat.st_size > MAX_FILE_BYTES:
                return None
            data = resolved.read_bytes()
        except OSError:
            return None
        if b"\x00" in data[:8192]:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def relative(self, path: str) -> str:
        """Return ``path`` relative to the workspace folder holding it (shown to the model)."""
        candidate = Path(path)
        for root in self.roots:
            if candidate.is_relative_to(root):
                return candidate.relative_to(root).as_posix()
        return candidate.name
