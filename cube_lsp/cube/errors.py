"""Errors of the Cube AI proxy client, and the one place where httpx exceptions become them.

Every class has a stable ``code`` that callers and tests branch on; the message is for the
programmer and names the setting to fix. Two errors with the same code and message compare equal
(and hash alike), so the server can show each distinct failure once::

    CubeError                                   (cube_lsp/errors.py)
    └── ProxyError                proxy.*
        ├── ProxyNotConfigured    proxy.not_configured   no `endpoint` or `domain`
        ├── ProxyUnreachable      proxy.unreachable      connection refused, DNS failure, reset
        ├── ProxyTlsError         proxy.tls              certificate not trusted, bad client cert
        ├── ProxyTimeout          proxy.timeout          .phase: connect | first_byte | idle
        ├── ProxyProtocolError    proxy.protocol         malformed or oversized NDJSON/SSE stream
        └── ProxyHttpError        proxy.http_error       any other non-2xx status (.status)
            ├── ProxyUnauthorized     proxy.unauthorized     401
            ├── ProxyForbidden        proxy.forbidden        403
            ├── ProxyModelNotFound    proxy.model_not_found  404 for a model (.model)
            └── ProxyServerError      proxy.server_error     5xx, or an error inside a stream

:func:`translate_httpx_errors` is the only code that turns httpx exceptions into these.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Literal

import httpx

from cube_wire.errors import CubeError

__all__ = [
    "ProxyError",
    "ProxyForbidden",
    "ProxyHttpError",
    "ProxyModelNotFound",
    "ProxyNotConfigured",
    "ProxyProtocolError",
    "ProxyServerError",
    "ProxyTimeout",
    "ProxyTlsError",
    "ProxyUnauthorized",
    "ProxyUnreachable",
    "TimeoutPhase",
    "error_for_status",
    "translate_httpx_errors",
]

TimeoutPhase = Literal["connect", "first_byte", "idle"]

# The longest server-supplied detail we put into a message: enough to read, too short to carry a prompt.
MAX_DETAIL_CHARS = 200


class ProxyError(CubeError):
    """A request to the Cube AI proxy failed; ``code`` says how."""

    code = "proxy.error"

    @property
    def key(self) -> tuple[str, str]:
        """Return ``(code, message)``: what makes two errors the same error for the user."""
        return (self.code, self.message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProxyError):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


class ProxyNotConfigured(ProxyError):
    """No proxy to talk to: `endpoint` or `domain` is unset."""

    code = "proxy.not_configured"


class ProxyUnreachable(ProxyError):
    """The proxy (or the HTTP proxy in front of it) could not be reached or dropped the connection."""

    code = "proxy.unreachable"


class ProxyTlsError(ProxyError):
    """TLS failed: the proxy's certificate is not trusted, or our client certificate was refused."""

    code = "proxy.tls"


class ProxyTimeout(ProxyError):
    """The proxy was too slow; ``phase`` says which timeout expired."""

    code = "proxy.timeout"

    def __init__(self, phase: TimeoutPhase, limit_ms: int | None = None) -> None:
        setting, what = {
            "connect": ("timeouts.connectMs", "connecting to the proxy (TCP + TLS)"),
            "first_byte": ("timeouts.firstByteMs", "waiting for the first byte of the response"),
            "idle": ("timeouts.idleMs", "waiting for the next chunk of the stream"),
        }[phase]
        limit = f" after {limit_ms} ms" if limit_ms is not None else ""
        super().__init__(f"timed out {what}{limit}; raise `{setting}` if the proxy is just slow")
        self.phase: TimeoutPhase = phase


class ProxyProtocolError(ProxyError):
    """The proxy answered with something that is not the NDJSON/SSE stream we asked for."""

    code = "proxy.protocol"


class ProxyHttpError(ProxyError):
    """The proxy answered with a non-2xx status not covered by a more specific class."""

    code = "proxy.http_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProxyUnauthorized(ProxyHttpError):
    """HTTP 401: the bearer token is missing, expired or unknown."""

    code = "proxy.unauthorized"


class ProxyForbidden(ProxyHttpError):
    """HTTP 403: the token is valid but may not use this domain or route."""

    code = "proxy.forbidden"


class ProxyModelNotFound(ProxyHttpError):
    """HTTP 404 for a request naming a model: the runtime does not serve ``model``."""

    code = "proxy.model_not_found"

    def __init__(self, status: int, message: str, model: str) -> None:
        super().__init__(status, message)
        self.model = model


class ProxyRateLimited(ProxyHttpError):
    """HTTP 429: the user's request budget is used up for now; ``retry_after`` says for how long (s)."""

    code = "proxy.rate_limited"

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after


class ProxyServerError(ProxyHttpError):
    """HTTP 5xx, or an error object inside a 200 stream: the proxy or its runtime failed."""

    code = "proxy.server_error"


def error_for_status(
    status: int,
    body: bytes,
    *,
    route: str,
    model: str | None = None,
    secrets: tuple[str, ...] = (),
    retry_after: str | None = None,
) -> ProxyHttpError:
    """Return the error for a non-2xx response; ``body`` is read for a JSON message only."""
    detail = server_detail(body, secrets=secrets)
    suffix = f": {detail}" if detail else ""
    if status == 429:
        seconds = _seconds(retry_after)
        when = f"; retry in {seconds:g} s" if seconds is not None else ""
        return ProxyRateLimited(status, f"the proxy is rate-limiting {route} (HTTP 429){when}", seconds)
    if status == 401:
        return ProxyUnauthorized(
            status, "the proxy rejected the token (HTTP 401); check `token` / CUBE_TOKEN"
        )
    if status == 403:
        return ProxyForbidden(
            status, f"the token may not use {route} (HTTP 403); check `domain` and the token's permissions"
        )
    if status == 404 and model is not None:
        return ProxyModelNotFound(
            status, f"model {model!r} not found on the proxy (HTTP 404); check `models` or pull it", model
        )
    if status == 404:
        return ProxyHttpError(
            status, f"{route} not found on the proxy (HTTP 404); check `endpoint` and `domain`"
        )
    if status >= 500:
        return ProxyServerError(status, f"the proxy failed on {route} (HTTP {status}){suffix}")
    return ProxyHttpError(status, f"the proxy refused {route} (HTTP {status}){suffix}")


def _seconds(retry_after: str | None) -> float | None:
    """Parse a Retry-After header given in seconds (the proxy's form); None when absent or a date."""
    try:
        value = float(retry_after) if retry_after is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 3600 else None


def server_detail(body: bytes, *, secrets: tuple[str, ...] = ()) -> str:
    """Return the ``message``/``error`` string of a JSON error body, shortened and redacted, or ""."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""  # never show a non-JSON body: it may be a page that echoes the request
    return clean_detail(_find_message(data), secrets=secrets)


def clean_detail(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """Shorten a server-supplied message to one line and blank out any secret it repeats."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 1] + "…"
    return text


def _find_message(data: Any) -> str:
    # Ollama: {"error": "..."}; OpenAI/vLLM: {"error": {"message": "..."}} or {"message": "..."};
    # the Cube proxy: {"error": "...", "message": "..."}.
    if not isinstance(data, dict):
        return ""
    for key in ("message", "error", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            nested = _find_message(value)
            if nested:
                return nested
    return ""


@contextlib.contextmanager
def translate_httpx_errors(endpoint: str, *, connect_ms: int | None = None) -> Iterator[None]:
    """Turn any httpx exception raised inside the block into the matching :class:`ProxyError`."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint, connect_ms) from exc


def _translate(exc: httpx.HTTPError, endpoint: str, connect_ms: int | None) -> ProxyError:
    tls = _ssl_cause(exc)
    if tls is not None:
        return _tls_error(tls, endpoint)
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProxyTimeout("connect", connect_ms)
    if isinstance(exc, httpx.WriteTimeout):
        return ProxyTimeout("first_byte")
    if isinstance(exc, httpx.ReadTimeout):
        return ProxyTimeout("idle")
    if isinstance(exc, httpx.ProxyError):
        return ProxyUnreachable(
            f"the HTTP proxy in front of {endpoint} failed: {exc}; check `proxy` / HTTPS_PROXY"
        )
    if isinstance(exc, httpx.ConnectError):
        return ProxyUnreachable(f"cannot connect to {endpoint}: {_reason(exc)}; check `endpoint`")
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        # Under TLS 1.3 a proxy that refuses our client certificate may only reset the connection.
        hint = (
            "; if the proxy requires mutual TLS, check `tls.clientCert`"
            if endpoint.startswith("https:")
            else ""
        )
        return ProxyUnreachable(f"the connection to {endpoint} was lost: {_reason(exc)}{hint}")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError):
        return ProxyProtocolError(f"{endpoint} sent a malformed HTTP response: {exc}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ProxyNotConfigured(f"`endpoint` {endpoint!r} is not a usable URL: {exc}")
    return ProxyUnreachable(f"request to {endpoint} failed: {type(exc).__name__}: {exc}")


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls_error(exc: ssl.SSLError, endpoint: str) -> ProxyTlsError:
    why = getattr(exc, "reason", None) or str(exc)  # e.g. "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProxyTlsError(
            f"the certificate of {endpoint} is not trusted ({exc.verify_message or why}); "
            "set `tls.caBundle` to the CA that signed it"
        )
    lowered = why.lower()
    if "certificate" in lowered and ("required" in lowered or "unknown ca" in lowered or "bad" in lowered):
        return ProxyTlsError(
            f"{endpoint} refused our client certificate ({why}); set `tls.clientCert` and `tls.clientKey`"
        )
    return ProxyTlsError(
        f"TLS with {endpoint} failed ({why}); check `endpoint`, `tls.caBundle`, and `tls.clientCert` "
        "if the proxy requires mutual TLS"
    )


def _reason(exc: BaseException) -> str:
    # The innermost OSError names the cause ("Connection refused", "Name or service not known").
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, socket.gaierror) and current.strerror:
            return current.strerror
        if isinstance(current, OSError) and current.errno and current.errno > 0:
            return os.strerror(current.errno)  # asyncio's strerror repeats the address
        current = current.__cause__ or current.__context__
    return str(exc) or type(exc).__name__
