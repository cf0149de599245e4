"""`cube-stack auth serve` as its own process, with `python -m cube_stack.proxy` asking it over gRPC.

No fake stands in for either: the tests start the real auth process on an empty database (PostgreSQL
and a SQLite file), the real proxy process (SIMULATED agent) in front of the SCRIPTED BACKEND as its
model runtime, and drive them as an operator and a client would: the admin commands against the
database, tokens from the HTTP API, requests through the proxy.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from standalone_kit import (
    AuthProcess,
    ProxyProcess,
    clean_environ,
    code_of,
    cube_stack,
    cube_stack_json,
    generate,
    login,
    poll,
)

from tests.support.scripted_backend import ScriptedBackend

pytestmark = pytest.mark.slow

MakeKey = Callable[[str], tuple[Path, str]]


def _key_material(path: Path) -> list[str]:
    """The PEM text of a key and its base64 body, as either could appear in a log line."""
    pem = path.read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return [pem, body, base64.b64decode(body)[-32:].hex()]


def test_migrate_on_an_empty_database_then_again_is_a_no_op(database_url: str) -> None:
    first = cube_stack("auth", "migrate", "--database-url", database_url)
    again = cube_stack("auth", "migrate", "--database-url", database_url)
    assert "schema version 0 -> 3 (applied [1, 2, 3])" in first
    assert "schema already at version 3" in again and "nothing to do" in again


def test_pat_and_jwt_work_through_the_proxy_revocation_and_outage(
    database_url: str,
    make_key: MakeKey,
    scripted_backend: ScriptedBackend,
    agent_state: Path,
) -> None:
    key, kid = make_key("current")
    db = ["--database-url", database_url]
    auth = AuthProcess.serve(
        [*db, "--signing-key", str(key), "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
    )
    proxy = None
    restarted = None
    try:
        domain = cube_stack_json("domain", "create", "Acme", "--route", "acme", *db)["id"]
        pat = cube_stack_json("token", "create", "--domain", domain, "--duration", "1h", *db)
        spare = cube_stack_json("token", "create", "--domain", domain, "--name", "spare", *db)
        jwt = login(auth.http_url)["access_token"]
        assert jwt.count(".") == 2
        runtime = f"{scripted_backend.url}/{scripted_backend.domain}"
        proxy = ProxyProcess.serve(auth, runtime, scripted_backend.token or "", agent_state, decision_ttl="1")

        for token in (pat["token"], jwt):
            response = generate(proxy, domain, token)
            assert response.status_code == 200, response.text
        forged = generate(proxy, domain, "pat_" + "x" * 40)
        assert forged.status_code == 401, forged.text
        cube_stack("user", "create", "bob", "--email", "bob@example.com", "--password", "bob-password", *db)
        bob = login(auth.http_url, "bob", "bob-password")["access_token"]
        outsider = generate(proxy, domain, bob)  # a real user, but no member of the domain
        assert outsider.status_code == 403 and code_of(outsider) == "auth.not_domain_member", outsider.text

        # A PAT revoked before its first use is refused at once; one in use, once its decision expires.
        cube_stack("token", "revoke", spare["id"], *db)
        refused = generate(proxy, domain, spare["token"])
        assert refused.status_code == 401 and code_of(refused) == "auth.pat_revoked", refused.text
        cube_stack("token", "revoke", pat["id"], *db)
        gone = poll(lambda: generate(proxy, domain, pat["token"]), lambda r: r.status_code != 200)
        assert gone.status_code == 401 and code_of(gone) == "auth.pat_revoked", gone.text

        # The auth service stops: cached decisions serve until they expire, then 503; back: 200 again.
        assert auth.stop() == 0
        down = poll(lambda: generate(proxy, domain, jwt), lambda r: r.status_code != 200)
        assert down.status_code == 503 and code_of(down) == "cube_proxy.auth_unavailable", down.text
        restarted = AuthProcess.serve([*db, "--signing-key", str(key), *auth.listen_args])
        back = poll(lambda: generate(proxy, domain, jwt), lambda r: r.status_code == 200)
        assert back.status_code == 200
        profile = httpx.get(f"{restarted.http_url}/users/profile", headers={"Authorization": f"Bearer {jwt}"})
        assert profile.status_code == 200  # the key from the file still signs for the same kid
    finally:
        statuses = [p.stop() for p in (proxy, restarted) if p is not None]
        auth.stop()
    assert statuses == [0] * len(statuses)  # SIGTERM: a clean exit for both services

    logs = auth.output + (restarted.output if restarted else "") + (proxy.output if proxy else "")
    assert f"current={kid}" in auth.output  # the key is named by its kid ...
    for secret in [*_key_material(key), pat["token"], spare["token"], jwt, bob, "bob-password"]:
        assert secret not in logs  # ... and never shown, nor any token


def test_bad_settings_name_the_variable(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "cube_stack.cli", "auth", "serve", "--database-url", str(tmp_path / "a.db")],
        env=clean_environ() | {"CUBE_AUTH_GRPC_LISTEN": "nowhere"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "grpc_listen" in done.stderr and "auth.settings_invalid" in done.stderr
