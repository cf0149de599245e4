"""Signing-key rotation across restarts of `cube-stack auth serve`, and the proxy's gRPC over mTLS.

Rotation as docs/auth.md tells an operator to do it: make a new key, restart with it as the current
key and the old one as a previous key. Tokens the old key signed keep working (at the auth service and
through a proxy that was running all along) until they expire; new tokens carry the new kid; the JWKS
lists both. SQLite keeps these quick; the PostgreSQL path is in test_auth_serve.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest
from standalone_kit import AuthProcess, ProxyProcess, code_of, cube_stack_json, generate, login, poll

from tests.support.scripted_backend import ScriptedBackend, TlsFiles

pytestmark = pytest.mark.slow

MakeKey = Callable[[str], tuple[Path, str]]
TTL_SECONDS = 10  # access tokens live this long here: long enough for a restart, short to wait out


def _kid(token: str) -> str:
    return str(pyjwt.get_unverified_header(token)["kid"])


def _jwks_kids(auth: AuthProcess) -> list[str]:
    document = httpx.get(f"{auth.http_url}/keys/.well-known/jwks.json", timeout=10).json()
    return [key["kid"] for key in document["keys"]]


def test_rotation_keeps_old_tokens_until_they_expire_and_signs_new_ones_with_the_new_kid(
    tmp_path: Path, make_key: MakeKey, scripted_backend: ScriptedBackend, agent_state: Path
) -> None:
    old_key, old_kid = make_key("2026-11")
    new_key, new_kid = make_key("2026-12")
    db = ["--database-url", str(tmp_path / "auth.db"), "--access-token-ttl", f"{TTL_SECONDS}s"]
    first = AuthProcess.serve(
        [*db, "--signing-key", str(old_key), "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
    )
    rotated = proxy = None
    try:
        domain = cube_stack_json("domain", "create", "Acme", "--route", "acme", "--database-url", db[1])["id"]
        old_token = login(first.http_url)["access_token"]
        assert _kid(old_token) == old_kid and _jwks_kids(first) == [old_kid]
        runtime = f"{scripted_backend.url}/{scripted_backend.domain}"
        proxy = ProxyProcess.serve(
            first, runtime, scripted_backend.token or "", agent_state, decision_ttl="1"
        )
        assert generate(proxy, domain, old_token).status_code == 200

        assert first.stop() == 0
        rotated = AuthProcess.serve(
            [*db, "--signing-key", str(new_key), "--previous-signing-key", str(old_key), *first.listen_args]
        )
        assert f"current={new_kid} previous={old_kid}" in rotated.output
        assert _jwks_kids(rotated) == [new_kid, old_kid]  # the current key first, as SuperMQ
        new_token = login(rotated.http_url)["access_token"]
        assert _kid(new_token) == new_kid
        for token in (old_token, new_token):  # the proxy refetches the JWKS for the new kid
            response = poll(lambda t=token: generate(proxy, domain, t), lambda r: r.status_code != 503)
            assert response.status_code == 200, response.text

        # The old token expires as it would have without the rotation; the new one outlives it.
        expired = poll(
            lambda: generate(proxy, domain, old_token),
            lambda r: r.status_code != 200,
            timeout=TTL_SECONDS + 5,
        )
        assert expired.status_code == 401, expired.text
        profile = httpx.get(
            f"{rotated.http_url}/users/profile", headers={"Authorization": f"Bearer {old_token}"}
        )
        assert profile.status_code == 401
    finally:
        for process in (proxy, rotated, first):
            if process is not None:
                process.stop()

    third = AuthProcess.serve(
        [*db, "--signing-key", str(new_key), "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
    )
    try:
        assert _jwks_kids(third) == [new_kid]  # the old key dropped: nothing it signed verifies any more
    finally:
        assert third.stop() == 0


def test_a_public_key_is_enough_for_a_previous_key(tmp_path: Path, make_key: MakeKey) -> None:
    from cryptography.hazmat.primitives import serialization

    old_key, old_kid = make_key("old")
    new_key, new_kid = make_key("new")
    private = serialization.load_pem_private_key(old_key.read_bytes(), password=None)
    public = tmp_path / "keys" / "old.pub.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    public.chmod(0o600)
    auth = AuthProcess.serve(
        [
            "--database-url",
            str(tmp_path / "auth.db"),
            "--signing-key",
            str(new_key),
            "--previous-signing-key",
            str(public),
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ]
    )
    try:
        assert _jwks_kids(auth) == [new_kid, old_kid]
    finally:
        assert auth.stop() == 0


def test_a_key_file_others_can_read_is_refused(tmp_path: Path, make_key: MakeKey) -> None:
    import subprocess
    import sys

    from standalone_kit import clean_environ

    key, _ = make_key("open")
    key.chmod(0o644)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cube_stack.cli",
            "auth",
            "serve",
            "--database-url",
            str(tmp_path / "a.db"),
            "--signing-key",
            str(key),
        ],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "auth.key_file_permissions" in done.stderr
    assert key.read_text() not in done.stderr


def test_the_proxy_reaches_auth_over_mutual_tls(
    tmp_path: Path,
    make_key: MakeKey,
    tls_files: TlsFiles,
    scripted_backend: ScriptedBackend,
    agent_state: Path,
) -> None:
    key, _ = make_key("current")
    db = str(tmp_path / "auth.db")
    auth = AuthProcess.serve(
        [
            "--database-url",
            db,
            "--signing-key",
            str(key),
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--grpc-tls-cert",
            str(tls_files.server_cert),
            "--grpc-tls-key",
            str(tls_files.server_key),
            "--grpc-tls-client-ca",
            str(tls_files.ca_bundle),
        ]
    )
    proxies: list[ProxyProcess] = []
    try:
        assert "grpc_tls=true" in auth.output
        domain = cube_stack_json("domain", "create", "Acme", "--route", "acme", "--database-url", db)["id"]
        pat = cube_stack_json("token", "create", "--domain", domain, "--database-url", db)["token"]
        runtime = f"{scripted_backend.url}/{scripted_backend.domain}"
        common = (auth, runtime, scripted_backend.token or "", agent_state)
        mutual = ProxyProcess.serve(
            *common,
            auth_grpc_ca=str(tls_files.ca_bundle),
            auth_grpc_client_cert=str(tls_files.client_cert),
            auth_grpc_client_key=str(tls_files.client_key),
        )
        proxies.append(mutual)
        assert generate(mutual, domain, pat).status_code == 200
        no_client_cert = ProxyProcess.serve(*common, auth_grpc_ca=str(tls_files.ca_bundle))
        proxies.append(no_client_cert)
        refused = generate(no_client_cert, domain, pat)
        assert refused.status_code == 503 and code_of(refused) == "cube_proxy.auth_unavailable"
    finally:
        for proxy in proxies:
            proxy.stop()
        assert auth.stop() == 0
    assert json.dumps(pat) not in auth.output + "".join(p.output for p in proxies)
