"""The server side installs and runs without the client: a fresh venv with `cube-lsp[server]` only.

pip installs the repository with the `server` extra into a new virtual environment (from the package
index or pip's cache); then, with that venv's Python, the real `cube-stack auth serve` (SQLite) and the
real `python -m cube_stack.proxy` (SIMULATED agent) start, and a PAT made with that venv's admin
commands gets a generation through the proxy from the SCRIPTED BACKEND. The client's libraries
(pygls, tree-sitter) and the runtimes' (llama.cpp, torch) are not there to lean on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest
from standalone_kit import AUTH_LISTENING, CHEAP, PROXY_LISTENING, Process, clean_environ

from tests.support.scripted_backend import ScriptedBackend

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only `cube-lsp[server]` (editable: the same sources, none of the client's libraries)."""
    home = tmp_path_factory.mktemp("lean") / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            f"{ROOT}[server]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def run(python: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_environ() | CHEAP | (env or {}),
        cwd="/",  # not the repository: only what the venv installed is importable
    )


def test_the_client_and_runtime_libraries_are_not_installed(lean_python: Path) -> None:
    probe = "import importlib.util as u; print([m for m in {names} if u.find_spec(m)])"
    names = ["pygls", "lsprotocol", "tree_sitter", "torch", "llama_cpp", "sentence_transformers"]
    found = run(lean_python, "-c", probe.format(names=names))
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr
    # The client's entry points say how to install it instead of a traceback.
    client = run(lean_python, "-c", "from cube_lsp.entry import server; raise SystemExit(server())")
    assert client.returncode == 2 and "pip install 'cube-lsp[client]'" in client.stderr


def test_auth_and_proxy_run_from_the_server_extra(
    lean_python: Path, tmp_path: Path, scripted_backend: ScriptedBackend, agent_state: Path
) -> None:
    db = ["--database-url", str(tmp_path / "auth.db")]
    key = tmp_path / "keys" / "signing.pem"
    key.parent.mkdir(mode=0o700)
    made = run(lean_python, "-m", "cube_stack.cli", "auth", "keygen", str(key))
    assert made.returncode == 0, made.stderr
    admin = {"USERNAME": "admin", "EMAIL": "admin@example.com", "PASSWORD": "admin-password-1"}
    auth_env = clean_environ() | CHEAP | {f"CUBE_AUTH_ADMIN_{k}": v for k, v in admin.items()}
    auth = Process(
        [
            str(lean_python),
            "-m",
            "cube_stack.cli",
            "auth",
            "serve",
            *db,
            "--signing-key",
            str(key),
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
        auth_env,
    ).start()
    proxy = None
    try:
        match = auth.wait_for(AUTH_LISTENING)
        http_url, grpc_target = match.group(1), match.group(2)
        made_domain = run(
            lean_python, "-m", "cube_stack.cli", "domain", "create", "Lean", "--route", "lean", *db
        )
        assert made_domain.returncode == 0, made_domain.stderr
        domain = json.loads(made_domain.stdout)
        created = run(lean_python, "-m", "cube_stack.cli", "token", "create", "--domain", domain["id"], *db)
        assert created.returncode == 0, created.stderr
        pat = json.loads(created.stdout)["token"]
        proxy_env = clean_environ() | {
            "CUBE_PROXY_PORT": "0",
            "CUBE_PROXY_TLS": "false",
            "CUBE_PROXY_AUTH_URL": http_url,
            "CUBE_PROXY_AUTH_GRPC": grpc_target,
            "CUBE_PROXY_OLLAMA_URL": f"{scripted_backend.url}/{scripted_backend.domain}",
            "CUBE_PROXY_RUNTIME_API_KEY": scripted_backend.token or "",
            "CUBE_PROXY_ATTESTATION": "simulated",
            "CUBE_PROXY_ATTESTATION_STATE_DIR": str(agent_state),
        }
        proxy = Process([str(lean_python), "-m", "cube_stack.proxy"], proxy_env).start()
        proxy_url = proxy.wait_for(PROXY_LISTENING).group(1)

        response = httpx.post(
            f"{proxy_url}/{domain['id']}/api/generate",
            json={"model": "m", "prompt": "p"},
            headers={"Authorization": f"Bearer {pat}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    finally:
        statuses = [p.stop() for p in (proxy, auth) if p is not None]
    assert statuses == [0] * len(statuses)
    assert "Traceback" not in auth.output + (proxy.output if proxy else "")
    assert sys.executable not in auth.argv  # it really ran on the lean venv's Python
