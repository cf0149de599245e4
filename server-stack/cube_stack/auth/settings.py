"""Settings of the auth service: one frozen dataclass, validated on construction, readable from env.

Every field has a type, a default and a one-line doc; :meth:`AuthSettings.from_env` reads
``CUBE_AUTH_<FIELD>`` variables (``CUBE_AUTH_ACCESS_TOKEN_TTL=12h``) and fails with the variable's name.
Production defaults are the safe ones: self-registration off, argon2id with OWASP's parameters.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import platformdirs

from cube_stack.auth.errors import AuthSettingsError, MalformedError
from cube_stack.auth.validation import parse_duration

ENV_PREFIX = "CUBE_AUTH_"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def default_data_dir() -> Path:
    """Return the per-user data directory of the embedded auth service."""
    return platformdirs.user_data_path("cube-stack") / "auth"


@dataclass(frozen=True)
class AuthSettings:
    """How the auth service stores data, signs tokens and treats users."""

    # SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db; also accepted
    # and rewritten to those: postgresql://..., postgres://..., sqlite:///path, or a bare file path.
    # Unset (empty): SQLite at <data_dir>/auth.db.
    database_url: str = ""
    database_schema: str | None = None  # PostgreSQL schema (search_path); unset: the server's default
    data_dir: Path = field(default_factory=default_data_dir)  # where the embedded SQLite file lives
    # Directory of the Ed25519 signing keys, one <kid>.pem (PKCS#8, 0600) each; must be 0700. Every
    # replica signing tokens needs the active key's file (share the directory, e.g. a mounted volume);
    # the database holds only kid, state and public key. Unset: <data_dir>/keys.
    signing_key_dir: Path | None = None
    # Operator-held keys instead of that directory: the current Ed25519 key (PKCS#8 PEM, 0600, owned by
    # this user) signs every new token under its kid (RFC 7638 thumbprint); the database's key table is
    # then not used. Unset: keys are made and kept in signing_key_dir.
    signing_key_file: Path | None = None
    # Earlier current keys (private or public PEM files) whose tokens still verify until they expire;
    # published in the JWKS after the current key. Needs signing_key_file. Env: an os.pathsep list.
    previous_signing_keys: tuple[Path, ...] = ()
    # SQLite PRAGMA synchronous: "full" syncs every commit (a revocation survives power loss);
    # "normal" or "off" are faster and meant for tests and throw-away data.
    sqlite_synchronous: str = "full"
    issuer: str = "supermq.auth"  # JWT `iss`; SuperMQ clients check this exact value
    access_token_ttl: timedelta = timedelta(hours=1)  # SuperMQ's default MG_AUTH_ACCESS_TOKEN_DURATION
    refresh_token_ttl: timedelta = timedelta(hours=24)  # SuperMQ's default MG_AUTH_REFRESH_TOKEN_DURATION
    pat_max_ttl: timedelta = timedelta(days=365)  # longest lifetime a personal access token may ask for
    allow_self_register: bool = False  # true: anonymous POST /users creates a plain user (role ignored)
    password_pattern: str = r"^.{8,}$"  # every password must match (SuperMQ's MG_USERS_PASS_REGEX default)
    # argon2id parameters; defaults are OWASP's (19 MiB, 2 iterations, 1 lane). Lower only in tests.
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    max_body_bytes: int = 64 * 1024  # larger request bodies get 413 before they are read
    key_reload_interval: timedelta = timedelta(seconds=30)  # least time between key reloads on unknown kid
    jwks_max_age: int = 900  # Cache-Control max-age of the JWKS, as SuperMQ
    # Login back-off, kept in memory per process (each replica counts on its own): after `threshold`
    # consecutive failed logins for one account (or from one client address) every further attempt is
    # refused with 429 + Retry-After, without checking the password, for a delay that starts at
    # `login_backoff_base` and doubles with each further failure up to the cap. A success resets the
    # account's count. Threshold 0 turns that throttle off.
    login_backoff_account_threshold: int = 5
    login_backoff_account_cap: timedelta = timedelta(seconds=60)  # short: a user is never locked out long
    login_backoff_address_threshold: int = 20
    # Short as well: on one machine every client shares 127.0.0.1, so a long address lock-out would
    # let any local process keep the real user from logging in.
    login_backoff_address_cap: timedelta = timedelta(seconds=120)
    login_backoff_base: timedelta = timedelta(seconds=1)  # the first delay after the threshold
    login_backoff_forget_after: timedelta = timedelta(minutes=15)  # a count idle this long is dropped
    login_backoff_entries: int = 10_000  # most accounts (and addresses) remembered; least recent go first
    # Bootstrap super admin, created at start when all three are set and the username is free.
    admin_username: str | None = None
    admin_email: str | None = None
    admin_password: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "database_url", normalize_database_url(self.database_url))
        if self.previous_signing_keys and self.signing_key_file is None:
            raise AuthSettingsError("previous_signing_keys", "needs signing_key_file (the current key)")
        if self.database_url and not self.database_url.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://")
        ):
            raise AuthSettingsError(
                "database_url", "expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL"
            )
        if self.sqlite_synchronous not in ("full", "normal", "off"):
            raise AuthSettingsError("sqlite_synchronous", "expected full, normal or off")
        if self.database_schema is not None and not _SCHEMA_NAME.match(self.database_schema):
            raise AuthSettingsError("database_schema", "expected a lower-case SQL identifier")
        for name in ("access_token_ttl", "refresh_token_ttl", "pat_max_ttl"):
            if getattr(self, name) <= timedelta(0):
                raise AuthSettingsError(name, "must be positive")
        if self.argon2_time_cost < 1 or self.argon2_parallelism < 1:
            raise AuthSettingsError("argon2_time_cost", "time cost and parallelism must be at least 1")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise AuthSettingsError("argon2_memory_kib", "must be at least 8 KiB per lane")
        for name in ("login_backoff_account_threshold", "login_backoff_address_threshold"):
            if getattr(self, name) < 0:
                raise AuthSettingsError(name, "must be 0 (off) or more")
        for name in ("login_backoff_base", "login_backoff_forget_after"):
            if getattr(self, name) <= timedelta(0):
                raise AuthSettingsError(name, "must be positive")
        for name in ("login_backoff_account_cap", "login_backoff_address_cap"):
            if getattr(self, name) < self.login_backoff_base:
                raise AuthSettingsError(name, "must be at least login_backoff_base")
        if self.login_backoff_entries < 1:
            raise AuthSettingsError("login_backoff_entries", "must be at least 1")
        if self.max_body_bytes < 1024:
            raise AuthSettingsError("max_body_bytes", "must be at least 1024")
        try:
            re.compile(self.password_pattern)
        except re.error as exc:
            raise AuthSettingsError("password_pattern", f"not a regular expression: {exc}") from None
        admin = (self.admin_username, self.admin_email, self.admin_password)
        if any(admin) and not all(admin):
            raise AuthSettingsError(
                "admin_username", "set admin_username, admin_email and admin_password together"
            )

    @property
    def effective_database_url(self) -> str:
        """Return the database URL, defaulting to SQLite in the data directory."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'auth.db'}"

    @property
    def effective_signing_key_dir(self) -> Path:
        """Return the signing key directory, defaulting to ``<data_dir>/keys``."""
        return self.signing_key_dir if self.signing_key_dir is not None else self.data_dir / "keys"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> AuthSettings:
        """Build settings from ``CUBE_AUTH_*`` variables; ``overrides`` win over the environment."""
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name not in environ:
                continue
            raw = environ[name]
            values[f.name] = _convert(name, f.type, raw)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def normalize_database_url(url: str) -> str:
    """Return ``url`` in the driver form SQLAlchemy needs (asyncpg, aiosqlite); others pass unchanged.

    ``postgresql://`` and ``postgres://`` become ``postgresql+asyncpg://``; ``sqlite:///path`` and a
    bare file path (no scheme) become ``sqlite+aiosqlite:///path``.
    """
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url.removeprefix(plain)
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    if url and "://" not in url:
        return f"sqlite+aiosqlite:///{Path(url).expanduser().resolve()}"
    return url


def redacted_database_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and messages)."""
    return re.sub(r"^([a-z0-9+]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _convert(name: str, kind: object, raw: str) -> object:
    kind = str(kind)
    if kind == "tuple[Path, ...]":
        return tuple(Path(part) for part in raw.split(os.pathsep) if part)
    if kind == "bool":
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise AuthSettingsError(name, f"expected true or false, got {raw!r}")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise AuthSettingsError(name, f"expected an integer, got {raw!r}") from None
    if kind == "timedelta":
        try:
            return parse_duration(raw, name)
        except MalformedError:
            raise AuthSettingsError(name, f"expected a duration such as '1h', got {raw!r}") from None
    if kind in ("Path", "Path | None"):
        return Path(raw) if raw or kind == "Path" else None
    return raw or None if "None" in kind else raw
