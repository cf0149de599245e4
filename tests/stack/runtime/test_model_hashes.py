"""The runtime serves only the model files whose SHA-256 the image lists (cube_stack.runtime.model_files).

A real runtime process with the generated demo model: listed, it serves it; with one byte of the file
changed, it refuses to start before loading anything and names the file and its hash.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cube_stack.runtime.demo_model import write_demo_model
from cube_stack.runtime.errors import RuntimeSettingsError
from cube_stack.runtime.model_files import ModelNotAllowedError, load_model_hashes, pin_model
from tests.support.stack_process import wait_for_line

pytestmark = pytest.mark.slow


def serve(model: Path, hashes: Path, socket: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUBE_RUNTIME_")}
    argv = [sys.executable, "-m", "cube_stack.runtime", "--model", f"demo={model}"]
    argv += ["--model-hashes", str(hashes), "--socket", str(socket), "--no-minilm", "--threads", "1"]
    return subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def test_a_listed_model_is_served_and_one_changed_byte_is_refused(tmp_path: Path) -> None:
    model = write_demo_model(tmp_path / "models" / "demo.gguf", seed=0)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    hashes = tmp_path / "model-hashes.sha256"
    hashes.write_text(f"# models this image may serve\n{digest}  demo.gguf\n")

    listed = serve(model, hashes, tmp_path / "run" / "runtime.sock")
    assert listed.stderr is not None
    wait_for_line(listed, "runtime ready: ")
    listed.terminate()
    listed.communicate(timeout=30)  # reads the rest of its log and closes the pipe
    assert listed.returncode == 0

    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte, in the middle of the weights
    model.write_bytes(bytes(data))
    swapped = serve(model, hashes, tmp_path / "run2" / "runtime.sock")
    _, err = swapped.communicate(timeout=60)
    assert swapped.returncode == 1, err
    assert "runtime.model_not_allowed" in err and str(model) in err
    assert hashlib.sha256(bytes(data)).hexdigest() in err
    assert "runtime ready" not in err


def test_what_is_served_is_the_copy_that_was_hashed(tmp_path: Path) -> None:
    """Changing the file after it was pinned changes nothing the runtime would load."""
    original = b"GGUF" + bytes(range(256)) * 64
    path = tmp_path / "m.gguf"
    path.write_bytes(original)
    pinned = pin_model(path, frozenset({hashlib.sha256(original).hexdigest()}))
    try:
        path.write_bytes(b"GGUF swapped by the host")
        assert pinned.path.read_bytes() == original
    finally:
        pinned.close()


def test_a_bad_list_is_refused_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "hashes"
    bad.write_text("abc  model.gguf\n")
    with pytest.raises(RuntimeSettingsError, match="line 1"):
        load_model_hashes(bad)
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(RuntimeSettingsError, match="no model hash"):
        load_model_hashes(empty)
    with pytest.raises(ModelNotAllowedError):
        pin_model(bad, frozenset({"0" * 64}))
