"""Settings of `cube-stack auth serve`: URLs as operators write them, listen addresses, TLS, the docs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from cube_stack.auth import AuthSettings, AuthSettingsError
from cube_stack.auth.settings import ENV_PREFIX, normalize_database_url, redacted_database_url
from cube_stack.auth.standalone import ServeOptions, parse_listen
from cube_stack.cli import auth_environ, build_parser

DOCS = Path(__file__).resolve().parents[3] / "docs" / "auth.md"


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        ("postgresql://cube@db/auth", "postgresql+asyncpg://cube@db/auth"),
        ("postgres://cube:pw@db:5433/auth", "postgresql+asyncpg://cube:pw@db:5433/auth"),
        ("postgresql+asyncpg://cube@db/auth", "postgresql+asyncpg://cube@db/auth"),
        ("sqlite:////var/lib/auth.db", "sqlite+aiosqlite:////var/lib/auth.db"),
        ("/var/lib/auth.db", "sqlite+aiosqlite:////var/lib/auth.db"),
        ("", ""),
    ],
)
def test_database_urls_as_operators_write_them(given: str, wanted: str) -> None:
    assert normalize_database_url(given) == wanted
    assert AuthSettings(database_url=given).database_url == wanted


def test_a_database_password_is_masked() -> None:
    assert (
        redacted_database_url("postgresql+asyncpg://cube:s3cret@db/auth")
        == "postgresql+asyncpg://cube:***@db/auth"
    )
    assert redacted_database_url("postgresql+asyncpg://cube@db/auth") == "postgresql+asyncpg://cube@db/auth"


def test_other_schemes_are_refused() -> None:
    with pytest.raises(AuthSettingsError) as caught:
        AuthSettings(database_url="mysql://db/auth")
    assert caught.value.field == "database_url"


def test_previous_keys_need_a_current_key_and_read_as_a_path_list() -> None:
    with pytest.raises(AuthSettingsError) as caught:
        AuthSettings(previous_signing_keys=(Path("/old.pem"),))
    assert caught.value.field == "previous_signing_keys"
    settings = AuthSettings.from_env(
        {"CUBE_AUTH_SIGNING_KEY_FILE": "/new.pem", "CUBE_AUTH_PREVIOUS_SIGNING_KEYS": "/a.pem:/b.pem"}
    )
    assert settings.previous_signing_keys == (Path("/a.pem"), Path("/b.pem"))


@pytest.mark.parametrize(
    ("value", "wanted"),
    [("127.0.0.1:8189", ("127.0.0.1", 8189)), ("[::1]:0", ("::1", 0)), ("0.0.0.0:8181", ("0.0.0.0", 8181))],
)
def test_listen_addresses(value: str, wanted: tuple[str, int]) -> None:
    assert parse_listen("http_listen", value) == wanted


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"http_listen": "8189"}, "http_listen"),
        ({"grpc_listen": "host:port"}, "grpc_listen"),
        ({"grpc_tls_cert": Path("/c.pem")}, "grpc_tls_cert"),
        ({"grpc_tls_client_ca": Path("/ca.pem")}, "grpc_tls_client_ca"),
        ({"log_level": "loud"}, "log_level"),
    ],
)
def test_bad_serve_options_name_the_setting(values: dict[str, object], field: str) -> None:
    with pytest.raises(AuthSettingsError) as caught:
        ServeOptions(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_flag_wins_over_its_variable() -> None:
    args = build_parser().parse_args(
        [
            "auth",
            "serve",
            "--grpc-listen",
            "0.0.0.0:9000",
            "--previous-signing-key",
            "/a",
            "--previous-signing-key",
            "/b",
        ]
    )
    environ = auth_environ(
        args, {"CUBE_AUTH_GRPC_LISTEN": "127.0.0.1:1", "CUBE_AUTH_HTTP_LISTEN": "127.0.0.1:2"}
    )
    options = ServeOptions.from_env(environ)
    assert (options.grpc_listen, options.http_listen) == ("0.0.0.0:9000", "127.0.0.1:2")
    assert environ["CUBE_AUTH_PREVIOUS_SIGNING_KEYS"] == "/a:/b"


def test_the_docs_list_every_variable_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| [^|]+ \| `(CUBE_AUTH_[A-Z0-9_]+)` \|", text, re.M))
    fields = [*dataclasses.fields(AuthSettings), *dataclasses.fields(ServeOptions)]
    assert documented == {ENV_PREFIX + f.name.upper() for f in fields}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["auth", "serve", "--help"])
    flags = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out)) - {"--help"}
    assert flags and not [flag for flag in flags if f"`{flag}" not in text]
