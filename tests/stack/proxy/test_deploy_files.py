"""The deployment files in ``server-stack/deploy/`` are accepted by the tools that will read them.

``systemd-analyze verify`` reads each unit (with the install prefix pointed at this venv, so the
executables exist) and must print nothing: no unknown key, no bad value. ``haproxy -c -f`` must accept
the balancer's configuration. The proxy's environment file must build :class:`ProxySettings`, so every
variable it names is real. Where a tool is missing, the structural checks below still run.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from process_kit import HAPROXY

from cube_stack.proxy import ProxySettings

DEPLOY = Path(__file__).resolve().parents[3] / "server-stack" / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
PREFIX = "/opt/cube/venv/bin/"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
}


def read_unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def read_env(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def test_the_three_units_and_their_environment_files_exist() -> None:
    assert [unit.name for unit in UNITS] == [
        "cube-auth.service",
        "cube-proxy.service",
        "cube-runtime.service",
    ]
    for unit in UNITS:
        service = read_unit(unit)["Service"]
        env = service["EnvironmentFile"]
        assert env.startswith("/etc/cube/") and (DEPLOY / "env" / Path(env).name).is_file()
    assert (
        read_unit(DEPLOY / "systemd" / "cube-auth.service")["Service"]["EnvironmentFile"]
        == "/etc/cube/auth.env"
    )


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_each_unit_is_hardened_and_runs_as_no_root(unit: Path) -> None:
    parsed = read_unit(unit)
    assert set(parsed.sections()) == {"Unit", "Service", "Install"}
    service = parsed["Service"]
    assert service["ExecStart"].startswith(PREFIX)
    assert service.get("User") or service.get("DynamicUser") == "yes"
    assert service.get("User") != "root"
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{unit.name}: {key}={service.get(key)!r}, wanted {value!r}"
    assert service["KillSignal"] == "SIGTERM" and parsed["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units_without_a_warning(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent  # this venv: python and cube-stack exist there
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace(PREFIX, f"{bin_dir}/"))
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / unit.name) for unit in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stderr


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_balancer_configuration() -> None:
    config = DEPLOY / "haproxy" / "haproxy.cfg"
    done = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60, check=False
    )  # type: ignore[list-item]
    assert done.returncode == 0, done.stdout + done.stderr
    text = config.read_text()
    assert "mode tcp" in text and "send-proxy-v2" in text and "check-send-proxy" in text


def test_the_proxy_environment_file_names_only_real_settings() -> None:
    env = read_env(DEPLOY / "env" / "proxy.env")
    settings = ProxySettings.from_env(env)
    assert all(key.startswith("CUBE_PROXY_") for key in env)
    assert settings.redis_url and settings.proxy_protocol_from and settings.attestation == "sev-guest"
    assert settings.ollama_url == "unix:/run/cube/runtime.sock"
    runtime = read_env(DEPLOY / "env" / "runtime.env")
    assert f"unix:{runtime['CUBE_RUNTIME_SOCKET']}" == settings.ollama_url
