"""Python distributions for the image, taken from an installed environment and checked against RECORD.

The image's Python packages are the files of installed distributions (wheels pip installed into the
build environment), so the builder needs no network and no pip. Each distribution's version must equal
the lock file's; every file listed in its ``RECORD`` is read and compared with the SHA-256 recorded there
at install time, so a package edited in the build environment stops the build. Byte-code caches are
left out (Python compiles in memory at boot; ``.pyc`` files would carry build-machine timestamps), and
so are console scripts, which live outside site-packages and would need a shell-less shebang anyway.

Which distributions: the roots the image names, then every requirement they declare for this Python
and platform, without extras unless a root names one (``pyjwt[crypto]``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import stat
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cube_stack.hal import HalError
from cube_stack.hal.image.cpio import Entry

SITE_PACKAGES = "usr/lib/python3/dist-packages"  # Debian's python3.11 reads packages from here


def find(site_packages: Path) -> dict[str, metadata.Distribution]:
    """Return the distributions installed in ``site_packages`` by canonical name."""
    if not any(site_packages.glob("*.dist-info")):
        raise HalError(
            code="hal.package_missing",
            message=f"{site_packages} holds no Python distributions: use the directory "
            "hal/scripts/prepare-image-env.sh prints",
        )
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(path=[str(site_packages)]):
        name = canonicalize_name(dist.metadata["Name"])
        found.setdefault(name, dist)
    return found


def closure(
    roots: Iterable[str],
    available: dict[str, metadata.Distribution],
    *,
    python_full_version: str | None = None,
) -> list[str]:
    """Return the canonical names of ``roots`` and everything they require, sorted.

    Markers are evaluated for the image's interpreter (``python_full_version``: Debian's 3.11.2 needs
    ``async-timeout`` for redis, the build machine's 3.11.7 does not), not for the one running the build.
    """
    environment: dict[str, str] = dict(default_environment())
    if python_full_version is not None:
        environment["python_full_version"] = python_full_version
        environment["python_version"] = ".".join(python_full_version.split(".")[:2])
    wanted: dict[str, set[str]] = {}
    queue = [Requirement(root) for root in roots]
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in wanted and extras <= wanted[name]:
            continue
        if name not in available:
            raise HalError(
                code="hal.package_missing",
                message=f"Python distribution {requirement.name} is not installed in the build environment "
                "(hal/scripts/prepare-image-env.sh installs the lock's versions)",
            )
        wanted.setdefault(name, set()).update(extras)
        for text in available[name].requires or ():
            dependency = Requirement(text)
            if dependency.marker is None:
                queue.append(dependency)
                continue
            active = ["", *sorted(wanted[name])]
            if any(dependency.marker.evaluate({**environment, "extra": extra}) for extra in active):
                queue.append(dependency)
    return sorted(wanted)


def _record_hash(file: metadata.PackagePath) -> tuple[str, bytes] | None:
    """Return ``(algorithm, digest)`` of a RECORD row, or None for rows without one (RECORD itself)."""
    if file.hash is None or not file.hash.value:
        return None
    encoded = file.hash.value
    return file.hash.mode, base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def dist_entries(dist: metadata.Distribution, *, exclude: Iterable[str] = ()) -> Iterator[Entry]:
    """Yield the distribution's files under :data:`SITE_PACKAGES`, each checked against ``RECORD``."""
    patterns = tuple(exclude)
    name = dist.metadata["Name"]
    for file in dist.files or ():
        relative = PurePosixPath(str(file))
        if relative.parts[0] == ".." or "__pycache__" in relative.parts or relative.suffix == ".pyc":
            continue
        if relative.name in ("INSTALLER", "REQUESTED", "direct_url.json"):
            continue  # how pip installed it here, not part of the package
        if any(fnmatchcase(relative.as_posix(), pattern) for pattern in patterns):
            continue
        host = Path(str(dist.locate_file(file)))
        info = host.lstat()
        if not stat.S_ISREG(info.st_mode):
            continue
        data = host.read_bytes()
        recorded = _record_hash(file)
        if recorded is not None:
            algorithm, digest = recorded
            if hashlib.new(algorithm, data).digest() != digest:
                raise HalError(
                    code="hal.package_modified",
                    message=f"{host} differs from what pip installed for {name} {dist.version}: "
                    f"reinstall it (pip install --force-reinstall {name}=={dist.version})",
                )
        mode = 0o755 if info.st_mode & 0o111 else 0o644
        yield Entry(f"{SITE_PACKAGES}/{relative}", stat.S_IFREG | mode, data)


def source_tree_entries(
    package_dir: Path, *, suffixes: Iterable[str] = (".py",), exclude: Iterable[str] = ()
) -> Iterator[Entry]:
    """Yield a package of this repository (``cube_stack``) from its source tree, sources only.

    Generated and cached directories (``__pycache__``, ``_generated``) are skipped; the files are
    the package's own sources and declared data (``suffixes``), so a stray file in the checkout
    does not end up in a measured image.
    """
    allowed = tuple(suffixes)
    patterns = tuple(exclude)
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir.parent)
        if any(part in ("__pycache__", "_generated") or part.startswith(".") for part in relative.parts):
            continue
        if any(fnmatchcase(relative.as_posix(), pattern) for pattern in patterns):
            continue
        if path.is_file() and not path.is_symlink() and path.suffix in allowed:
            yield Entry(f"{SITE_PACKAGES}/{relative.as_posix()}", stat.S_IFREG | 0o644, path.read_bytes())
