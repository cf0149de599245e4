"""Tar archives as a host writes a CVM's config disk: members and links, for hostile-input tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def write_tar(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    """Write an uncompressed tar of ``members`` (name -> bytes) and symbolic ``links`` (name -> target)."""
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path
