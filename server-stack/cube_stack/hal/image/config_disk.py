"""The config disk: the read-only virtio disk that hands a CVM its settings and model files.

Neither is in the measured image. ``settings.json`` (the deployment settings of
:mod:`cube_wire.host_data`) is bound by HOST_DATA: the proxy refuses to serve when the launch's
HOST_DATA is not the SHA-256 of the settings it was given, and clients pin HOST_DATA in their policy.
Model files are bound by the image's list of allowed SHA-256s, which the runtime checks before loading.
So the host may write anything on this disk; the worst it can do is make the CVM refuse to start.

The disk is an uncompressed POSIX tar (the guest reads it with the standard library, no file system
driver needed), written deterministically: members sorted by name, owner 0, mode 0444, time 0.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path

from cube_stack.hal import HalError
from cube_wire.host_data import HostDataError, host_data_digest, parse_deployment_settings

SETTINGS_NAME = "settings.json"


def write_config_disk(out: Path, settings_file: Path, models: Iterable[Path]) -> bytes:
    """Write the disk to ``out``; return HOST_DATA (32 bytes) for its settings."""
    try:
        raw = settings_file.read_bytes()
        settings = parse_deployment_settings(json.loads(raw))
    except OSError as exc:
        raise HalError(
            f"{settings_file}: cannot be read ({exc.strerror})", code="hal.config_invalid"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HalError(f"{settings_file}: not JSON ({exc})", code="hal.config_invalid") from None
    except HostDataError as exc:
        raise HalError(f"{settings_file}: {exc.message}", code="hal.config_invalid") from None
    members: dict[str, Path | bytes] = {SETTINGS_NAME: raw}
    for model in models:
        if model.suffix != ".gguf" or model.name.startswith("."):
            raise HalError(f"{model}: model files must be named NAME.gguf", code="hal.config_invalid")
        if model.name in members:
            raise HalError(f"two model files named {model.name}", code="hal.config_invalid")
        members[model.name] = model
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name in sorted(members):
            source = members[name]
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid = 0o444, 0, 0, 0
            if isinstance(source, bytes):
                info.size = len(source)
                archive.addfile(info, io.BytesIO(source))
            else:
                info.size = source.stat().st_size
                with source.open("rb") as stream:
                    archive.addfile(info, stream)
    return host_data_digest(settings)
