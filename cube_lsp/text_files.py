"""Reading a source file named on the command line: bytes and text, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

from cube_wire.errors import CubeError

__all__ = ["read_text_file"]

BINARY_PROBE = 8192  # a NUL in the first bytes marks a binary file


def read_text_file(path: Path, doing: str) -> tuple[bytes, str]:
    """Return the file's bytes and its UTF-8 text; raise CubeError (``cli.*``) saying why not.

    ``doing`` completes "not ... it" in the refusal of a binary file (e.g. "completing").
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CubeError(f"cannot read {path}: {exc.strerror}", code="cli.file") from exc
    if b"\x00" in data[:BINARY_PROBE]:
        raise CubeError(f"{path} looks binary; not {doing} it", code="cli.binary")
    try:
        return data, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CubeError(f"{path} is not UTF-8 (byte {exc.start})", code="cli.encoding") from exc
