"""The settings contract shared by cube-lsp, the `cube` CLI, the VS Code extension and `cube-stack up`.

Settings arrive as JSON with camelCase keys (``initializationOptions``, the ``cube`` section of
``workspace/configuration``, or a ``--settings FILE``) and become frozen, nested dataclasses with
snake_case fields. :func:`parse_settings` never raises for a bad editor preference: it returns the
defaults for the fields it could not read together with one :class:`SettingsError` per bad field, so
the server can show a message naming each field and keep running.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cube_wire.errors import SettingsError

log = logging.getLogger(__name__)

Api = Literal["ollama", "openai"]
Multiline = Literal["auto", "always", "never"]
AttestationMode = Literal["required", "simulated", "off"]
TlsVerify = Literal["auto", "ca", "attestation"]


@dataclass(frozen=True)
class Models:
    """Model names served by the proxy, one per role; unset means the role is disabled."""

    completion: str = "qwen2.5-coder:1.5b"  # FIM model; its name picks the FIM template
    chat: str | None = None  # chat model for code actions
    embedding: str | None = None  # embedding model for workspace search
    rerank: str | None = None  # optional reranker for workspace search


@dataclass(frozen=True)
class Template:
    """A user-supplied FIM template; overrides the table lookup by model name when set."""

    prefix: str = ""  # text placed before the code above the cursor, e.g. "<|fim_prefix|>"
    suffix: str = ""  # text placed before the code below the cursor
    middle: str = ""  # text after which the model writes the completion
    stop: tuple[str, ...] = ()  # extra stop strings
    order: Literal["psm", "spm"] = "psm"  # prefix-suffix-middle or suffix-prefix-middle


@dataclass(frozen=True)
class CompletionSettings:
    """Inline completion preferences."""

    enabled: bool = True  # false turns completion off without restarting the server
    debounce_ms: int | None = None  # fixed debounce; unset (null) means adaptive, 75-400 ms
    max_prompt_tokens: int = 1024  # prompt budget in tokens (prefix + suffix + snippets)
    prefix_percentage: float = 0.3  # share of the budget kept for code above the cursor
    max_suffix_percentage: float = 0.2  # largest share for code below the cursor
    max_tokens: int = 128  # most tokens the model may generate for one completion
    temperature: float = 0.2  # sampling temperature sent to the model
    multiline: Multiline = "auto"  # auto: tree-sitter decides; always/never force it
    template: Template | None = None  # unset: chosen from the model name
    use_raw_template: bool = False  # Ollama only: send our template with raw=true instead of `suffix`
    cross_file_context: bool = True  # add snippets from other open files and imported definitions


@dataclass(frozen=True)
class SearchSettings:
    """Semantic workspace search (``cube/search``, ``workspace/symbol``)."""

    enabled: bool = True  # index the workspace; false: no indexing and no embedding requests at all
    # gitignore patterns kept out of the index on top of .gitignore, .cubeignore and the built-in deny
    # list for secrets (which they can extend but never shrink: a "!" pattern is refused)
    exclude: tuple[str, ...] = ()
    rescan_interval_s: int = 600  # a full rescan this often catches changes made outside the editor


@dataclass(frozen=True)
class ChatSettings:
    """Chat code actions (Explain, Add documentation, Refactor, ...)."""

    # true: edits from chat go to the editor as changes that need confirmation (VS Code shows them as a
    # diff to apply or discard) when the editor supports that; false: applied at once, undo reverts them
    confirm_edits: bool = True


@dataclass(frozen=True)
class AttestationSettings:
    """How the server behind `endpoint` must prove it runs in a confidential VM."""

    # required: AMD-signed report meeting `policy`; simulated: only the policy's simulated root (dev mode);
    # off: no attestation, allowed only for a loopback endpoint.
    mode: AttestationMode = "required"
    policy: str | None = None  # attestation policy JSON file; unset: required/simulated modes send nothing
    reattest_interval_s: int = 3600  # a verified key is re-attested after this many seconds
    # true: also require AMD's CRL (fetched from AMD's key server, cached) and refuse a revoked ASK/VCEK;
    # fail closed when no valid CRL can be had. false (go-sev-guest's default): signature and chain only.
    check_revocation: bool = False


def is_loopback_host(host: str | None) -> bool:
    """Return whether ``host`` is this machine: localhost, 127.0.0.0/8 or ::1."""
    if not host:
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_endpoint(endpoint: str | None) -> bool:
    """Return whether the URL ``endpoint`` names a loopback host."""
    try:
        return bool(endpoint) and is_loopback_host(urlsplit(endpoint or "").hostname)
    except ValueError:
        return False


@dataclass(frozen=True)
class TlsSettings:
    """TLS material for the connection to the proxy; unset means the system defaults."""

    ca_bundle: str | None = None  # PEM file of extra CAs to trust (e.g. a corporate CA)
    client_cert: str | None = None  # PEM client certificate for mutual TLS
    client_key: str | None = None  # PEM key of client_cert; unset when the key is in client_cert
    # What vouches for the proxy's certificate. "attestation": the SEV-SNP report bound to its key (the
    # key is made inside the CVM at start, so no CA can have signed it); "ca": the CA chain and host
    # name; "auto": "ca" when caBundle is set or attestation is off, else "attestation".
    verify: TlsVerify = "auto"


@dataclass(frozen=True)
class Timeouts:
    """Network timeouts in milliseconds; there is deliberately no total limit on a live stream."""

    connect_ms: int = 5000  # TCP + TLS handshake
    first_byte_ms: int = 30000  # request sent -> first response byte (model load can be slow)
    idle_ms: int = 15000  # longest silence between two chunks of a stream


@dataclass(frozen=True)
class Settings:
    """All of cube-lsp's settings; camelCase on the wire, snake_case here."""

    endpoint: str | None = None  # proxy base URL, e.g. https://cube.example.com:8443
    domain: str | None = None  # SuperMQ domain id used in /{domain}/... paths
    token: str | None = None  # bearer token (JWT or PAT); unset: the CUBE_TOKEN environment variable
    api: Api = "ollama"  # wire format: Ollama /api/generate or OpenAI /v1/completions
    models: Models = field(default_factory=Models)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    attestation: AttestationSettings = field(default_factory=AttestationSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    timeouts: Timeouts = field(default_factory=Timeouts)
    proxy: str | None = None  # HTTP(S) proxy URL; unset: HTTP(S)_PROXY / NO_PROXY from the environment

    def __repr__(self) -> str:
        # The token must never reach a log line through a repr.
        shown = "***" if self.token else None
        return (
            f"Settings(endpoint={self.endpoint!r}, domain={self.domain!r}, token={shown}, api={self.api!r})"
        )


def to_camel(name: str) -> str:
    """Return the wire (camelCase) name of a snake_case field."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def parse_settings(
    raw: Mapping[str, Any] | None, *, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[SettingsError]]:
    """Read settings from their JSON form; bad fields fall back to defaults and are reported."""
    errors: list[SettingsError] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.append(SettingsError("cube", f"expected an object, got {_kind(raw)}"))
        raw = {}
    settings = _build(Settings, raw, "", errors)
    env = os.environ if environ is None else environ
    if settings.token is None and env.get("CUBE_TOKEN"):
        settings = dataclasses.replace(settings, token=env["CUBE_TOKEN"])
    settings = _check_invariants(settings, errors)
    return settings, errors


def load_settings_file(path: str | Path) -> tuple[Settings, list[SettingsError]]:
    """Read a settings JSON file (the same contract as initializationOptions)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return parse_settings({})[0], [SettingsError("--settings", f"cannot read {path}: {exc}")]
    return parse_settings(raw)


def _check_search(settings: Settings, errors: list[SettingsError]) -> Settings:
    search = settings.search
    fixes: dict[str, Any] = {}
    negations = [p for p in search.exclude if p.strip().startswith("!")]
    if negations:
        errors.append(
            SettingsError(
                "search.exclude",
                f"{negations[0]!r} is a negation: exclusions extend the deny list for secrets and can "
                "never re-include a file; remove the '!' patterns",
            )
        )
        fixes["exclude"] = tuple(p for p in search.exclude if p not in negations)
    if not 30 <= search.rescan_interval_s <= 86400:
        errors.append(
            SettingsError("search.rescanIntervalS", f"must be 30..86400, got {search.rescan_interval_s}")
        )
        fixes["rescan_interval_s"] = SearchSettings.rescan_interval_s
    return dataclasses.replace(settings, search=dataclasses.replace(search, **fixes)) if fixes else settings


def merge_raw(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two raw settings objects; keys of ``override`` win."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_raw(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_invariants(settings: Settings, errors: list[SettingsError]) -> Settings:
    settings = _check_search(settings, errors)
    comp = settings.completion
    fixes: dict[str, Any] = {}
    if comp.debounce_ms is not None and not 0 <= comp.debounce_ms <= 5000:
        errors.append(
            SettingsError("completion.debounceMs", f"must be 0..5000 or null, got {comp.debounce_ms}")
        )
        fixes["debounce_ms"] = None
    if not 64 <= comp.max_prompt_tokens <= 131072:
        errors.append(
            SettingsError("completion.maxPromptTokens", f"must be 64..131072, got {comp.max_prompt_tokens}")
        )
        fixes["max_prompt_tokens"] = CompletionSettings.max_prompt_tokens
    if not 1 <= comp.max_tokens <= 4096:
        errors.append(SettingsError("completion.maxTokens", f"must be 1..4096, got {comp.max_tokens}"))
        fixes["max_tokens"] = CompletionSettings.max_tokens
    for name in ("prefix_percentage", "max_suffix_percentage"):
        value = getattr(comp, name)
        if not 0.0 <= value <= 1.0:
            errors.append(SettingsError(f"completion.{to_camel(name)}", f"must be 0..1, got {value}"))
            fixes[name] = getattr(CompletionSettings, name)
    if not 0.0 <= comp.temperature <= 2.0:
        errors.append(SettingsError("completion.temperature", f"must be 0..2, got {comp.temperature}"))
        fixes["temperature"] = CompletionSettings.temperature
    if fixes:
        settings = dataclasses.replace(settings, completion=dataclasses.replace(comp, **fixes))
    for name in ("connect_ms", "first_byte_ms", "idle_ms"):
        value = getattr(settings.timeouts, name)
        if not 1 <= value <= 600_000:
            errors.append(SettingsError(f"timeouts.{to_camel(name)}", f"must be 1..600000, got {value}"))
            settings = dataclasses.replace(
                settings, timeouts=dataclasses.replace(settings.timeouts, **{name: getattr(Timeouts, name)})
            )
    if settings.endpoint is not None and not settings.endpoint.startswith(("http://", "https://")):
        errors.append(
            SettingsError("endpoint", f"must be an http:// or https:// URL, got {settings.endpoint!r}")
        )
        settings = dataclasses.replace(settings, endpoint=None)
    return _check_attestation(settings, errors)


def tls_checks_ca(settings: Settings) -> bool:
    """Return whether the proxy's certificate must chain to a trusted CA (see ``TlsSettings.verify``).

    Without a CA check the attested transport is what keeps the user safe: it writes nothing but the
    attestation request (a nonce, no token) on a connection until the report bound to that
    connection's key has been verified and the key pinned.
    """
    verify = settings.tls.verify
    if verify == "auto":
        return settings.tls.ca_bundle is not None or settings.attestation.mode == "off"
    return verify == "ca"


def _check_attestation(settings: Settings, errors: list[SettingsError]) -> Settings:
    att = settings.attestation
    if settings.tls.verify == "attestation" and att.mode == "off":
        errors.append(
            SettingsError(
                "tls.verify",
                "'attestation' needs `attestation.mode` 'required' or 'simulated'; with 'off' the CA "
                "chain is checked",
            )
        )
        settings = dataclasses.replace(settings, tls=dataclasses.replace(settings.tls, verify="auto"))
    if not 1 <= att.reattest_interval_s <= 604_800:
        errors.append(
            SettingsError(
                "attestation.reattestIntervalS", f"must be 1..604800 seconds, got {att.reattest_interval_s}"
            )
        )
        att = dataclasses.replace(att, reattest_interval_s=AttestationSettings.reattest_interval_s)
    if att.mode == "off" and settings.endpoint is not None and not is_loopback_endpoint(settings.endpoint):
        # Fail closed: switching attestation off is a dev convenience for a proxy on this machine only.
        errors.append(
            SettingsError(
                "attestation.mode",
                f"'off' is allowed only for a loopback endpoint (localhost, 127.0.0.0/8, ::1), "
                f"got {settings.endpoint!r}; using 'required'",
            )
        )
        att = dataclasses.replace(att, mode="required")
    return settings if att is settings.attestation else dataclasses.replace(settings, attestation=att)


def _build(cls: type[Any], raw: Mapping[str, Any], path: str, errors: list[SettingsError]) -> Any:
    hints = typing.get_type_hints(cls)
    by_wire = {to_camel(f.name): f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        fld = by_wire.get(key) or next((f for f in dataclasses.fields(cls) if f.name == key), None)
        dotted = f"{path}{key}"
        if fld is None:
            log.warning("ignoring unknown setting %r", dotted)
            continue
        try:
            values[fld.name] = _convert(hints[fld.name], value, dotted, errors)
        except SettingsError as exc:
            errors.append(exc)
    return cls(**values)


def _convert(tp: Any, value: Any, dotted: str, errors: list[SettingsError]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, dotted, errors)
    if origin is Literal:
        if value not in args:
            choices = " | ".join(repr(a) for a in args)
            raise SettingsError(dotted, f"must be one of {choices}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise SettingsError(dotted, f"expected an object, got {_kind(value)}")
        return _build(tp, value, dotted + ".", errors)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, args[0]) for v in value):
            raise SettingsError(dotted, f"expected a list of {args[0].__name__}, got {_kind(value)}")
        return tuple(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise SettingsError(dotted, f"expected true or false, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(dotted, f"expected an integer, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(dotted, f"expected a number, got {_kind(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SettingsError(dotted, f"expected a string, got {_kind(value)}")
        return value
    raise SettingsError(dotted, f"unsupported setting type {tp!r}")  # a bug in this module, not the input


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "an object" if isinstance(value, Mapping) else type(value).__name__
    )
