"""Shared by the image tests: where the image's Python environment is, and what a build gave."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

from cube_stack.hal.image.build import BuildResult
from cube_stack.hal.image.spec import ImageLock, ImageSpec

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "hal" / "image.toml"
LOCK = REPO / "hal" / "image.lock"
PREPARE = REPO / "hal" / "scripts" / "prepare-image-env.sh"
KITS = (REPO / "tests" / "stack" / "auth_standalone", REPO / "tests" / "stack" / "proxy")
for kit in KITS:
    if str(kit) not in sys.path:
        sys.path.append(str(kit))


def image_env_dir() -> Path:
    """Return where prepare-image-env.sh puts the environment: named by the lock's pins and the script."""
    import tomllib

    pins = sorted(tomllib.loads(LOCK.read_text())["python"].items())
    made_of = "".join(f"{name}=={version}\n" for name, version in pins).encode() + PREPARE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cube-hal" / f"image-env-{hashlib.sha256(made_of).hexdigest()[:16]}"


@dataclasses.dataclass(frozen=True)
class Built:
    """Two builds of the same inputs and what the first one holds."""

    first: BuildResult
    second: BuildResult
    spec: ImageSpec
    lock: ImageLock
    demo_model: Path
    files: dict[str, tuple[int, bytes]]  # path -> (mode, data), from the first archive
