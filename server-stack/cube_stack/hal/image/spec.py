"""What the CVM image holds (``hal/image.toml``) and the exact versions it is built from (``image.lock``).

The two files are the build's inputs besides the build machine's installed packages: the spec names
Debian packages, Python distributions (roots; their requirements follow), this repository's packages,
kernel modules and the model hash list; the lock pins every Debian package version, every Python
distribution version, the kernel release and ``SOURCE_DATE_EPOCH``. The builder refuses to build when
an installed version differs from the lock (``hal.lock_mismatch``), so the same lock on two machines
means the same inputs, and ``cube-stack hal lock`` writes a new lock from the build environment when
the versions are meant to change (an image rotation).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cube_stack.hal import HalError

SPEC_VERSION = 1


class ImageSpecError(HalError):
    """``image.toml`` or ``image.lock`` is malformed; the message names the key."""

    code = "hal.image_spec_invalid"


@dataclass(frozen=True)
class ImageSpec:
    """The contents of ``hal/image.toml``; paths are absolute."""

    debian_packages: tuple[str, ...]
    debian_exclude: tuple[str, ...]
    executables: tuple[str, ...]  # image paths under bin/sbin directories that stay (the interpreter)
    python_roots: tuple[str, ...]
    python_exclude: tuple[str, ...]
    repo_packages: tuple[str, ...]  # this repository's packages, from the source tree
    repo_exclude: tuple[str, ...]  # globs over their files (package-relative: "cube_stack/hal/*")
    repo_root: Path
    kernel_modules: tuple[str, ...]
    model_hashes: Path


@dataclass(frozen=True)
class ImageLock:
    """The contents of ``hal/image.lock``."""

    source_date_epoch: int
    kernel_release: str
    debian: Mapping[str, str]  # package -> version
    python: Mapping[str, str]  # canonical distribution name -> version


def _strings(table: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ImageSpecError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(value)


def _table(data: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ImageSpecError(f"{where}: '[{key}]' must be a table")
    return value


def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ImageSpecError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ImageSpecError(f"{path}: not TOML ({exc})") from None


def load_spec(path: Path) -> ImageSpec:
    """Read ``image.toml``; relative paths are relative to its directory, ``repo_root`` included."""
    data = _read_toml(path)
    where = str(path)
    if data.get("version") != SPEC_VERSION:
        raise ImageSpecError(f"{where}: 'version' must be {SPEC_VERSION}")
    known = {"version", "repo_root", "model_hashes", "debian", "python", "kernel"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ImageSpecError(f"{where}: unknown key '{unknown[0]}'")
    debian = _table(data, "debian", where)
    python = _table(data, "python", where)
    kernel = _table(data, "kernel", where)
    base = path.parent
    model_hashes = data.get("model_hashes")
    if not isinstance(model_hashes, str):
        raise ImageSpecError(f"{where}: 'model_hashes' must name the sha256sum-format list of allowed models")
    return ImageSpec(
        debian_packages=_strings(debian, "packages", where),
        debian_exclude=_strings(debian, "exclude", where),
        executables=_strings(debian, "executables", where),
        python_roots=_strings(python, "roots", where),
        python_exclude=_strings(python, "exclude", where),
        repo_packages=_strings(python, "repo_packages", where),
        repo_exclude=_strings(python, "repo_exclude", where),
        repo_root=(base / str(data.get("repo_root", ".."))).resolve(),
        kernel_modules=_strings(kernel, "modules", where),
        model_hashes=(base / model_hashes).resolve(),
    )


def load_lock(path: Path) -> ImageLock:
    """Read ``image.lock``."""
    data = _read_toml(path)
    where = str(path)
    epoch = data.get("source_date_epoch")
    release = data.get("kernel_release")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= 0xFFFFFFFF:
        raise ImageSpecError(f"{where}: 'source_date_epoch' must be a Unix time")
    if not isinstance(release, str) or not release:
        raise ImageSpecError(f"{where}: 'kernel_release' must name the kernel (uname -r)")
    tables: dict[str, dict[str, str]] = {}
    for key in ("debian", "python"):
        table = _table(data, key, where)
        if not all(isinstance(v, str) and v for v in table.values()):
            raise ImageSpecError(f"{where}: every version in '[{key}]' must be a non-empty string")
        tables[key] = {str(k): str(v) for k, v in table.items()}
    return ImageLock(epoch, release, tables["debian"], tables["python"])


def render_lock(lock: ImageLock) -> str:
    """Return ``image.lock``'s text for ``lock`` (sorted, so a diff shows exactly what changed)."""
    lines = [
        "# The CVM image's exact inputs: written by `cube-stack hal lock`, read by `cube-stack hal build`.",
        "# The build refuses an installed version that differs from this file (hal.lock_mismatch).",
        f"source_date_epoch = {lock.source_date_epoch}",
        f'kernel_release = "{lock.kernel_release}"',
        "",
        "[debian]",
        *(f'"{name}" = "{version}"' for name, version in sorted(lock.debian.items())),
        "",
        "[python]",
        *(f'"{name}" = "{version}"' for name, version in sorted(lock.python.items())),
        "",
    ]
    return "\n".join(lines)
