"""Pure pieces without a database: settings, durations, paging, permissions and PAT strings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import cube_stack.auth as auth
from cube_stack.auth import AuthSettings, AuthSettingsError, MalformedError, Scope
from cube_stack.auth.pats import hash_pat, new_pat, parse_pat_id, pat_matches
from cube_stack.auth.permissions import canonical_scope, normalize_permission, scopes_allow
from cube_stack.auth.validation import parse_duration, parse_paging

DOMAIN = "7f9c2b1e-0000-4000-8000-000000000001"


def test_public_surface() -> None:
    assert sorted(auth.__all__) == sorted(
        [
            "AuthError",
            "AuthService",
            "AuthSettings",
            "AuthSettingsError",
            "AuthenticationError",
            "AuthorizationError",
            "ConflictError",
            "DomainStatus",
            "MalformedError",
            "NotFoundError",
            "PayloadTooLargeError",
            "Principal",
            "Scope",
            "TokenType",
            "UnsupportedMediaTypeError",
            "UserRole",
            "create_auth_app",
        ]
    )
    assert all(hasattr(auth, name) for name in auth.__all__)


def test_production_defaults_are_safe() -> None:
    settings = AuthSettings()
    # OWASP password storage cheat sheet: argon2id, 19 MiB, 2 iterations, 1 lane
    assert (settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism) == (
        19456,
        2,
        1,
    )
    assert settings.allow_self_register is False
    assert settings.issuer == "supermq.auth"
    assert settings.access_token_ttl == timedelta(hours=1) and settings.refresh_token_ttl == timedelta(
        hours=24
    )
    assert settings.sqlite_synchronous == "full"
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")


def test_settings_from_env(tmp_path: Path) -> None:
    settings = AuthSettings.from_env(
        {
            "CUBE_AUTH_ACCESS_TOKEN_TTL": "12h",
            "CUBE_AUTH_ALLOW_SELF_REGISTER": "true",
            "CUBE_AUTH_MAX_BODY_BYTES": "2048",
            "CUBE_AUTH_DATA_DIR": str(tmp_path),
            "CUBE_AUTH_DATABASE_SCHEMA": "auth",
            "UNRELATED": "x",
        }
    )
    assert settings.access_token_ttl == timedelta(hours=12)
    assert settings.allow_self_register is True and settings.max_body_bytes == 2048
    assert settings.data_dir == tmp_path and settings.database_schema == "auth"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"CUBE_AUTH_ALLOW_SELF_REGISTER": "maybe"}, "CUBE_AUTH_ALLOW_SELF_REGISTER"),
        ({"CUBE_AUTH_MAX_BODY_BYTES": "lots"}, "CUBE_AUTH_MAX_BODY_BYTES"),
        ({"CUBE_AUTH_ACCESS_TOKEN_TTL": "forever"}, "CUBE_AUTH_ACCESS_TOKEN_TTL"),
        ({"CUBE_AUTH_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"CUBE_AUTH_DATABASE_SCHEMA": "Robert'); DROP"}, "database_schema"),
        ({"CUBE_AUTH_ARGON2_MEMORY_KIB": "4"}, "argon2_memory_kib"),
        ({"CUBE_AUTH_ACCESS_TOKEN_TTL": "0s"}, "access_token_ttl"),
        ({"CUBE_AUTH_PASSWORD_PATTERN": "("}, "password_pattern"),
        ({"CUBE_AUTH_ADMIN_USERNAME": "root"}, "admin_username"),
        ({"CUBE_AUTH_SQLITE_SYNCHRONOUS": "sometimes"}, "sqlite_synchronous"),
    ],
)
def test_bad_settings_name_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(AuthSettingsError) as info:
        AuthSettings.from_env(env)
    assert info.value.field == field and info.value.code == "auth.settings_invalid"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("720h", 720 * 3600),
        ("1h30m", 5400),
        ("90s", 90),
        ("1.5h", 5400),
        ("30d", 30 * 86400),
        ("2w", 14 * 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1y", "h", "-1h", "1h-", "1 h", "5", "1h" * 40])
def test_bad_durations(text: str) -> None:
    with pytest.raises(MalformedError) as info:
        parse_duration(text)
    assert info.value.code == "auth.invalid_duration"


def test_paging() -> None:
    assert parse_paging({}) == (0, 10)
    assert parse_paging({"offset": "5", "limit": "100"}) == (5, 100)
    for bad in ({"limit": "0"}, {"limit": "101"}, {"offset": "-1"}, {"limit": "x"}):
        with pytest.raises(MalformedError):
            parse_paging(bad)


@pytest.mark.parametrize(
    ("permission", "action"),
    [
        ("llm_chat_completions_permission", "llm_chat_completions"),
        ("llm_read", "llm_read"),
        ("membership", "membership"),
        ("admin", "admin"),
        ("audit_log_permission", "audit_log_read"),
        ("read_permission", "read"),
    ],
)
def test_normalize_permission(permission: str, action: str) -> None:
    assert normalize_permission(permission) == action


@pytest.mark.parametrize("permission", ["", "_permission", "client_create", "llm", "ADMIN"])
def test_unknown_permissions(permission: str) -> None:
    with pytest.raises(MalformedError):
        normalize_permission(permission)


def test_scope_aliases() -> None:
    assert canonical_scope("llm", "chat") == ("llm", "chat_completions")
    assert canonical_scope("llm", "models/read") == ("llm", "read")
    assert canonical_scope("domains", "manage") == ("domains", "*")
    for entity_type, operation in (("groups", "read"), ("llm", "publish"), ("domains", "chat")):
        with pytest.raises(MalformedError):
            canonical_scope(entity_type, operation)


def _s(domain: str, entity_type: str, operation: str, entity_id: str = "*") -> Scope:
    return Scope("id", domain, entity_type, entity_id, operation)


@pytest.mark.parametrize(
    ("scopes", "action", "allowed"),
    [
        ([_s(DOMAIN, "llm", "chat_completions")], "llm_chat_completions", True),
        ([_s(DOMAIN, "llm", "chat_completions")], "llm_completions", False),
        ([_s(DOMAIN, "llm", "chat_completions")], "membership", True),
        ([_s("*", "llm", "*")], "llm_embeddings", True),
        ([_s("*", "llm", "*")], "read", False),
        ([_s(DOMAIN, "domains", "*")], "admin", True),
        ([_s(DOMAIN, "domains", "read")], "admin", False),
        ([_s(DOMAIN, "audit_log", "read")], "audit_log_read", True),
        ([_s("other", "llm", "*")], "llm_read", False),
        ([_s("other", "llm", "*")], "membership", False),
        ([_s(DOMAIN, "llm", "read", entity_id="some-model")], "llm_read", False),
        ([], "membership", False),
    ],
)
def test_scopes_allow(scopes: list[Scope], action: str, allowed: bool) -> None:
    assert scopes_allow(scopes, DOMAIN, action) is allowed


def test_pat_strings() -> None:
    token = new_pat(DOMAIN)
    assert token.startswith("pat_") and token.count("_") == 2 and len(token) == 4 + 32 + 1 + 64
    assert parse_pat_id(token) == DOMAIN
    assert pat_matches(token, hash_pat(token))
    assert not pat_matches(token, hash_pat(new_pat(DOMAIN)))
    assert new_pat(DOMAIN) != token
