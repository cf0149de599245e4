"""Models served straight from a tar (the CVM's config disk): named by member, each on the hash list.

A real runtime process reads the archive, holds each model once (its hashed in-memory copy) and serves
it; one changed byte inside the archive stops it before anything is served.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cube_stack.runtime.builtin import BuiltinSettings
from cube_stack.runtime.demo_model import write_demo_model
from cube_stack.runtime.errors import RuntimeSettingsError
from cube_stack.runtime.model_archive import read_archive, served_name
from tests.support.archives import write_tar
from tests.support.stack_process import wait_for_line


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ("code.gguf", ("code", False)),
        ("deep/dir/qwen2.5-coder:1.5b.gguf", ("qwen2.5-coder:1.5b", False)),
        ("all-minilm:l6-v2.embedding.gguf", ("all-minilm:l6-v2", True)),
        ("../../escape.gguf", ("escape", False)),
        ("settings.json", None),
        (".hidden.gguf", None),
        ("weights.bin", None),
        (".embedding.gguf", None),
    ],
)
def test_members_are_named_by_their_file_name(member: str, expected: tuple[str, bool] | None) -> None:
    assert served_name(member) == expected


def test_the_listing_skips_settings_links_and_other_files(tmp_path: Path) -> None:
    archive = read_archive(
        write_tar(
            tmp_path / "disk.tar",
            {"settings.json": b"{}", "code.gguf": b"GGUF1", "m.embedding.gguf": b"GGUF2", "notes.txt": b""},
            links={"link.gguf": "/etc/passwd"},
        )
    )
    assert archive.models == {"code": "code.gguf"}
    assert archive.embedders == {"m": "m.embedding.gguf"}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"a/code.gguf": b"1", "b/code.gguf": b"2"}, "two model files are served as 'code'"),
        ({"settings.json": b"{}"}, "holds no NAME.gguf"),
    ],
)
def test_unusable_archives_are_refused(tmp_path: Path, members: dict[str, bytes], message: str) -> None:
    with pytest.raises(RuntimeSettingsError, match=message):
        read_archive(write_tar(tmp_path / "disk.tar", members))


def test_a_file_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    (tmp_path / "disk").write_bytes(b"\x7fELF" + bytes(2000))
    with pytest.raises(RuntimeSettingsError, match="not a readable tar"):
        read_archive(tmp_path / "disk")


def test_an_archive_is_served_only_with_a_hash_list(tmp_path: Path) -> None:
    archive = read_archive(write_tar(tmp_path / "disk.tar", {"code.gguf": b"GGUF"}))
    with pytest.raises(RuntimeSettingsError, match="only with a model hash list"):
        BuiltinSettings(archive=archive)


def serve(archive: Path, hashes: Path, socket: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUBE_RUNTIME_")}
    argv = [sys.executable, "-m", "cube_stack.runtime", "--model-archive", str(archive)]
    argv += ["--model-hashes", str(hashes), "--socket", str(socket), "--no-minilm", "--threads", "1"]
    return subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)


@pytest.mark.slow
def test_a_real_runtime_serves_the_archive_and_refuses_one_changed_byte(tmp_path: Path) -> None:
    model = write_demo_model(tmp_path / "demo.gguf", seed=0).read_bytes()
    hashes = tmp_path / "model-hashes"
    hashes.write_text(f"{hashlib.sha256(model).hexdigest()}  demo.gguf\n")
    disk = write_tar(
        tmp_path / "disk.tar", {"settings.json": json.dumps({"version": 1}).encode(), "demo.gguf": model}
    )
    socket = tmp_path / "run" / "runtime.sock"
    listed = serve(disk, hashes, socket)
    assert listed.stderr is not None
    wait_for_line(listed, "runtime ready: ")
    try:
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://runtime", timeout=30) as client:
            names = [m["name"] for m in client.get("/api/tags").json()["models"]]
        assert names == ["demo:latest"]
    finally:
        listed.terminate()
        listed.communicate(timeout=30)
    assert listed.returncode == 0

    changed = bytearray(model)
    changed[len(changed) // 2] ^= 0x01
    write_tar(disk, {"settings.json": b"{}", "demo.gguf": bytes(changed)})
    swapped = serve(disk, hashes, tmp_path / "run2" / "runtime.sock")
    _, err = swapped.communicate(timeout=60)
    assert swapped.returncode == 1, err
    assert "runtime.model_not_allowed" in err and f"{disk}:demo.gguf" in err
    assert "runtime ready" not in err
