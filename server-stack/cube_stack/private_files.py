"""Owner-only files and directories for the stack's state, whatever the process umask.

The stack's data directory holds secrets: the auth database (password hashes, refresh sessions, PAT
hashes), the token signing keys, the bootstrap admin's password and a ready token (``state.json``,
``client.json``) and the SIMULATED attestation root. An outside attack run read the signing key out of
an ``auth.db`` created 0644 under the default umask inside a data directory that already existed as
0755, and forged an admin token with it. So, as ssh does with ``~/.ssh``:

* :func:`ensure_private_dir` makes a directory 0700, repairs a wider one with a warning, and refuses one
  owned by another user (it could be swapped under us);
* :func:`create_private_file` and :func:`write_private` create files 0600 from birth (``os.open`` with an
  explicit mode, then ``fchmod`` to undo a umask that widened nothing but may have narrowed it);
* :func:`secure_tree` walks a tree and repairs anything a library created with looser modes.

Errors are :class:`PrivateFileError` (a :class:`~cube_wire.errors.CubeError` with a stable code).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cube_wire.errors import CubeError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


class PrivateFileError(CubeError):
    """A directory or file holding secrets cannot be made private (wrong owner, a link, not a dir)."""


def _repaired(path: Path, old: int, new: int, *, quiet: bool = False) -> None:
    log.log(
        logging.DEBUG if quiet else logging.WARNING,
        "stack.permissions_repaired %s was %04o, now %04o: it may hold secrets, so only its owner may "
        "read it",
        path,
        old,
        new,
        extra={"event": "stack.permissions_repaired"},
    )


def _check_owner(path: Path, info: os.stat_result) -> None:
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise PrivateFileError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}); "
            "use a data directory of your own",
            code="stack.foreign_owner",
        )


def ensure_private_dir(path: Path, *, follow_links: bool = True) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or tighten an existing one to 0700.

    ``follow_links`` False refuses a symbolic link where the directory should be (for a directory whose
    path other programs are told, such as a socket's).
    """
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        if not follow_links:
            raise PrivateFileError(f"{path} is a symbolic link; refusing to use it", code="stack.link")
        info = os.stat(path)  # a link to a directory is the user's choice; the target must be private
    if not stat.S_ISDIR(info.st_mode):
        raise PrivateFileError(f"{path} is not a directory", code="stack.not_a_directory")
    _check_owner(path, info)
    mode = stat.S_IMODE(info.st_mode)
    if mode != DIR_MODE:
        os.chmod(path, DIR_MODE)
        if mode & 0o077:
            _repaired(path, mode, DIR_MODE)
    return path


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then tighten it); never follow a link."""
    ensure_private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        if os.path.islink(path):
            message = f"{path} is a symbolic link; refusing to use it"
            raise PrivateFileError(message, code="stack.link") from exc
        raise
    try:
        _tighten(path, fd)
    finally:
        os.close(fd)


def _tighten(path: Path, fd: int) -> None:
    info = os.fstat(fd)
    _check_owner(path, info)
    mode = stat.S_IMODE(info.st_mode)
    if mode != FILE_MODE:
        os.fchmod(fd, FILE_MODE)
        if mode & 0o077:
            _repaired(path, mode, FILE_MODE)


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 (created so, never widened)."""
    ensure_private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        _tighten(path, fd)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def secure_tree(root: Path, *, quiet: bool = False) -> None:
    """Make every directory under ``root`` 0700 and every file 0600 (links are left alone, not followed).

    ``quiet`` logs repairs at DEBUG: for a sweep after this process created files itself, inside a
    directory that was already private, where a looser mode exposed nothing.
    """
    ensure_private_dir(root)
    for current, dirs, files in os.walk(root):
        base = Path(current)
        for name in dirs:
            path = base / name
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                _check_owner(path, info)
                _chmod_if(path, info, DIR_MODE, quiet)
        for name in files:
            path = base / name
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                continue
            _check_owner(path, info)
            _chmod_if(path, info, FILE_MODE, quiet)


def _chmod_if(path: Path, info: os.stat_result, wanted: int, quiet: bool) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if mode == wanted:
        return
    os.chmod(path, wanted)
    if mode & 0o077:
        _repaired(path, mode, wanted, quiet=quiet)
