"""Models served straight from an uncompressed tar: the CVM's config disk, read without a file system.

A CVM gets its model files from the host on a read-only virtio disk that is a tar archive
(``cube-stack hal config-disk``). Extracting them first would hold every model twice in the guest's
memory (a temporary file, then the verified in-memory copy), which a multi-gigabyte code model cannot
afford; so the runtime reads each member straight into its hashed in-memory copy
(:func:`~cube_stack.runtime.model_files.pin_stream`). Naming: a member ``NAME.gguf`` is the model NAME,
``NAME.embedding.gguf`` the embedding model NAME; directories in member names are ignored and other
members (``settings.json``) skipped. Nothing in the archive is trusted: every model must be on the hash
list, so an archive is only ever served with one.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cube_stack.runtime.errors import RuntimeSettingsError

EMBEDDING_SUFFIX = ".embedding.gguf"


@dataclass(frozen=True)
class ModelArchive:
    """An archive's models and embedding models, by served name -> member name."""

    path: Path
    models: dict[str, str] = field(default_factory=dict)
    embedders: dict[str, str] = field(default_factory=dict)

    def members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str, bool]]:
        """Yield ``(archive, member, served name, is_embedder)`` for each listed member, in archive order."""
        wanted = {member: (name, False) for name, member in self.models.items()}
        wanted |= {member: (name, True) for name, member in self.embedders.items()}
        with tarfile.open(self.path, mode="r:") as archive:
            for member in archive:
                if member.name in wanted:
                    name, embedder = wanted[member.name]
                    yield archive, member, name, embedder


def served_name(member: str) -> tuple[str, bool] | None:
    """Return ``(name, is_embedder)`` for a member name, or None when it is not a model file."""
    base = PurePosixPath(member).name
    if base.startswith(".") or not base.endswith(".gguf"):
        return None
    if base.endswith(EMBEDDING_SUFFIX) and len(base) > len(EMBEDDING_SUFFIX):
        return base[: -len(EMBEDDING_SUFFIX)], True
    return base[: -len(".gguf")], False


def read_archive(path: Path) -> ModelArchive:
    """List the model files of the archive at ``path``; raise RuntimeSettingsError if it is unusable."""
    archive = ModelArchive(path)
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                named = served_name(member.name) if member.isfile() else None
                if named is None:
                    continue
                name, embedder = named
                if name in archive.models or name in archive.embedders:
                    raise RuntimeSettingsError(
                        "model_archive", f"{path}: two model files are served as {name!r}"
                    )
                (archive.embedders if embedder else archive.models)[name] = member.name
    except (OSError, tarfile.TarError) as exc:
        raise RuntimeSettingsError("model_archive", f"{path} is not a readable tar archive ({exc})") from None
    if not archive.models and not archive.embedders:
        raise RuntimeSettingsError("model_archive", f"{path} holds no NAME.gguf model file")
    return archive
