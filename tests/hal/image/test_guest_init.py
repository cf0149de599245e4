"""/init's decisions, run on the host: what it reads from the untrusted config disk and how it starts the
services. (The boot test runs the same code as PID 1 in QEMU.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cube_stack.hal.image import guest_init
from cube_wire.errors import CubeError
from cube_wire.host_data import host_data_from_file
from tests.support.archives import write_tar

SETTINGS = {
    "version": 1,
    "auth_endpoint": "https://auth.example.com:9443",
    "domain": "d-1",
    "log_level": "info",
}


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
    assert settings.domain == "d-1"


@pytest.mark.parametrize("change", [{"extra": 1}, {"log_level": "trace"}, {"auth_endpoint": "file:///etc"}])
def test_settings_the_client_rule_refuses_stop_the_boot(change: dict[str, object]) -> None:
    with pytest.raises(CubeError):
        guest_init.canonical_settings(json.dumps({**SETTINGS, **change}).encode())


def test_settings_come_from_the_disk_and_nothing_is_extracted(tmp_path: Path) -> None:
    before = set(tmp_path.iterdir())
    image = write_tar(
        tmp_path / "disk.tar",
        {"../../settings.json.gguf": b"GGUF", "deep/settings.json": json.dumps(SETTINGS).encode()},
        links={"settings.json": "/etc/passwd"},  # a link is not the settings
    )
    assert json.loads(guest_init.read_settings(str(image))) == SETTINGS
    assert set(tmp_path.iterdir()) == before | {image}  # models stay on the disk for the runtime to pin


def test_a_disk_without_settings_stops_the_boot(tmp_path: Path) -> None:
    image = write_tar(tmp_path / "disk.tar", {"code.gguf": b"GGUF", "settings.json": b"x" * 70000})
    with pytest.raises(ValueError, match=r"no settings\.json"):
        guest_init.read_settings(str(image))


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


def test_the_auth_grpc_address_and_ca_come_from_the_bound_settings(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA().cert_pem.bytes().decode()
    raw = json.dumps({**SETTINGS, "auth_grpc": "10.0.2.2:7001", "auth_grpc_ca": ca}).encode()
    settings, host_data = guest_init.canonical_settings(raw)
    env = guest_init.proxy_env({}, {"cube.auth_grpc": "ignored:1"}, settings, host_data)
    assert env["CUBE_PROXY_AUTH_GRPC"] == "10.0.2.2:7001"  # HOST_DATA-bound settings win
    assert env["CUBE_PROXY_AUTH_GRPC_CA"] == guest_init.AUTH_GRPC_CA
    written = tmp_path / "run" / "ca.pem"
    guest_init.write_auth_grpc_ca(settings, str(written))
    assert written.read_text() == ca
