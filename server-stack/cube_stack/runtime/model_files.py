"""Serve only the model files the image lists: hash each one while copying it into private memory.

Models are not inside the measured CVM image (they are large and change more often); the image holds a
list of the SHA-256 of every model it may serve (``sha256sum`` format), and the runtime refuses any
other file before loading it. Hashing a file and then letting llama.cpp open it by path would leave a
window in which the host, who controls the disk the file is on, could swap its contents; so the file is
copied into an anonymous in-memory file (``memfd_create``: the guest's encrypted memory) while it is
hashed, and llama.cpp loads that copy through ``/proc/self/fd/N``. What was hashed is what is served.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO

from cube_stack.runtime.errors import ModelRuntimeError, RuntimeSettingsError

__all__ = ["ModelNotAllowedError", "PinnedModel", "load_model_hashes", "pin_model", "pin_stream"]

_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(.+)$")
_CHUNK = 1 << 20


class ModelNotAllowedError(ModelRuntimeError):
    """A model file's SHA-256 is not in the image's list of model hashes (raised at start-up)."""

    code = "runtime.model_not_allowed"


def load_model_hashes(path: Path) -> frozenset[str]:
    """Read a ``sha256sum``-style list (``<64 hex>  <name>`` lines, ``#`` comments); raise if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeSettingsError("model_hashes", f"{path} cannot be read ({exc})") from None
    hashes: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise RuntimeSettingsError(
                "model_hashes", f"{path} line {number}: found {line[:80]!r}, wanted '<64 hex>  <file name>'"
            )
        hashes.add(match[1].lower())
    if not hashes:
        raise RuntimeSettingsError(
            "model_hashes", f"{path} lists no model hash: the runtime could serve nothing"
        )
    return frozenset(hashes)


class PinnedModel:
    """A verified in-memory copy of a model file; :attr:`path` stays valid until :meth:`close`."""

    def __init__(self, fd: int, digest: str) -> None:
        self._fd = fd
        self.digest = digest

    @property
    def path(self) -> Path:
        """Return the ``/proc/self/fd`` path llama.cpp opens the copy by."""
        return Path(f"/proc/self/fd/{self._fd}")

    def close(self) -> None:
        """Free the copy (the model loaded from it keeps its own mapping)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def pin_model(path: Path, allowed: frozenset[str]) -> PinnedModel:
    """Copy ``path`` into private memory while hashing it; refuse it unless its SHA-256 is allowed."""
    with path.open("rb") as source:
        return pin_stream(source, str(path), allowed)


def pin_stream(source: BinaryIO, label: str, allowed: frozenset[str]) -> PinnedModel:
    """Copy ``source`` to its end into private memory while hashing it; refuse it unless allowed.

    ``label`` names it in the error (a path, or ``archive:member``). A stream is enough: a model read
    straight from the config disk's tar is held once, in the memfd, never also in a temporary file.
    """
    digest = hashlib.sha256()
    copy = os.memfd_create(f"cube-model-{Path(label).name}"[:200], os.MFD_CLOEXEC)
    try:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(copy, view) :]
        found = digest.hexdigest()
        if found not in allowed:
            raise ModelNotAllowedError(
                f"model file {label}: SHA-256 {found} is not in the image's list of model hashes; "
                "refusing to serve it (add its hash to the image's list, or use the file that is listed)"
            )
        os.lseek(copy, 0, os.SEEK_SET)
        # Not to be written again: llama.cpp maps it, and a later write would change what is served.
        return PinnedModel(copy, found)
    except BaseException:
        os.close(copy)
        raise
