"""Private Unix-domain sockets: how the built-in runtime listens and how a runtime URL names one.

The built-in runtime is reached only by the proxy in the same process or machine, so it listens on
a Unix socket that only its owner can open, not on a loopback TCP port that every local process can
reach. This module owns both directions of that:

* the URL syntax, ``unix:/absolute/path/to/runtime.sock`` (exactly one slash after ``unix:``, no
  host, query or fragment): :func:`unix_url` writes it, :func:`unix_socket_path` reads it, and
  :func:`socket_path_problem` says why a path cannot be used. HTTP requests go to the server on the
  socket with the API path appended as usual (``/api/generate``), never to the socket path itself;
* :func:`bind_private_unix`: a listening socket, mode 0600, in a directory of mode 0700 owned by us.
  The socket file is created inside that directory and chmod-ed before ``listen``, so no other user
  can connect at any moment whatever the umask. A socket file left by a runtime that died is removed
  only when nothing answers on it; anything else at that path is left alone and refused.

Linux limits a socket path to 107 bytes (``sun_path`` holds 108 with the terminating NUL); a longer
path is refused with a message naming the limit rather than silently shortened or moved elsewhere.
Errors are ``ValueError`` (a bad path) and ``OSError`` (the file system); callers translate them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from cube_stack.private_files import PrivateFileError, ensure_private_dir

__all__ = [
    "MAX_PATH_BYTES",
    "UNIX_URL_PREFIX",
    "SocketInUseError",
    "UnixListener",
    "bind_private_unix",
    "socket_path_problem",
    "unix_socket_path",
    "unix_url",
]

UNIX_URL_PREFIX = "unix:"
# sun_path is 108 bytes on Linux (104 on macOS and the BSDs), one of them the terminating NUL.
MAX_PATH_BYTES = 103 if sys.platform == "darwin" or "bsd" in sys.platform else 107


class SocketInUseError(OSError):
    """A server already answers on the socket path: another runtime is running there."""


def socket_path_problem(path: str) -> str | None:
    """Return why ``path`` cannot name a listening Unix socket, or None when it can."""
    if not path.startswith("/"):
        return f"the socket path {path!r} must be absolute"
    if "\0" in path:
        return "the socket path must not contain a NUL character"
    if path.endswith("/"):
        return f"the socket path {path!r} names a directory"
    size = len(os.fsencode(path))
    if size > MAX_PATH_BYTES:
        return (
            f"the socket path is {size} bytes long; Unix sockets allow at most {MAX_PATH_BYTES} "
            "(choose a shorter data directory)"
        )
    return None


def unix_url(path: Path | str) -> str:
    """Return the runtime URL ``unix:/path`` of the socket at absolute ``path``."""
    text = os.fspath(path)
    problem = socket_path_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return UNIX_URL_PREFIX + text


def unix_socket_path(url: str) -> str | None:
    """Return the socket path of a ``unix:/path`` URL, None for any other URL; ValueError if malformed."""
    if not url.startswith(UNIX_URL_PREFIX):
        return None
    path = url[len(UNIX_URL_PREFIX) :]
    if path.startswith("//"):
        raise ValueError(f"{url!r}: write a Unix socket as unix:/absolute/path.sock (no host part)")
    if "?" in path or "#" in path:
        raise ValueError(f"{url!r}: a Unix socket URL has no query string or fragment")
    problem = socket_path_problem(path)
    if problem is not None:
        raise ValueError(f"{url!r}: {problem}")
    return path


def bind_private_unix(path: Path, *, backlog: int = 128) -> UnixListener:
    """Return a listening Unix socket at ``path``: file 0600 in a 0700 directory owned by this user."""
    problem = socket_path_problem(os.fspath(path))
    if problem is not None:
        raise ValueError(problem)
    _private_directory(path.parent)
    _remove_if_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        # bind gave the file the mode the umask allows; the 0700 directory keeps every other user
        # out until this chmod, and nobody can connect before listen anyway.
        os.chmod(path, 0o600)
        inode = os.lstat(path).st_ino
        sock.listen(backlog)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return UnixListener(sock, path, inode)


@dataclass(frozen=True)
class UnixListener:
    """A listening Unix socket and the file it made; :meth:`close` removes that file."""

    sock: socket.socket
    path: Path
    inode: int  # of the socket file we made: close() removes no file another server made there since

    def close(self) -> None:
        """Close the socket and remove its file (if it is still ours)."""
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)


def _private_directory(directory: Path) -> None:
    """Create ``directory`` as 0700, or make an existing one of ours 0700; refuse links and anyone else's."""
    try:
        ensure_private_dir(directory, follow_links=False)
    except PrivateFileError as exc:  # callers translate OSError into their own settings error
        raise PermissionError(errno.EPERM, exc.message, str(directory)) from exc


def _remove_if_stale(path: Path) -> None:
    """Remove a socket file nobody answers on; refuse a live socket or any other kind of file."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket; it is left alone", str(path))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(os.fspath(path))
    except ConnectionRefusedError:
        pass  # a socket file whose server is gone
    except BlockingIOError:
        raise SocketInUseError(errno.EADDRINUSE, "a server listens there (queue full)", str(path)) from None
    else:
        raise SocketInUseError(errno.EADDRINUSE, "a server already listens there", str(path))
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
