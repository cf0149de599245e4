"""Fixtures for the CVM image: its prepared Python environment and the image built twice from it.

The image's Python environment is made by ``hal/scripts/prepare-image-env.sh`` (pip downloads and a
portable llama.cpp build: the network and a quarter of an hour, so ``.ci/run`` runs it once per lock,
not the tests). A test that needs it fails, naming the script, when it is absent; it never skips.
The two builds share one session: every image test reads the same bytes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cube_stack.hal.image.build import build_image
from cube_stack.hal.image.cpio import read_cpio
from cube_stack.hal.image.spec import load_lock, load_spec
from cube_stack.runtime.demo_model import write_demo_model
from tests.hal.image.image_kit import LOCK, PREPARE, SPEC, Built, image_env_dir


@pytest.fixture(scope="session")
def image_site_packages() -> Path:
    """The image's prepared site-packages, or a failure that says how to make it."""
    env = image_env_dir()
    if not (env / ".complete").is_file():
        pytest.fail(f"the image's Python environment is missing: run {PREPARE} (.ci/run does) and retry")
    return env / "site-packages"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, image_site_packages: Path) -> Iterator[Built]:
    """Build the image twice from the same inputs (allowing the generated demo model, for the boot)."""
    work = tmp_path_factory.mktemp("image")
    demo = write_demo_model(work / "demo.gguf")
    hashes = work / "model-hashes.txt"
    production = load_spec(SPEC).model_hashes.read_text()
    hashes.write_text(production + f"{hashlib.sha256(demo.read_bytes()).hexdigest()}  demo.gguf\n")
    spec = dataclasses.replace(load_spec(SPEC), model_hashes=hashes)
    lock = load_lock(LOCK)
    first = build_image(spec, lock, work / "one", site_packages=image_site_packages)
    second = build_image(spec, lock, work / "two", site_packages=image_site_packages)
    archive = gzip.decompress(first.initramfs.read_bytes())
    files = {path: (mode, data) for path, mode, _, data in read_cpio(archive)}
    yield Built(first, second, spec, lock, demo, files)
