"""Generate the ``auth.v1`` Python stubs from our ``.proto`` at run time, into a content-addressed cache.

Nothing generated is committed, so the stubs are up to date by construction: :func:`ensure_generated`
hashes the ``.proto`` (plus the grpcio-tools and protobuf versions), and when no cache entry has that
digest it runs ``python -m grpc_tools.protoc`` into a temporary directory and renames it into place. The
rename is atomic, so concurrent first use from several threads or processes is safe: one rename wins and
the others discard their copy. Entries live in ``_generated/`` next to this module (git-ignored), or in
the user cache directory when the package directory is read-only.

protoc writes ``from auth.v1 import auth_pb2`` into the service module, which would need a top-level
``auth`` package; the entry is flattened into one package and that line becomes a relative import.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import platformdirs

from cube_stack.auth.grpc.errors import CodegenError

PROTO_ROOT = Path(__file__).parent / "proto"
AUTH_PROTO = "auth/v1/auth.proto"
PACKAGE_CACHE = Path(__file__).parent / "_generated"
_ENTRY_PREFIX = "stubs_"
PREBUILT_ENV = "CUBE_AUTH_GRPC_STUBS"
_ABSOLUTE_IMPORT = "from auth.v1 import auth_pb2 as "
_RELATIVE_IMPORT = "from . import auth_pb2 as "
_load_lock = threading.Lock()  # serialises module creation in this process; holds no state


@dataclass(frozen=True)
class Stubs:
    """The generated modules: messages (``auth_pb2``) and the service glue (``auth_pb2_grpc``)."""

    auth_pb2: ModuleType
    auth_pb2_grpc: ModuleType


def proto_digest(proto_root: Path = PROTO_ROOT, proto: str = AUTH_PROTO) -> str:
    """Return the SHA-256 that names the cache entry of ``proto`` (its bytes and the generator version)."""
    digest = hashlib.sha256()
    for tool in ("grpcio-tools", "protobuf"):
        digest.update(f"{tool} {importlib.metadata.version(tool)}\0".encode())
    digest.update(f"{proto}\0".encode())
    digest.update((proto_root / proto).read_bytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Return ``_generated/`` next to this module if writable, else the user cache directory."""
    with contextlib.suppress(OSError):  # read-only install: fall through to the user cache
        PACKAGE_CACHE.mkdir(exist_ok=True)
    if PACKAGE_CACHE.is_dir() and os.access(PACKAGE_CACHE, os.W_OK | os.X_OK):
        return PACKAGE_CACHE
    return platformdirs.user_cache_path("cube-stack") / "auth-grpc"


def _run_protoc(proto_root: Path, proto: str, out: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        proto,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CodegenError(f"grpc_tools.protoc failed on {proto} (exit {result.returncode}): {result.stderr}")


def _flatten(out: Path, proto: str) -> None:
    """Move the two modules to ``out`` itself and make the service module import its sibling."""
    generated = out / Path(proto).parent
    stem = Path(proto).stem
    messages, service = f"{stem}_pb2.py", f"{stem}_pb2_grpc.py"
    text = (generated / service).read_text(encoding="utf-8")
    if text.count(_ABSOLUTE_IMPORT) != 1:
        raise CodegenError(f"{service}: expected one line starting {_ABSOLUTE_IMPORT!r}; protoc changed")
    (out / service).write_text(text.replace(_ABSOLUTE_IMPORT, _RELATIVE_IMPORT), encoding="utf-8")
    (generated / messages).replace(out / messages)
    shutil.rmtree(out / Path(proto).parts[0])
    (out / "__init__.py").write_text(f'"""Generated from {proto}; do not edit or commit."""\n')


def generate(
    cache_dir: Path | None = None, *, proto_root: Path = PROTO_ROOT, proto: str = AUTH_PROTO
) -> Path:
    """Return the cache entry for ``proto``, generating it first if no entry has its digest."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    entry = cache / f"{_ENTRY_PREFIX}{proto_digest(proto_root, proto)[:32]}"
    if entry.is_dir():
        return entry
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        _run_protoc(proto_root, proto, staging)
        _flatten(staging, proto)
        staging.chmod(0o755)  # mkdtemp makes it private; other users of a shared cache must read it
        try:
            staging.rename(entry)
        except OSError:
            if not entry.is_dir():  # not "another process renamed first"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def load(entry: Path) -> Stubs:
    """Import the stubs of a cache entry (once per process; later calls return the same modules)."""
    package = f"{__name__.rpartition('.')[0]}._{entry.name}"
    with _load_lock:
        if package not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                package, entry / "__init__.py", submodule_search_locations=[str(entry)]
            )
            if spec is None or spec.loader is None:
                raise CodegenError(f"cannot import the generated stubs in {entry}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[package] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[package]
                raise
        return Stubs(
            importlib.import_module(f"{package}.auth_pb2"),
            importlib.import_module(f"{package}.auth_pb2_grpc"),
        )


def ensure_generated(cache_dir: Path | None = None) -> Stubs:
    """Return the ``auth.v1`` stubs, generating them first when the ``.proto`` has changed.

    ``CUBE_AUTH_GRPC_STUBS`` names a directory generated ahead of time (the CVM image carries one made by
    its build, and no grpcio-tools): it is loaded as is.
    """
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt and cache_dir is None:
        return load(Path(prebuilt))
    return load(generate(cache_dir))
