"""Files of installed Debian packages, checked against dpkg's own records, as image entries.

The image is assembled from packages already installed on the build machine (the builder never
downloads): ``dpkg-query`` gives the installed version, which must equal the lock file's, and
``/var/lib/dpkg/info/<package>.list`` the files. Every regular file is read and compared with the MD5
that dpkg recorded when it unpacked the package (``.md5sums``), so a library modified on the build
machine after installation stops the build instead of entering a measured image. (MD5 is what dpkg
records; the image itself is identified by SHA-256, and the package version pins the upstream bytes.)

Paths are mapped onto a merged ``/usr``: Debian 12 packages may still list ``/lib/...`` or ``/bin/...``;
the image has ``lib -> usr/lib`` style links and stores the file once, under ``usr/``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from cube_stack.hal import HalError
from cube_stack.hal.image.cpio import Entry

DPKG_INFO = Path("/var/lib/dpkg/info")
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class DebianPackage:
    """One installed package: name, version and where dpkg keeps its file list and checksums."""

    name: str
    version: str
    list_file: Path
    md5sums_file: Path | None


def installed(name: str, *, info_dir: Path = DPKG_INFO) -> DebianPackage:
    """Return the installed package ``name``, or raise ``hal.package_missing``."""
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}\t${db:Status-Status}", name],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise HalError(
            code="hal.package_missing", message="dpkg-query is not installed: the image is built on Debian"
        ) from exc
    version, _, status = result.stdout.partition("\t")
    if result.returncode != 0 or status.strip() != "installed":
        raise HalError(
            code="hal.package_missing",
            message=f"Debian package {name} is not installed: apt-get install {name}",
        )
    for suffix in (f"{name}.list", f"{name}:amd64.list"):
        list_file = info_dir / suffix
        if list_file.is_file():
            md5 = list_file.with_suffix(".md5sums")
            return DebianPackage(name, version.strip(), list_file, md5 if md5.is_file() else None)
    raise HalError(code="hal.package_missing", message=f"dpkg has no file list for {name} in {info_dir}")


def image_path(dpkg_path: str) -> str:
    """Return the merged-/usr path in the image (no leading slash) of a path dpkg lists."""
    path = dpkg_path.lstrip("/")
    top, _, rest = path.partition("/")
    if top in MERGED_USR:
        return f"usr/{top}/{rest}" if rest else f"usr/{top}"
    return path


def _md5sums(package: DebianPackage) -> dict[str, str]:
    if package.md5sums_file is None:
        return {}
    sums: dict[str, str] = {}
    for line in package.md5sums_file.read_text().splitlines():
        digest, _, path = line.partition("  ")
        if path:
            sums[image_path(path)] = digest
    return sums


def package_entries(
    package: DebianPackage, *, exclude: Iterable[str] = (), root: Path = Path("/")
) -> Iterator[Entry]:
    """Yield the package's files and links (not its directories), checked against dpkg's MD5s.

    ``exclude`` holds glob patterns over image paths (``usr/share/doc/*``). Set-user-ID and
    set-group-ID bits are dropped: nothing in the image runs as anyone but root.
    """
    patterns = tuple(exclude)
    sums = _md5sums(package)
    for line in package.list_file.read_text().splitlines():
        if not line or line in ("/.", "/") or line.strip("/") in MERGED_USR:
            continue  # the root itself, or a merged-/usr link the image makes on its own
        path = image_path(line)
        if any(fnmatchcase(path, pattern) for pattern in patterns):
            continue
        host = root / line.lstrip("/")
        try:
            info = host.lstat()
        except FileNotFoundError:
            continue  # a conffile the admin removed, or a path diverted away: not part of the image
        if stat.S_ISDIR(info.st_mode):
            continue
        if stat.S_ISLNK(info.st_mode):
            yield Entry(path, stat.S_IFLNK | 0o777, os.readlink(host).encode())
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        data = _verified(package, host, host.read_bytes(), sums.get(path))
        yield Entry(path, stat.S_IFREG | (info.st_mode & 0o755), data)


def read_verified(package: DebianPackage, dpkg_path: str, *, root: Path = Path("/")) -> bytes:
    """Return one file of ``package`` (a path as dpkg lists it), checked against dpkg's MD5 of it."""
    host = root / dpkg_path.lstrip("/")
    return _verified(package, host, host.read_bytes(), _md5sums(package).get(image_path(dpkg_path)))


def _verified(package: DebianPackage, host: Path, data: bytes, expected: str | None) -> bytes:
    if expected is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() != expected:
        raise HalError(
            code="hal.package_modified",
            message=f"{host} differs from what dpkg installed for {package.name} {package.version}: "
            f"reinstall it (apt-get install --reinstall {package.name})",
        )
    return data


def merged_usr_links() -> list[Entry]:
    """Return ``bin -> usr/bin`` and the other merged-/usr links Debian 12 has at the root."""
    return [
        Entry(top, stat.S_IFLNK | 0o777, f"usr/{top}".encode()) for top in ("bin", "sbin", "lib", "lib64")
    ]
