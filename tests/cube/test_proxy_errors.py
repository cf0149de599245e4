"""The proxy error tree: status mapping, server details, httpx translation and equality."""

from __future__ import annotations

import ssl

import httpx
import pytest

from cube_lsp.cube import client, errors, transport
from cube_lsp.cube.errors import (
    ProxyError,
    ProxyHttpError,
    ProxyTimeout,
    error_for_status,
    server_detail,
    translate_httpx_errors,
)
from cube_wire.errors import CubeError


def test_public_names() -> None:
    assert set(client.__all__) == {"DEFAULT_STREAM_LIMITS", "CubeClient", "StreamLimits"}
    assert set(transport.__all__) == {
        "DEFAULT_LIMITS",
        "PoolLimits",
        "PoolTransport",
        "TransportFactory",
        "build_ssl_context",
        "make_transport",
        "select_proxy",
    }
    for module in (client, errors, transport):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_error_class_has_its_own_proxy_code() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    classes = [cls for cls in classes if isinstance(cls, type) and issubclass(cls, ProxyError)]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    assert all(code.startswith("proxy.") for code in codes)
    assert all(issubclass(cls, CubeError) for cls in classes)


@pytest.mark.parametrize(
    ("status", "model", "code"),
    [
        (401, "m", "proxy.unauthorized"),
        (403, "m", "proxy.forbidden"),
        (404, "m", "proxy.model_not_found"),
        (404, None, "proxy.http_error"),
        (500, "m", "proxy.server_error"),
        (502, None, "proxy.server_error"),
        (400, "m", "proxy.http_error"),
        (302, "m", "proxy.http_error"),
    ],
)
def test_error_for_status(status: int, model: str | None, code: str) -> None:
    error = error_for_status(status, b"", route="/api/generate", model=model)
    assert isinstance(error, ProxyHttpError)
    assert error.code == code
    assert error.status == status


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": "model not found"}', "model not found"),
        (b'{"error": {"message": "bad request", "type": "x"}}', "bad request"),
        (b'{"message": "upstream down", "error": "ignored"}', "upstream down"),
        (b'{"detail": "nope"}', "nope"),
        (b"<html>502 Bad Gateway</html>", ""),
        (b"[1, 2]", ""),
        (b'{"error": "line one\\nline\\ttwo"}', "line one line two"),
        (b"\xff", ""),
    ],
)
def test_server_detail(body: bytes, expected: str) -> None:
    assert server_detail(body) == expected


def test_server_detail_is_truncated_and_redacted() -> None:
    detail = server_detail(
        b'{"error": "token sekrit-token-123 rejected ' + b"x" * 1000 + b'"}', secrets=("sekrit-token-123",)
    )
    assert "sekrit-token-123" not in detail
    assert detail.startswith("token *** rejected")
    assert len(detail) <= errors.MAX_DETAIL_CHARS


def _ssl_wrapped(error: ssl.SSLError) -> httpx.ConnectError:
    try:
        try:
            raise error
        except ssl.SSLError as inner:
            raise httpx.ConnectError("handshake failed") from inner
    except httpx.ConnectError as outer:
        return outer


def _cert_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate"
    return error


@pytest.mark.parametrize(
    ("raised", "code", "phase"),
    [
        (httpx.ConnectTimeout("t"), "proxy.timeout", "connect"),
        (httpx.PoolTimeout("t"), "proxy.timeout", "connect"),
        (httpx.WriteTimeout("t"), "proxy.timeout", "first_byte"),
        (httpx.ReadTimeout("t"), "proxy.timeout", "idle"),
        (httpx.ConnectError("refused"), "proxy.unreachable", None),
        (httpx.ReadError("reset"), "proxy.unreachable", None),
        (httpx.ProxyError("407"), "proxy.unreachable", None),
        (httpx.RemoteProtocolError("peer closed"), "proxy.protocol", None),
        (httpx.UnsupportedProtocol("ftp"), "proxy.not_configured", None),
        (_ssl_wrapped(_cert_error()), "proxy.tls", None),
        (_ssl_wrapped(ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]")), "proxy.tls", None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_translate_httpx_errors(raised: Exception, code: str, phase: str | None) -> None:
    with (
        pytest.raises(ProxyError) as caught,
        translate_httpx_errors("https://cube.example.com", connect_ms=100),
    ):
        raise raised
    assert caught.value.code == code
    assert caught.value.__cause__ is raised
    if phase is not None:
        assert isinstance(caught.value, ProxyTimeout)
        assert caught.value.phase == phase


def test_translate_leaves_other_errors_alone() -> None:
    with pytest.raises(KeyError), translate_httpx_errors("https://cube.example.com"):
        raise KeyError("x")


def test_errors_with_same_code_and_message_are_equal() -> None:
    assert ProxyTimeout("idle", 100) == ProxyTimeout("idle", 100)
    assert ProxyTimeout("idle", 100) != ProxyTimeout("idle", 200)
    assert ProxyTimeout("idle", 100) != ProxyTimeout("connect", 100)
    a = error_for_status(500, b'{"error": "x"}', route="/api/generate")
    b = error_for_status(500, b'{"error": "x"}', route="/api/generate")
    assert a == b
    assert len({a, b, ProxyTimeout("idle")}) == 2
    assert a.key == ("proxy.server_error", a.message)
