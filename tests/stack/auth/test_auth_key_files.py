"""The signing key lives in its own 0600 file, never in the database; forged tokens get nowhere.

The attacks of issue 8, finding 1, against a real uvicorn: a local user who can read the database finds
no private key in it; a token signed with any other key is refused; a token signed with the service's
own key (as if the key file leaked) for a subject that names no user, or for a disabled user, is refused
even when it claims the admin role; and a demoted admin's old token is no longer admin.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cube_auth_testkit import ADMIN, Account, FakeClock, assert_error, bearer, make_domain, serve
from sqlalchemy import insert, select, update

from cube_stack.auth import AuthenticationError, AuthService, AuthSettings, TokenType, create_auth_app
from cube_stack.auth import migrations as migmod
from cube_stack.auth.errors import SigningKeyError
from cube_stack.auth.keyfiles import KeyDirectory
from cube_stack.auth.keys import ACTIVE, RETIRED, generate_signing_key, private_pem
from cube_stack.auth.models import UserRole, UserStatus
from cube_stack.auth.pats import hash_pat, new_pat
from cube_stack.auth.schema import pats, signing_keys, users
from cube_stack.auth.store import create_engine
from cube_stack.auth.tokens import Claims, encode_token
from cube_stack.net import bind_tcp


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sqlite_settings(data_dir: Path, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "data_dir": data_dir,  # default URL: SQLite in the data dir, as `cube-stack up` runs it
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "sqlite_synchronous": "off",
        "admin_username": ADMIN["username"],
        "admin_email": ADMIN["email"],
        "admin_password": ADMIN["password"],
    }
    values.update(overrides)
    return AuthSettings(**values)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _forge(key: Ed25519PrivateKey, kid: str, subject: str, *, role: int = 2, **extra: Any) -> str:
    now = int(FakeClock()().timestamp())
    claims = {"iss": "supermq.auth", "sub": subject, "iat": now, "exp": now + 600, "type": 0, "role": role}
    return jwt.encode({**claims, "verified": True, **extra}, key, "EdDSA", headers={"kid": kid})


def _stolen_key(service: AuthService) -> tuple[Ed25519PrivateKey, str]:
    """Read the active private key from its file, as an attacker who could read the file would."""
    files = sorted(service.key_files.path.glob("*.pem"))
    assert len(files) == 1, files
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(files[0].read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key, files[0].stem


# --- file and directory modes ------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True, ids=["umask022", "umask000"])
async def test_key_file_0600_in_a_0700_directory_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    settings = _sqlite_settings(tmp_path / "data")
    service = await AuthService.open(settings)
    try:
        key_dir = settings.effective_signing_key_dir
        assert key_dir == tmp_path / "data" / "keys"
        assert _mode(key_dir) == 0o700
        await service.rotate_signing_key()
        files = sorted(key_dir.iterdir())
        assert len(files) == 2 and all(f.suffix == ".pem" for f in files)
        assert [_mode(f) for f in files] == [0o600, 0o600]
        kids = {f.stem for f in files}
        assert (await service.keyring()).active.kid in kids
    finally:
        await service.close()


async def test_the_database_holds_no_private_key(tmp_path: Path) -> None:
    settings = _sqlite_settings(tmp_path)
    service = await AuthService.open(settings)
    try:
        await service.rotate_signing_key()
        async with service.store.engine.connect() as conn:
            rows = (await conn.execute(select(signing_keys.c.kid, signing_keys.c.private_key))).all()
        assert len(rows) == 2 and all(r.private_key is None for r in rows)
    finally:
        await service.close()
    # What another local user reading the database files would see: no key anywhere in them.
    for name in ("auth.db", "auth.db-wal", "auth.db-shm"):
        if (tmp_path / name).exists():
            assert b"PRIVATE KEY" not in (tmp_path / name).read_bytes(), name


@pytest.mark.parametrize(
    ("target", "mode", "code", "chmod"),
    [
        ("file", 0o644, "auth.key_file_permissions", "chmod 600"),
        ("file", 0o640, "auth.key_file_permissions", "chmod 600"),
        ("dir", 0o755, "auth.key_dir_permissions", "chmod 700"),
        ("dir", 0o710, "auth.key_dir_permissions", "chmod 700"),
    ],
)
async def test_start_refused_when_keys_are_open_to_others(
    tmp_path: Path, target: str, mode: int, code: str, chmod: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _sqlite_settings(tmp_path)
    await (await AuthService.open(settings)).close()
    key_dir = settings.effective_signing_key_dir
    path = key_dir if target == "dir" else next(key_dir.glob("*.pem"))
    path.chmod(mode)

    with pytest.raises(SigningKeyError) as raised:
        await AuthService.open(settings)

    assert raised.value.code == code and raised.value.path == str(path)
    assert f"{chmod} {path}" in raised.value.message
    # The real server refuses to start too: its lifespan fails and uvicorn returns without serving.
    caplog.set_level(logging.ERROR, logger="uvicorn.error")
    sock = bind_tcp("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_auth_app(settings), lifespan="on", log_config=None))
    try:
        with pytest.raises(SystemExit) as exited:
            await server.serve(sockets=[sock])
    finally:
        sock.close()
    assert exited.value.code == 3 and not server.started  # uvicorn's start-up failure
    assert any(f"{chmod} {path}" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root"
)
@pytest.mark.parametrize("target", ["file", "dir"])
async def test_start_refused_when_another_user_owns_the_keys(tmp_path: Path, target: str) -> None:
    settings = _sqlite_settings(tmp_path)
    await (await AuthService.open(settings)).close()
    key_dir = settings.effective_signing_key_dir
    path = key_dir if target == "dir" else next(key_dir.glob("*.pem"))
    os.chown(path, 65534, 65534)  # nobody: who could then swap the key for one they know

    with pytest.raises(SigningKeyError) as raised:
        await AuthService.open(settings)

    assert raised.value.code == "auth.key_owner" and raised.value.path == str(path)


async def test_start_refused_when_the_active_key_file_is_missing_or_wrong(tmp_path: Path) -> None:
    settings = _sqlite_settings(tmp_path)
    await (await AuthService.open(settings)).close()
    key_file = next(settings.effective_signing_key_dir.glob("*.pem"))

    other = generate_signing_key()
    original = key_file.read_bytes()
    key_file.write_bytes(private_pem(other))  # a valid key, but not the one the database names
    with pytest.raises(SigningKeyError) as wrong:
        await AuthService.open(settings)
    assert wrong.value.code == "auth.signing_key_mismatch"

    key_file.write_bytes(b"not a key")
    with pytest.raises(SigningKeyError) as garbage:
        await AuthService.open(settings)
    assert garbage.value.code == "auth.signing_key_invalid"

    key_file.unlink()
    with pytest.raises(SigningKeyError) as missing:
        await AuthService.open(settings)
    assert missing.value.code == "auth.signing_key_missing" and missing.value.path == str(key_file)

    key_file.write_bytes(original)
    key_file.chmod(0o600)
    await (await AuthService.open(settings)).close()  # restored: starts again


def test_an_existing_key_file_is_never_overwritten_or_followed(tmp_path: Path) -> None:
    files = KeyDirectory(tmp_path / "keys")
    files.prepare()
    key = generate_signing_key()
    target = tmp_path / "elsewhere"
    files.key_path(key.kid).symlink_to(target)  # planted by someone else

    with pytest.raises(FileExistsError):
        files.write(key)

    assert not target.exists()


def test_a_kid_that_is_not_a_thumbprint_names_no_file(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError) as raised:
        KeyDirectory(tmp_path).key_path("../../etc/passwd")
    assert raised.value.code == "auth.signing_key_invalid"


async def test_replicas_sharing_a_key_directory_sign_with_one_key(
    settings: AuthSettings, clock: FakeClock
) -> None:
    first = await AuthService.open(settings, clock=clock)
    second = await AuthService.open(settings, clock=clock)
    try:
        assert (await first.keyring()).active.kid == (await second.keyring()).active.kid
        pair = await second.issue_tokens(ADMIN["username"], ADMIN["password"])
        assert (await first.authenticate(pair.access_token)).role is UserRole.ADMIN
    finally:
        await first.close()
        await second.close()


# --- forged tokens against the real auth API ----------------------------------------------------------


@pytest.fixture
async def served(settings: AuthSettings, service: AuthService) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_auth_app(settings, service=service)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        yield client


async def test_token_signed_with_another_key_is_refused(
    served: httpx.AsyncClient, service: AuthService
) -> None:
    admin = await service.store.find_user(ADMIN["username"])
    assert admin is not None
    ring = await service.keyring()
    foreign = Ed25519PrivateKey.generate()
    for kid in (ring.active.kid, "attacker-key"):  # the real kid, and one the service never had
        token = _forge(foreign, kid, admin.id)
        response = await served.get("/domains", headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.json()["code"] in {"auth.invalid_token", "auth.unknown_key"}


async def test_admin_token_for_a_subject_that_names_no_user_is_refused(
    served: httpx.AsyncClient, service: AuthService, admin_token: str
) -> None:
    await make_domain(served, admin_token, "acme")
    key, kid = _stolen_key(service)
    control = _forge(key, kid, (await service.authenticate(admin_token)).user_id)
    assert (await served.get("/domains", headers=bearer(control))).json()["total"] == 1  # the key is right

    forged = _forge(key, kid, str(uuid.uuid4()), role=2)
    for path in ("/domains", "/users/profile"):
        assert_error(await served.get(path, headers=bearer(forged)), 401, "auth.unknown_subject")


async def test_token_of_a_disabled_user_is_refused(
    served: httpx.AsyncClient, service: AuthService, alice: Account
) -> None:
    async with service.store.engine.begin() as conn:
        await conn.execute(
            update(users).where(users.c.id == alice.id).values(status=UserStatus.DISABLED.value)
        )

    assert_error(await served.get("/domains", headers=bearer(alice.access_token)), 401, "auth.user_disabled")


async def test_a_demoted_admins_old_token_is_no_longer_admin(
    served: httpx.AsyncClient, service: AuthService, admin_token: str, alice: Account
) -> None:
    await make_domain(served, alice.access_token, "alices")
    key, kid = _stolen_key(service)
    # alice's token claims the admin role (e.g. issued before a demotion); the database says user
    claims_admin = _forge(key, kid, alice.id, role=2)
    admin_id = (await service.authenticate(admin_token)).user_id
    other = await make_domain(served, admin_token, "admins")
    async with service.store.engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == admin_id).values(role=int(UserRole.USER)))

    listed = (await served.get("/domains", headers=bearer(claims_admin))).json()
    assert [d["route"] for d in listed["domains"]] == ["alices"]
    assert (await served.get("/users/profile", headers=bearer(claims_admin))).json()["role"] == "user"
    # the demoted admin's own token, issued while admin, sees only the domains they belong to
    assert_error(
        await served.get(f"/domains/{other['id']}", headers=bearer(claims_admin)),
        403,
        "auth.not_domain_member",
    )
    profile = await served.get("/users/profile", headers=bearer(admin_token))
    assert profile.json()["role"] == "user"


# --- migration of a database that held private keys ---------------------------------------------------


async def test_migration_retires_and_erases_keys_the_database_held(
    fresh_database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = AuthSettings(
        database_url=fresh_database.url,
        database_schema=fresh_database.schema,
        data_dir=tmp_path,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        sqlite_synchronous="off",
    )
    # A version-1 database as the old service left it: the private key in plain text in the table.
    engine = create_engine(settings)
    old_key = generate_signing_key()
    pem = private_pem(old_key).decode()
    pat_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    pat_secret = new_pat(pat_id)
    clock = FakeClock()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(migmod, "MIGRATIONS", migmod.MIGRATIONS[:1])
            patch.setattr(migmod, "LATEST_VERSION", 1)
            assert await migmod.migrate(engine) == [1]
        async with engine.begin() as conn:
            await conn.execute(
                insert(users).values(
                    id=user_id,
                    username="dave",
                    email="dave@example.com",
                    first_name="D",
                    last_name="T",
                    password_hash="x",
                    role=int(UserRole.USER),
                    status="enabled",
                    tags=[],
                    metadata={},
                    created_at=clock(),
                    updated_at=None,
                    verified_at=clock(),
                )
            )
            await conn.execute(
                insert(pats).values(
                    id=pat_id,
                    user_id=user_id,
                    name="ci",
                    description="",
                    secret_hash=hash_pat(pat_secret),
                    issued_at=clock(),
                    expires_at=clock().replace(year=2030),
                    updated_at=None,
                    last_used_at=None,
                    revoked=False,
                    revoked_at=None,
                )
            )
            await conn.execute(
                insert(signing_keys).values(
                    kid=old_key.kid,
                    algorithm="EdDSA",
                    private_key=pem,
                    public_key=old_key.x,
                    state=ACTIVE,
                    created_at=clock(),
                    retired_at=None,
                )
            )
    finally:
        await engine.dispose()
    now = clock()
    old_token = encode_token(
        old_key,
        issuer=settings.issuer,
        claims=Claims(user_id, TokenType.ACCESS, UserRole.USER, True, now, now + timedelta(hours=1)),
    )

    caplog.set_level(logging.WARNING, logger="cube_stack.auth")
    service = await AuthService.open(settings, clock=clock)
    try:
        warnings = [r for r in caplog.records if getattr(r, "event", None) == "auth.signing_keys_exposed"]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert warnings[0].count == 1  # type: ignore[attr-defined]
        pem_body = pem.splitlines()[1]
        assert not any(pem_body in r.getMessage() + repr(r.__dict__) for r in caplog.records)

        async with service.store.engine.connect() as conn:
            rows = {r.kid: r for r in await conn.execute(select(signing_keys))}
        assert rows[old_key.kid].state == RETIRED and rows[old_key.kid].private_key is None
        assert rows[old_key.kid].retired_at is not None
        active = [r for r in rows.values() if r.state == ACTIVE]
        assert len(active) == 1 and active[0].kid != old_key.kid and active[0].private_key is None
        key_file = service.key_files.key_path(active[0].kid)
        assert _mode(key_file) == 0o600

        with pytest.raises(AuthenticationError) as refused:  # tokens of the exposed key: log in again
            await service.authenticate(old_token)
        assert refused.value.code == "auth.unknown_key"
        principal = await service.authenticate(pat_secret)  # PATs are hashes: unaffected
        assert principal.user_id == user_id and principal.is_pat
        assert await migmod.migrate(service.store.engine) == []
    finally:
        await service.close()
