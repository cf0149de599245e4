"""Pure pieces without servers: settings, cache, rate limiter, nonce and JWKS parsing, headers, metrics."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cube_stack import proxy
from cube_stack.proxy import ProxySettings, ProxySettingsError, Subject
from cube_stack.proxy.attestation import parse_nonce
from cube_stack.proxy.cache import DecisionCache, token_digest
from cube_stack.proxy.errors import BadRequestError
from cube_stack.proxy.forward import request_headers, response_headers, stream_error_tail
from cube_stack.proxy.jwks import looks_like_jwt, parse_jwks
from cube_stack.proxy.metrics import ProxyMetrics
from cube_stack.proxy.ratelimit import RateLimiter
from cube_stack.proxy.routes import AUTH_PERMISSIONS, Permission
from cube_stack.proxy.settings import ENV_PREFIX


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_public_surface_is_exported() -> None:
    assert sorted(proxy.__all__) == sorted(n for n in proxy.__all__ if hasattr(proxy, n))
    assert {"create_proxy_app", "ProxySettings", "AuthClient", "AttestationAgent", "ProxyServer"} <= set(
        proxy.__all__
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"auth_url": "ftp://x"}, "auth_url"),
        ({"ollama_url": "http://x/?q=1"}, "ollama_url"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"first_byte_timeout": -1}, "first_byte_timeout"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"rate_limit_burst": 0}, "rate_limit_burst"),
        ({"port": 70000}, "port"),
        ({"tls_hostnames": ()}, "tls_hostnames"),
    ],
)
def test_settings_fail_naming_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings(**overrides)  # type: ignore[arg-type]
    assert caught.value.field == field and caught.value.code == "cube_proxy.settings_invalid"


def test_settings_from_env() -> None:
    settings = ProxySettings.from_env(
        {
            "CUBE_PROXY_IDLE_TIMEOUT": "12.5",
            "CUBE_PROXY_TLS": "false",
            "CUBE_PROXY_PORT": "9000",
            "CUBE_PROXY_TLS_HOSTNAMES": "cube.example, 10.0.0.1",
            "CUBE_PROXY_RUNTIME_API_KEY": "",
            "CUBE_PROXY_OPENAI_URL": "http://127.0.0.1:8000",
        }
    )
    assert settings.idle_timeout == 12.5 and settings.tls is False and settings.port == 9000
    assert settings.tls_hostnames == ("cube.example", "10.0.0.1") and settings.runtime_api_key is None
    assert settings.effective_openai_url == "http://127.0.0.1:8000"
    assert ProxySettings().effective_openai_url == ProxySettings().ollama_url
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings.from_env({"CUBE_PROXY_TLS": "maybe"})
    assert caught.value.field == "CUBE_PROXY_TLS"
    assert "sk-123" not in repr(ProxySettings(runtime_api_key="sk-123"))


def test_every_permission_maps_to_an_auth_permission() -> None:
    assert set(AUTH_PERMISSIONS) == set(Permission)
    assert AUTH_PERMISSIONS[Permission.CHAT] == "llm_chat_completions_permission"


def test_decision_cache_expires_bounds_and_never_keeps_the_token() -> None:
    clock = Clock()
    cache = DecisionCache(ttl=30, max_entries=2, clock=clock)
    subject = Subject("u1")
    digest = token_digest("secret-token")
    cache.put(digest, "d", "p", subject, not_after=float("inf"))
    assert cache.get(digest, "d", "p") == subject and cache.get(digest, "d", "other") is None
    clock.now += 30
    assert cache.get(digest, "d", "p") is None
    cache.put(digest, "d", "p", subject, not_after=clock.now + 5)  # a token expiring sooner wins
    clock.now += 5
    assert cache.get(digest, "d", "p") is None
    for i in range(3):
        cache.put(token_digest(f"t{i}"), "d", "p", subject, not_after=float("inf"))
    assert len(cache) == 2 and cache.get(token_digest("t0"), "d", "p") is None
    assert "secret-token" not in repr(cache._entries)


def test_rate_limiter_refills_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, max_users=10, clock=clock)
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == 0
    assert limiter.acquire("a") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0
    clock.now -= 100  # a clock stepping back refills nothing
    assert limiter.acquire("a") > 0
    assert RateLimiter(per_minute=0, burst=1, max_users=1, clock=clock).acquire("a") == 0


def test_parse_nonce_accepts_hex_and_both_base64_alphabets() -> None:
    raw = bytes(range(250, 256)) + bytes(range(26))
    for text in (
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
    ):
        assert parse_nonce(b'{"nonce": "' + text.encode() + b'"}') == raw
    with pytest.raises(BadRequestError) as caught:
        parse_nonce(b'{"nonce": ""}')
    assert caught.value.code == "cube_proxy.nonce_length"


def test_parse_jwks_keeps_only_ed25519_signing_keys() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    x = base64.urlsafe_b64encode(
        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).rstrip(b"=")
    document = {
        "keys": [
            {"kid": "good", "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": x.decode()},
            {"kid": "rsa", "kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kid": "enc", "kty": "OKP", "crv": "Ed25519", "use": "enc", "x": x.decode()},
            {"kid": "short", "kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            "junk",
        ]
    }
    assert list(parse_jwks(document)) == ["good"]
    assert looks_like_jwt("a.b.c") and not looks_like_jwt("pat_x.y.z") and not looks_like_jwt("abc")


def test_header_filtering() -> None:
    raw = [
        (b"Authorization", b"Bearer user-token"),
        (b"Connection", b"close, X-Secret-Hop"),
        (b"X-Secret-Hop", b"1"),
        (b"Content-Type", b"application/json"),
        (b"X-Forwarded-For", b"1.2.3.4"),
        (b"Transfer-Encoding", b"chunked"),
    ]
    kept = request_headers(raw, "runtime-key")
    assert kept == [
        ("content-type", "application/json"),
        ("accept-encoding", "identity"),
        ("authorization", "Bearer runtime-key"),
    ]
    assert ("authorization", "Bearer runtime-key") not in request_headers(raw, None)
    upstream = [
        (b"Content-Type", b"text/event-stream"),
        (b"Content-Length", b"10"),
        (b"Connection", b"x-a"),
        (b"X-A", b"1"),
        (b"Server", b"s"),
    ]
    assert response_headers(upstream) == [(b"content-type", b"text/event-stream")]
    assert stream_error_tail("text/event-stream", "m", "c").startswith(b"data: {")
    assert stream_error_tail("application/x-ndjson", "m", "c").endswith(b"}\n")


def test_metrics_render_the_text_format() -> None:
    metrics = ProxyMetrics(cache_counts=lambda: (3, 1))
    metrics.observe_request('/{domain_id}/api/"chat"', "POST", 200, 0.02)
    metrics.observe_first_byte("/{domain_id}/api/chat", 0.004)
    metrics.stream_started()
    text = metrics.render()
    assert (
        'cube_proxy_requests_total{route="/{domain_id}/api/\\"chat\\"",method="POST",status="200"} 1' in text
    )
    assert (
        'cube_proxy_request_duration_seconds_bucket{route="/{domain_id}/api/\\"chat\\"",le="0.025"} 1' in text
    )
    assert 'le="0.01"} 0' in text and 'le="+Inf"} 1' in text
    assert "cube_proxy_streams_in_flight 1" in text
    assert 'cube_proxy_auth_cache_total{result="hit"} 3' in text
    assert "# TYPE cube_proxy_upstream_first_byte_seconds histogram" in text


def test_self_signed_subjects_are_unique_per_key():
    """Two proxies' certificates in one CA bundle must both be trusted (OpenSSL dedups by subject)."""
    from cube_stack.tls_identity import TlsIdentity

    first = TlsIdentity.generate(("localhost",))
    second = TlsIdentity.generate(("localhost",))
    assert first.certificate.subject != second.certificate.subject


def test_docs_list_every_proxy_setting_as_its_variable() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "proxy.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(CUBE_PROXY_[A-Z0-9_]+)` \|", docs, re.M))
    assert documented == {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(ProxySettings)}
