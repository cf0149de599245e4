"""`python -m cube_stack.proxy`: the proxy as it runs inside the CVM, attestation agent included.

It must refuse to start when it cannot attest (rather than serve a route every client refuses), and a
client that has only the proxy's URL and a policy -- no CA bundle: the key was made at start -- must
attest it and get a completion through it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cube_proxy_testkit import AuthStack

from cube_stack.proxy import ProxySettings, ProxySettingsError
from cube_stack.proxy.authclient import GrpcProxyAuthClient
from cube_stack.proxy.standalone import build_auth
from cube_stack.proxy.standalone import main as proxy_main
from tests.support.scripted_backend import Reply, ScriptedBackend

LISTENING = re.compile(r"proxy\.listening url=(https://127\.0\.0\.1:\d+)")


def test_attestation_mode_is_validated() -> None:
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings(attestation="sometimes")
    assert caught.value.field == "attestation"
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings(attestation="auto", attestation_state_dir="/tmp/x")
    assert caught.value.field == "attestation_state_dir"
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings.from_env({"CUBE_PROXY_ATTESTATION": "bogus"})
    assert caught.value.field == "attestation"


def test_without_an_sev_snp_interface_it_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "CUBE_PROXY_PORT": "0",
        "CUBE_PROXY_ATTESTATION_TSM_PATH": str(tmp_path / "no-tsm"),
        "CUBE_PROXY_ATTESTATION_DEVICE": str(tmp_path / "no-sev-guest"),
    }
    before = signal.getsignal(signal.SIGTERM)
    assert proxy_main(environ) == 1
    assert signal.getsignal(signal.SIGTERM) is before  # the embedding process keeps its handler
    err = capsys.readouterr().err
    assert "agent.no_tee" in err and "not an SEV-SNP guest" in err
    assert "proxy.listening" not in caplog.text  # it never listened


def test_bad_settings_exit_2_naming_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert proxy_main({"CUBE_PROXY_IDLE_TIMEOUT": "soon"}) == 2
    assert "CUBE_PROXY_IDLE_TIMEOUT" in capsys.readouterr().err


@pytest.fixture
def standalone_proxy(
    tmp_path: Path, stack: AuthStack, scripted_backend: ScriptedBackend
) -> Iterator[tuple[str, Path]]:
    """Run `python -m cube_stack.proxy` with the SIMULATED agent; yield its URL and client policy."""
    state = tmp_path / "agent"
    env = os.environ | {
        "CUBE_PROXY_PORT": "0",
        "CUBE_PROXY_AUTH_URL": stack.url,
        "CUBE_PROXY_AUTH_GRPC": stack.grpc_target,
        "CUBE_PROXY_OLLAMA_URL": f"{scripted_backend.url}/{scripted_backend.domain}",
        "CUBE_PROXY_RUNTIME_API_KEY": scripted_backend.token or "",
        "CUBE_PROXY_ATTESTATION": "simulated",
        "CUBE_PROXY_ATTESTATION_STATE_DIR": str(state),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "cube_stack.proxy"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    url = ""
    try:
        while not url:
            line = lines.get(timeout=120)  # the SIMULATED chain is RSA-4096: a few seconds
            assert line is not None, f"the proxy exited ({child.wait()}):\n{''.join(seen)}"
            seen.append(line)
            if match := LISTENING.search(line):
                url = match.group(1)
        yield url, state / "client-policy.json"
    finally:
        child.send_signal(signal.SIGTERM)
        status = child.wait(timeout=30)
        reader.join(timeout=10)
        assert child.stderr is not None
        child.stderr.close()
        assert status == 0  # SIGTERM drains and exits cleanly, as a service manager expects


def _cube(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cube_lsp.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_a_client_with_only_url_and_policy_attests_it_and_completes(
    standalone_proxy: tuple[str, Path], stack: AuthStack, scripted_backend: ScriptedBackend, tmp_path: Path
) -> None:
    url, policy = standalone_proxy
    attested = _cube("attest", "endpoint", url, "--domain", stack.domain, "--policy", str(policy))
    assert attested.returncode == 0, attested.stderr
    assert attested.stdout.startswith("SIMULATED")

    scripted_backend.script(Reply.stream("a + b"))
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return \n")
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "endpoint": url,  # no tls.caBundle: the report vouches for the key
                "domain": stack.domain,
                "token": stack.bob.access_token,
                "api": "ollama",
                "models": {"completion": "qwen2.5-coder:1.5b"},
                "attestation": {"mode": "simulated", "policy": str(policy)},
            }
        )
    )
    done = _cube("complete", "--settings", str(settings), f"{source}:2:11")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "a + b"
    assert "SIMULATED" in done.stderr
    assert scripted_backend.request_count == 1


async def test_the_proxy_asks_auth_over_grpc_by_default() -> None:
    default = build_auth(ProxySettings())
    other = build_auth(ProxySettings(auth_grpc="auth.internal:7001"))
    try:
        assert isinstance(default, GrpcProxyAuthClient) and default._client.target == "127.0.0.1:8181"
        assert isinstance(other, GrpcProxyAuthClient) and other._client.target == "auth.internal:7001"
    finally:
        await default.aclose()
        await other.aclose()


def test_grpc_tls_settings_are_validated() -> None:
    for values, field in [
        ({"auth_grpc": "no-port"}, "auth_grpc"),
        ({"auth_grpc_ca": "/ca.pem", "auth_grpc_client_cert": "/c.pem"}, "auth_grpc_client_cert"),
        ({"auth_grpc_client_cert": "/c.pem", "auth_grpc_client_key": "/k.pem"}, "auth_grpc_ca"),
    ]:
        with pytest.raises(ProxySettingsError) as caught:
            ProxySettings(**values)
        assert caught.value.field == field
