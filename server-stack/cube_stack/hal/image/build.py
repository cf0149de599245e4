"""Build the CVM image's initramfs, the root file system the kernel boots from memory, reproducibly.

Inputs, and nothing else: ``hal/image.toml`` (what goes in), ``hal/image.lock`` (exact versions and
``SOURCE_DATE_EPOCH``), the Debian packages and kernel installed on the build machine, a Python
environment's site-packages, this repository's ``cube_stack`` and ``cube_wire`` sources, and the list of
allowed model hashes. Every input file is checked against what dpkg or pip recorded when it was
installed. The output is a pure function of those bytes: the archive is written by
:mod:`~cube_stack.hal.image.cpio` (sorted, fixed owners, inodes and times) and compressed with a fixed
gzip header, so a third party with the same lock gets the same SHA-256, and the manifest written next to
it (one ``sha256 mode path`` line per entry) shows which file differs when they do not.

What the image holds: ``/init`` (:mod:`~cube_stack.hal.image.guest_init`), Debian's Python 3.11 and the
shared libraries it and the packages need, the proxy, the attestation agent, the model runtime
(llama.cpp) with their Python dependencies, the ``auth.v1`` gRPC stubs generated at build time, the
kernel modules an SNP guest needs (``sev-guest``, virtio), ``/etc/cube/model-hashes``, and a few
``/etc`` files. Not in it: a shell, getty, login, SSH, a package manager, a root password, compilers,
model weights, torch.
"""

from __future__ import annotations

import hashlib
import json
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cube_stack.hal import HalError
from cube_stack.hal.image import debian, pydists
from cube_stack.hal.image.cpio import Entry, gzip_bytes, sorted_with_parents, write_cpio
from cube_stack.hal.image.spec import ImageLock, ImageSpec

MODULES_ROOT = Path("/lib/modules")
BOOT = Path("/boot")
BIN_DIRS = ("usr/bin/", "usr/sbin/", "usr/libexec/", "usr/games/")
IMAGE_INFO = "etc/cube/image.json"
IMAGE_PYTHON_PACKAGE = "python3.11-minimal"  # the interpreter the image runs


class LockMismatchError(HalError):
    """An installed input's version is not the locked one."""

    code = "hal.lock_mismatch"


@dataclass(frozen=True)
class BuildResult:
    """Where the build wrote its outputs and what they measure."""

    initramfs: Path
    kernel: Path
    manifest: Path
    sha256: str
    size: int  # compressed bytes
    uncompressed_size: int
    entries: int


def _file(path: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(path, stat.S_IFREG | mode, data)


def _modules_in_order(release: str, names: Iterable[str], root: Path = MODULES_ROOT) -> list[str]:
    """Return the ``.ko`` paths (relative to the release directory) for ``names``, dependencies first."""
    base = root / release
    try:
        lines = (base / "modules.dep").read_text().splitlines()
    except OSError as exc:
        raise HalError(
            f"no modules.dep for kernel {release} under {root}: apt-get install linux-image-{release}",
            code="hal.kernel_missing",
        ) from exc
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in lines:
        module, _, rest = line.partition(":")
        deps[module] = rest.split()
        by_name[Path(module).name.split(".ko")[0].replace("-", "_")] = module
    ordered: list[str] = []

    def visit(module: str) -> None:
        if module in ordered:
            return
        for dependency in reversed(deps.get(module, [])):
            visit(dependency)
        ordered.append(module)

    for name in names:
        module = by_name.get(name.replace("-", "_"))
        if module is None:
            raise HalError(f"kernel {release} has no module {name}", code="hal.kernel_missing")
        visit(module)
    return ordered


def kernel_entries(release: str, names: Iterable[str]) -> list[Entry]:
    """Return the modules and ``/etc/cube/modules`` (their absolute paths in load order).

    Each module is checked against the MD5 dpkg recorded for the kernel's package, like every other
    file of the image.
    """
    package = debian.installed(f"linux-image-{release}")
    entries: list[Entry] = []
    paths: list[str] = []
    for module in _modules_in_order(release, names):
        image_path = f"usr/lib/modules/{release}/{module}"
        data = debian.read_verified(package, f"{MODULES_ROOT}/{release}/{module}")
        entries.append(_file(image_path, data))
        paths.append(f"/{image_path}")
    entries.append(_file("etc/cube/modules", ("\n".join(paths) + "\n").encode()))
    return entries


def kernel_image(release: str, out: Path) -> None:
    """Copy the kernel for ``release`` from /boot to ``out``, checked against its package's dpkg MD5."""
    package = debian.installed(f"linux-image-{release}")
    out.write_bytes(debian.read_verified(package, str(BOOT / f"vmlinuz-{release}")))


def check_debian_lock(spec: ImageSpec, lock: ImageLock) -> list[debian.DebianPackage]:
    """Return the spec's installed Debian packages, refusing any whose version is not the locked one."""
    packages = []
    for name in spec.debian_packages:
        package = debian.installed(name)
        locked = lock.debian.get(name)
        if locked != package.version:
            raise LockMismatchError(
                f"Debian package {name} is {package.version} here, the lock says {locked or 'nothing'}: "
                "install the locked version, or run `cube-stack hal lock` to rotate the image"
            )
        packages.append(package)
    return packages


def check_python_lock(
    spec: ImageSpec, lock: ImageLock, site_packages: Path
) -> list[pydists.metadata.Distribution]:
    """Return the distributions of the spec's closure, refusing versions that differ from the lock."""
    available = pydists.find(site_packages)
    names = pydists.closure(spec.python_roots, available, python_full_version=image_python_version(lock))
    if set(names) != set(lock.python):
        extra = sorted(set(names) - set(lock.python))
        missing = sorted(set(lock.python) - set(names))
        raise LockMismatchError(
            f"the image's Python distributions differ from the lock (not locked: {extra}, locked but not "
            f"needed: {missing}): run `cube-stack hal lock`"
        )
    for name in names:
        if available[name].version != lock.python[name]:
            raise LockMismatchError(
                f"Python distribution {name} is {available[name].version} here, the lock says "
                f"{lock.python[name]}: pip install {name}=={lock.python[name]}, or run `cube-stack hal lock`"
            )
    return [available[name] for name in names]


def upstream_version(debian_version: str) -> str:
    """Return the upstream part of a Debian version: ``3.11.2-6+deb12u6`` -> ``3.11.2``."""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


def image_python_version(lock: ImageLock) -> str:
    """Return the version of the image's Python (Debian's ``python3.11-minimal``, from the lock)."""
    version = lock.debian.get(IMAGE_PYTHON_PACKAGE)
    if version is None:
        raise HalError(f"the lock pins no {IMAGE_PYTHON_PACKAGE}", code="hal.image_spec_invalid")
    return upstream_version(version)


def _without_binaries(entries: Iterable[Entry], keep: Iterable[str]) -> Iterator[Entry]:
    allowed = set(keep)
    for entry in entries:
        if entry.path.startswith(BIN_DIRS) and entry.path not in allowed:
            continue
        yield entry


def _scripts_not_executable(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Clear the execute bits of scripts (the stdlib's ``#!`` modules): only ``/init`` runs as a program."""
    for entry in entries:
        if entry.kind == "file" and entry.mode & 0o111 and entry.data.startswith(b"#!"):
            yield Entry(entry.path, entry.mode & ~0o111, entry.data)
        else:
            yield entry


def _grpc_stubs() -> list[Entry]:
    """Generate the ``auth.v1`` stubs (the generator step; never committed) into image entries."""
    from cube_stack.auth.grpc import codegen

    with tempfile.TemporaryDirectory() as cache:
        entry = codegen.generate(Path(cache))
        return [
            _file(f"usr/lib/cube/auth_grpc_stubs/{path.name}", path.read_bytes())
            for path in sorted(entry.iterdir())
            if path.suffix == ".py"
        ]


def _etc_entries(spec: ImageSpec) -> list[Entry]:
    """Return the few ``/etc`` files: a locked root account (no password exists), hosts, the model list."""
    try:
        hashes = spec.model_hashes.read_bytes()
    except OSError as exc:
        raise HalError(
            f"{spec.model_hashes}: cannot be read ({exc.strerror})", code="hal.image_spec_invalid"
        ) from None
    for number, line in enumerate(hashes.decode().splitlines(), start=1):
        digest, _, name = line.strip().partition("  ")
        if line.strip() and not line.startswith("#") and (len(digest) != 64 or not name):
            raise HalError(f"{spec.model_hashes}:{number}: not 'SHA256  NAME'", code="hal.image_spec_invalid")
    return [
        _file("etc/passwd", b"root:*:0:0:root:/run/cube:/nonexistent\n"),
        _file("etc/group", b"root:x:0:\n"),
        _file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n"),
        _file("etc/cube/model-hashes", hashes),
        Entry("etc/resolv.conf", stat.S_IFLNK | 0o777, b"../run/resolv.conf"),
    ]


def image_entries(spec: ImageSpec, lock: ImageLock, *, site_packages: Path) -> list[Entry]:
    """Collect every entry of the image, checked against the lock and the installers' records."""
    entries: list[Entry] = []
    for package in check_debian_lock(spec, lock):
        entries.extend(
            _without_binaries(debian.package_entries(package, exclude=spec.debian_exclude), spec.executables)
        )
    entries.extend(debian.merged_usr_links())
    for dist in check_python_lock(spec, lock, site_packages):
        entries.extend(pydists.dist_entries(dist, exclude=spec.python_exclude))
    for name in spec.repo_packages:
        package_dir = _repo_package_dir(spec, name)
        entries.extend(
            pydists.source_tree_entries(package_dir, suffixes=(".py", ".proto"), exclude=spec.repo_exclude)
        )
    entries.extend(_grpc_stubs())
    entries.extend(kernel_entries(lock.kernel_release, spec.kernel_modules))
    entries.extend(_etc_entries(spec))
    entries = list(_scripts_not_executable(entries))
    init = resources.files("cube_stack.hal.image").joinpath("guest_init.py").read_bytes()
    entries.append(_file("init", init, 0o755))
    entries.append(Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    info = {"kernel_release": lock.kernel_release, "source_date_epoch": lock.source_date_epoch}
    entries.append(_file(IMAGE_INFO, (json.dumps(info, sort_keys=True) + "\n").encode()))
    return entries


def _repo_package_dir(spec: ImageSpec, name: str) -> Path:
    for candidate in (spec.repo_root / name, spec.repo_root / "server-stack" / name):
        if (candidate / "__init__.py").is_file():
            return candidate
    raise HalError(f"package {name} is not in {spec.repo_root}", code="hal.image_spec_invalid")


def manifest_text(entries: Iterable[Entry]) -> str:
    """Return one ``sha256 mode path`` line per entry, sorted (directories and devices show ``-``)."""
    lines = []
    for entry in sorted_with_parents(entries):
        digest = hashlib.sha256(entry.data).hexdigest() if entry.kind in ("file", "symlink") else "-"
        lines.append(f"{digest} {entry.mode:06o} {entry.path}")
    return "\n".join(lines) + "\n"


def build_image(spec: ImageSpec, lock: ImageLock, out_dir: Path, *, site_packages: Path) -> BuildResult:
    """Build ``initramfs.cpio.gz``, copy the kernel and write ``manifest.txt`` into ``out_dir``."""
    entries = image_entries(spec, lock, site_packages=site_packages)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as archive:
        write_cpio(entries, archive, mtime=lock.source_date_epoch)
        uncompressed = archive.tell()
        archive.seek(0)
        compressed = gzip_bytes(archive.read(), level=6)
    initramfs = out_dir / "initramfs.cpio.gz"
    initramfs.write_bytes(compressed)
    kernel_out = out_dir / "vmlinuz"
    kernel_image(lock.kernel_release, kernel_out)
    manifest = out_dir / "manifest.txt"
    manifest.write_text(manifest_text(entries))
    return BuildResult(
        initramfs=initramfs,
        kernel=kernel_out,
        manifest=manifest,
        sha256=hashlib.sha256(compressed).hexdigest(),
        size=len(compressed),
        uncompressed_size=uncompressed,
        entries=len(sorted_with_parents(entries)),
    )


def current_lock(
    spec: ImageSpec, *, site_packages: Path, kernel_release: str, source_date_epoch: int
) -> ImageLock:
    """Return the lock that pins what is installed now (``cube-stack hal lock``)."""
    available = pydists.find(site_packages)
    debian_versions = {name: debian.installed(name).version for name in spec.debian_packages}
    python = debian_versions.get(IMAGE_PYTHON_PACKAGE, "")
    names = pydists.closure(spec.python_roots, available, python_full_version=upstream_version(python))
    return ImageLock(
        source_date_epoch=source_date_epoch,
        kernel_release=kernel_release,
        debian=debian_versions,
        python={name: available[name].version for name in names},
    )
