"""/init's decisions, run on the host: what it reads from the untrusted config disk and how it starts the
services. (The boot test runs the same code as PID 1 in QEMU.)"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from cube_stack.hal.image import guest_init
from cube_wire.errors import CubeError
from cube_wire.host_data import host_data_from_file

SETTINGS = {
    "version": 1,
    "auth_endpoint": "https://auth.example.com:9443",
    "domain": "d-1",
    "log_level": "info",
}


def disk(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path


def test_kernel_options_keep_only_cube_switches() -> None:
    text = "console=ttyS0 panic=-1 cube.attestation=simulated cube.auth_grpc=10.0.2.2:8181 quiet cube.flag"
    assert guest_init.kernel_options(text) == {
        "cube.attestation": "simulated",
        "cube.auth_grpc": "10.0.2.2:8181",
    }


def test_host_data_is_the_digest_clients_compute(tmp_path: Path) -> None:
    raw = json.dumps(SETTINGS, indent=3).encode()
    (tmp_path / "s.json").write_bytes(raw)
    settings, host_data = guest_init.canonical_settings(raw)
    assert host_data == host_data_from_file(tmp_path / "s.json")
    assert settings["domain"] == "d-1"


@pytest.mark.parametrize("change", [{"extra": 1}, {"log_level": "trace"}, {"auth_endpoint": "file:///etc"}])
def test_settings_the_client_rule_refuses_stop_the_boot(change: dict[str, object]) -> None:
    with pytest.raises(CubeError):
        guest_init.canonical_settings(json.dumps({**SETTINGS, **change}).encode())


def test_the_config_disk_cannot_write_outside_the_model_directory(tmp_path: Path) -> None:
    models = tmp_path / "models"
    image = disk(
        tmp_path / "disk.tar",
        {
            "settings.json": json.dumps(SETTINGS).encode(),
            "../../escape.gguf": b"GGUF-a",
            "deep/dir/code.gguf": b"GGUF-b",
            "notes.txt": b"ignored",
            ".hidden.gguf": b"ignored",
        },
        links={"link.gguf": "/etc/passwd"},
    )
    raw, paths = guest_init.read_config_disk(str(image), str(models))
    assert json.loads(raw) == SETTINGS
    assert sorted(Path(p).name for p in paths) == ["code.gguf", "escape.gguf"]
    assert sorted(p.name for p in models.iterdir()) == ["code.gguf", "escape.gguf"]
    assert not (tmp_path / "escape.gguf").exists()


def test_a_disk_without_settings_stops_the_boot(tmp_path: Path) -> None:
    image = disk(tmp_path / "disk.tar", {"code.gguf": b"GGUF"})
    with pytest.raises(ValueError, match=r"no settings\.json"):
        guest_init.read_config_disk(str(image), str(tmp_path / "models"))


def test_two_models_with_one_name_stop_the_boot(tmp_path: Path) -> None:
    image = disk(tmp_path / "disk.tar", {"settings.json": b"{}", "a/code.gguf": b"1", "b/code.gguf": b"2"})
    with pytest.raises(FileExistsError):
        guest_init.read_config_disk(str(image), str(tmp_path / "models"))


def test_embedding_models_are_told_apart_by_name() -> None:
    assert guest_init.model_arguments(["/m/code.gguf", "/m/all-minilm:l6-v2.embedding.gguf"]) == [
        "--model", "code=/m/code.gguf", "--embedder", "all-minilm:l6-v2=/m/all-minilm:l6-v2.embedding.gguf",
    ]  # fmt: skip


def test_the_proxy_gets_the_settings_host_data_and_attests_for_real_by_default() -> None:
    settings, host_data = guest_init.canonical_settings(json.dumps(SETTINGS).encode())
    env = guest_init.proxy_env(guest_init.service_env(settings), {}, settings, host_data)
    assert env["CUBE_PROXY_ATTESTATION"] == "auto"  # configfs-tsm or /dev/sev-guest: never simulated
    assert "CUBE_PROXY_ATTESTATION_STATE_DIR" not in env
    assert env["CUBE_PROXY_ATTESTATION_HOST_DATA"] == host_data.hex()
    assert env["CUBE_PROXY_AUTH_URL"] == "https://auth.example.com:9443"
    assert env["CUBE_PROXY_AUTH_GRPC"] == "auth.example.com:8181"
    assert env["CUBE_PROXY_OLLAMA_URL"] == f"unix:{guest_init.RUNTIME_SOCKET}"
    assert not any("TOKEN" in key or "KEY" in key for key in env)  # no secret is handed to the services
    simulated = guest_init.proxy_env(
        {}, {"cube.attestation": "simulated", "cube.auth_grpc": "a:1"}, settings, host_data
    )
    assert simulated["CUBE_PROXY_ATTESTATION"] == "simulated" and simulated["CUBE_PROXY_AUTH_GRPC"] == "a:1"


def test_init_refuses_to_run_outside_pid_1(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, guest_init.__file__], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "PID 1" in done.stderr
