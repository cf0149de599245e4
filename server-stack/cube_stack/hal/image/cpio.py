"""A deterministic ``newc`` cpio archive, the format the Linux kernel unpacks as an initramfs.

Why our own writer rather than GNU ``cpio``: reproducibility needs every header field fixed, and GNU
cpio takes inode numbers, device numbers, owners and timestamps from the build machine. Here the
archive is a pure function of the entries: paths sorted bytewise, parents before children, inode
numbers counted from 1 in that order, owner and group 0, device numbers 0, one link per entry (a hard
link is stored as a copy) and every timestamp set to the one ``mtime`` given (``SOURCE_DATE_EPOCH``).
The format is the kernel's (``Documentation/driver-api/early-userspace/buffer-format.rst``): a
110-byte ASCII header ``070701`` + 13 eight-digit hex fields, the NUL-terminated name padded to a
multiple of four, the data padded to four, and a ``TRAILER!!!`` entry at the end.

The compressed initramfs is gzip with the header's time and name left empty, so compressing the same
archive with the same zlib always gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One file system object of the image: a regular file, a directory, a symbolic link or a device node."""

    path: str  # relative, no leading "/" ("usr/bin/python3.11"); the archive root is ""
    mode: int  # full st_mode: file type bits and permissions
    data: bytes = b""  # file contents, or the target of a symbolic link
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node

    def __post_init__(self) -> None:
        """Refuse paths the kernel would unpack somewhere unexpected."""
        parts = self.path.split("/")
        if not self.path or self.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad archive path {self.path!r}: relative, normalised, no '..'")
        if stat.S_ISDIR(self.mode) and self.data:
            raise ValueError(f"directory {self.path!r} cannot carry data")

    @property
    def kind(self) -> str:
        """Return ``file``, ``dir``, ``symlink`` or ``device``."""
        if stat.S_ISDIR(self.mode):
            return "dir"
        if stat.S_ISLNK(self.mode):
            return "symlink"
        if stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode):
            return "device"
        return "file"


def _header(ino: int, entry: Entry, name: bytes, mtime: int) -> bytes:
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        2 if stat.S_ISDIR(entry.mode) else 1,  # nlink
        mtime,
        len(entry.data),
        0,  # devmajor
        0,  # devminor
        entry.rdev[0],
        entry.rdev[1],
        len(name) + 1,  # namesize, with the NUL
        0,  # check (only for the 070702 format)
    )
    return MAGIC + b"".join(b"%08X" % value for value in fields)


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def sorted_with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Return the entries sorted bytewise by path, adding a 0755 directory for every missing parent.

    Refuses two entries for one path, so a build whose sources overlap stops instead of letting the
    later one win silently.
    """
    by_path: dict[str, Entry] = {}
    for entry in entries:
        if entry.path in by_path:
            raise ValueError(f"two entries for {entry.path!r}")
        by_path[entry.path] = entry
    for path in list(by_path):
        parent = path.rpartition("/")[0]
        while parent and parent not in by_path:
            by_path[parent] = Entry(parent, stat.S_IFDIR | 0o755)
            parent = parent.rpartition("/")[0]
    for path in by_path:
        parent = path.rpartition("/")[0]
        if parent and by_path[parent].kind != "dir":
            raise ValueError(f"{path!r} is inside {parent!r}, which is not a directory")
    return [by_path[path] for path in sorted(by_path, key=lambda p: p.encode())]


def write_cpio(entries: Iterable[Entry], out: BinaryIO, *, mtime: int) -> None:
    """Write ``entries`` (with missing parents added, sorted) as a newc archive to ``out``."""
    if mtime < 0 or mtime > 0xFFFFFFFF:
        raise ValueError(f"mtime {mtime} does not fit the newc header")
    ino = 0
    for ino, entry in enumerate(sorted_with_parents(entries), start=1):
        name = entry.path.encode()
        head = _header(ino, entry, name, mtime) + name + b"\0"
        out.write(head + _pad4(len(head)))
        out.write(entry.data + _pad4(len(entry.data)))
    trailer = Entry(TRAILER, stat.S_IFREG)
    head = _header(0, trailer, TRAILER.encode(), 0) + TRAILER.encode() + b"\0"
    out.write(head + _pad4(len(head)))


def gzip_bytes(data: bytes, *, level: int = 9) -> bytes:
    """Return ``data`` gzip-compressed with an empty name and a zero time in the header."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=buffer, mtime=0) as stream:
        stream.write(data)
    return buffer.getvalue()


def read_cpio(data: bytes) -> list[tuple[str, int, int, bytes]]:
    """Return ``(path, mode, mtime, data)`` per entry of a newc archive (for tests and ``hal inspect``)."""
    entries: list[tuple[str, int, int, bytes]] = []
    offset = 0
    while True:
        if data[offset : offset + 6] != MAGIC:
            raise ValueError(f"no newc header at offset {offset}")
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, mtime, size, namesize = fields[1], fields[5], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        if name == TRAILER:
            return entries
        entries.append((name, mode, mtime, data[data_start : data_start + size]))
        offset = data_start + size + (-size % 4)
