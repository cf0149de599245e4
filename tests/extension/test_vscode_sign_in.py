"""Signing in from a real VS Code (code-server in headless Chromium) against the real auth service.

The embedded `cube-stack` runs its SuperMQ-compatible auth service over HTTP on loopback, with
access tokens of 4 s so that the extension refreshes its session every 2 s (half-life: it never
refreshes in a loop); the proxy's runtime is the SCRIPTED BACKEND. ``e2e/drive_sign_in.cjs`` drives
"Cube: Sign In" through VS Code's own quick pick and input boxes:

1. the auth service down (`cube.authUrl` on a port nothing listens on): one message saying so;
2. a wrong password: refused with one message;
3. the right password: signed in, the token reaches cube-lsp and no settings.json, ghost text;
4. the session's refresh tokens revoked at the auth service (`POST /users/tokens/revoke`, what "sign
   out everywhere" does): the next refresh is refused, the extension asks to sign in again, and the
   status bar says to sign in once the proxy refuses the next completion.
"""

from __future__ import annotations

import base64
import json
import socket
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cube_stack.stack import ADMIN_USERNAME, RunningStack
from tests.extension.vscode_harness import (
    CUBE_LSP,
    FIRST_ANSWER,
    RUNTIME_DOMAIN,
    Build,
    StackThread,
    VSCode,
    answer,
    drive,
    prepare_vscode,
)
from tests.support.scripted_backend import ScriptedBackend

DRIVER_TIMEOUT_S = 150

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _closed_port_url() -> str:
    """An http URL on loopback where nothing listens (bound, then closed: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _cube_settings(running: RunningStack) -> dict[str, Any]:
    """The stack's client settings as `cube.*` keys, without its token: the user signs in instead."""
    client = running.client_settings
    return {
        "cube.endpoint": client["endpoint"],
        "cube.domain": client["domain"],
        "cube.api": client["api"],
        "cube.models.completion": client["models"]["completion"],
        "cube.attestation.mode": client["attestation"]["mode"],
        "cube.attestation.policy": client["attestation"]["policy"],
        "cube.tls.caBundle": client["tls"]["caBundle"],
    }


def _jti(token: str) -> str:
    claims = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["jti"])


def _revoke_other_sessions(auth_url: str, password: str) -> int:
    """Revoke every refresh token of the user but this call's own, until none is left; return how many.

    The extension rotates its refresh token every 2 s, so a token listed here may be replaced before it
    is revoked: list again until the only live one is ours.
    """
    with httpx.Client(base_url=auth_url, timeout=10) as http:
        issued = http.post("/users/tokens/issue", json={"username": ADMIN_USERNAME, "password": password})
        issued.raise_for_status()
        pair = issued.json()
        own = _jti(pair["refresh_token"])
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        revoked = 0
        for _ in range(50):
            listed = http.get("/users/tokens/refresh-tokens", headers=headers)
            listed.raise_for_status()
            others = [t["id"] for t in listed.json().get("refresh_tokens", []) if t["id"] != own]
            if not others:
                return revoked
            for token_id in others:
                done = http.post("/users/tokens/revoke", json={"token_id": token_id}, headers=headers)
                revoked += done.status_code == 204
        raise AssertionError("the extension's refresh tokens could not all be revoked")


def _settings_text(vscode: VSCode) -> str:
    return "".join((vscode.user_data / s / "settings.json").read_text("utf-8") for s in ("User", "Machine"))


def test_vscode_sign_in_down_wrong_password_then_revoked(tmp_path: Path, vscode_build: Build) -> None:
    files = {"demo.py": "def add(a, b):"}
    vscode = prepare_vscode(tmp_path, vscode_build, {"cube.server.command": CUBE_LSP}, files)
    backend = ScriptedBackend(domain=RUNTIME_DOMAIN)
    with backend:
        backend.rule = answer
        options = replace(vscode.stack_options(backend.url), access_token_ttl=timedelta(seconds=4))
        stack = StackThread(options)
        running = stack.start()
        password = json.loads(running.paths["state"].read_text("utf-8"))["admin_password"]
        vscode.update_settings({**_cube_settings(running), "cube.authUrl": _closed_port_url()})
        revoked: list[int] = []
        handlers = {
            "auth-up": lambda _: vscode.update_settings({"cube.authUrl": running.auth_url}),
            "signed-in": lambda _: _assert_no_token_in(_settings_text(vscode)),
            "revoke": lambda _: revoked.append(_revoke_other_sessions(running.auth_url, password)),
        }
        try:
            with vscode.serve() as (url, _):
                config = {"url": url, "file": "demo.py", "firstAnswer": FIRST_ANSWER}
                config |= {"username": ADMIN_USERNAME, "password": password}
                config["failureShot"] = "sign-in-failure.png"
                events = drive(vscode, "drive_sign_in.cjs", config, handlers, DRIVER_TIMEOUT_S)
        finally:
            stack.stop()

    assert "did not answer" in events["auth-down"]["toast"], events["auth-down"]
    assert "SIMULATED" not in events["auth-down"]["status"]
    assert "wrong username, email or password" in events["wrong-password"]["toast"]
    assert "signed in" in events["signed-in-toast"]["toast"]
    completed = events["completed"]
    assert "SIMULATED" in completed["status"] and FIRST_ANSWER in completed["ghost"], completed
    # The proxy saw the session's bearer on its requests, i.e. a JWT the auth service issued.
    generate = [r for r in backend.requests if r.route == "generate"]
    assert generate, "no completion reached the runtime"
    assert revoked and revoked[0] >= 1, revoked
    expired = events["expired"]
    assert len(expired["toasts"]) == 1 and "Sign In" in expired["buttons"], expired
    assert "sign in" in expired["status"].lower(), expired


def _assert_no_token_in(settings_text: str) -> None:
    assert "eyJ" not in settings_text and "access_token" not in settings_text, "a token reached settings.json"
