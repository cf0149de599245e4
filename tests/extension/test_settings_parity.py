"""The VS Code extension's `cube.*` settings against cube-lsp's settings contract (cube_lsp/settings.py).

Every server setting needs a `cube.*` counterpart in editor-extension/package.json or a reason in
OMITTED, so adding a server setting without one fails here; and every `cube.*` setting that is not
the extension's own must name a server setting, with the server's default.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.settings import Settings, parse_settings, to_camel

MANIFEST = Path(__file__).resolve().parents[2] / "editor-extension" / "package.json"

# Server settings the extension deliberately does not contribute, and why.
OMITTED = {
    "token": "kept in VS Code's SecretStorage by Cube: Sign In / Use Local Stack, never in settings.json",
}
# `cube.*` settings the extension keeps to itself (EXTENSION_ONLY in editor-extension/src/settings.ts).
EXTENSION_ONLY = {"authUrl", "completion.languages", "server.command", "server.args", "trace.server"}


def _server_types(cls: type[Any], prefix: str = "") -> dict[str, Any]:
    """Return every leaf setting of ``cls`` as a dotted camelCase key and its type."""
    hints = typing.get_type_hints(cls)
    found: dict[str, Any] = {}
    for fld in dataclasses.fields(cls):
        key = prefix + to_camel(fld.name)
        tp = hints[fld.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            found.update(_server_types(tp, key + "."))
        else:
            found[key] = tp
    return found


def _server_settings(cls: type[Any], prefix: str = "") -> dict[str, Any]:
    """Return every leaf setting of ``cls`` as a dotted camelCase key and its default."""
    hints = typing.get_type_hints(cls)
    found: dict[str, Any] = {}
    for fld in dataclasses.fields(cls):
        key = prefix + to_camel(fld.name)
        tp = hints[fld.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            found.update(_server_settings(tp, key + "."))
        else:
            default = fld.default if fld.default is not dataclasses.MISSING else None
            found[key] = default
    return found


def _contributed() -> dict[str, dict[str, Any]]:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    groups = manifest["contributes"]["configuration"]
    props: dict[str, dict[str, Any]] = {}
    for group in groups if isinstance(groups, list) else [groups]:
        props.update(group["properties"])
    return {key.removeprefix("cube."): value for key, value in props.items()}


def test_every_server_setting_has_a_cube_setting_or_a_reason() -> None:
    contributed = _contributed()
    missing = sorted(k for k in _server_settings(Settings) if k not in contributed and k not in OMITTED)
    assert missing == [], f"server settings without a cube.* counterpart: {missing}"


def test_every_cube_setting_is_the_extensions_own_or_a_server_setting() -> None:
    server = _server_settings(Settings)
    strays = sorted(k for k in _contributed() if k not in server and k not in EXTENSION_ONLY)
    assert strays == [], f"cube.* settings cube-lsp does not know: {strays}"


def test_omissions_are_still_server_settings() -> None:
    assert set(OMITTED) <= set(_server_settings(Settings))


@pytest.mark.parametrize("key", sorted(k for k in _server_settings(Settings) if k not in OMITTED))
def test_defaults_and_documentation_match(key: str) -> None:
    prop = _contributed()[key]
    assert prop.get("markdownDescription") or prop.get("description"), f"cube.{key} has no description"
    assert "type" in prop, f"cube.{key} has no type"
    default = _server_settings(Settings)[key]
    assert prop.get("default") == (list(default) if isinstance(default, tuple) else default), key


@pytest.mark.parametrize(
    "key", sorted(k for k, tp in _server_types(Settings).items() if typing.get_origin(tp) is typing.Literal)
)
def test_choices_match(key: str) -> None:
    choices = list(typing.get_args(_server_types(Settings)[key]))
    assert _contributed()[key].get("enum") == choices, key


def test_every_contributed_setting_is_documented() -> None:
    for key, prop in _contributed().items():
        assert "default" in prop, f"cube.{key} has no default"
        assert prop.get("markdownDescription") or prop.get("description"), f"cube.{key} has no description"


def test_the_extensions_defaults_parse_to_the_servers_defaults() -> None:
    # What toServerSettings sends for an untouched configuration, signed out (token null).
    raw: dict[str, Any] = {"token": None}
    for key, prop in _contributed().items():
        if key in EXTENSION_ONLY:
            continue
        *groups, leaf = key.split(".")
        node = raw
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = prop["default"]
    settings, errors = parse_settings(raw, environ={})
    assert [error.code for error in errors] == []
    assert settings == Settings()
