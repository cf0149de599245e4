"""The HTTP transport under :class:`~cube_lsp.cube.client.CubeClient`: TLS material, proxies, pool limits.

This bridges :class:`~cube_lsp.settings.Settings` to an ``httpx.AsyncBaseTransport``. We build our
own small transport over an ``httpcore.AsyncConnectionPool`` rather than using
``httpx.AsyncHTTPTransport`` for one reason: httpcore accepts a *network backend* and httpx does not.

The attestation seam
--------------------
The attested transport (:mod:`cube_lsp.cube.attested`) passes a network-backend wrapper
(:class:`~cube_lsp.cube.pinning.PinningBackend`) here rather than building a new transport::

    make_transport(settings, network_backend=PinningBackend(pins, target_host=host))

``PinningBackend.connect_tcp`` returns a stream whose ``start_tls`` completes the handshake, reads
``get_extra_info("ssl_object")`` and refuses a peer whose SPKI is not attested. httpcore calls
``start_tls`` once for every new TLS connection (also through a CONNECT tunnel), so pooled
connections cannot skip the check. Nothing here needs to change for it; :class:`TransportFactory`
is the type a caller passes to swap the whole transport (tests use ``httpx.MockTransport``).

Proxies: the ``proxy`` setting wins; otherwise ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and
``NO_PROXY`` are read from the environment (lower-case names first, as curl and httpx do). The
client only ever talks to one endpoint, so the choice is made once, when the transport is built.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import certifi
import httpcore
import httpx

from cube_lsp.cube.errors import ProxyNotConfigured, ProxyTlsError
from cube_lsp.settings import Settings, TlsSettings

__all__ = [
    "DEFAULT_LIMITS",
    "PoolLimits",
    "PoolTransport",
    "TransportFactory",
    "build_ssl_context",
    "make_transport",
    "select_proxy",
]


class TransportFactory(Protocol):
    """Build the httpx transport for a client; the seam for the attested transport and for tests."""

    def __call__(self, settings: Settings, /) -> httpx.AsyncBaseTransport:
        """Return a transport configured from ``settings``."""
        ...


@dataclass(frozen=True)
class PoolLimits:
    """Connection pool limits; an editor needs few connections, kept warm between keystrokes."""

    max_connections: int = 8  # completions are cancelled and replaced, so few run at once
    max_keepalive_connections: int = 4  # idle connections kept for the next request
    keepalive_expiry_s: float = 60.0  # an idle connection is closed after this long


DEFAULT_LIMITS = PoolLimits()


def build_ssl_context(
    tls: TlsSettings, *, with_client_cert: bool = True, check_ca: bool = True
) -> ssl.SSLContext:
    """Return a TLS context: system CAs, certifi's CAs, ``tls.ca_bundle`` and the client cert.

    ``check_ca=False`` is for the attested transport only, where the attestation report vouches for
    the server's key instead of a CA (the key is made inside the CVM at start): the handshake then
    accepts any certificate, and pinning decides whether a byte may be written.
    """
    if not check_ca:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2+, as create_default_context
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context()  # the operating system's store
        ctx.load_verify_locations(cafile=certifi.where())  # what httpx trusts by default
    if check_ca and tls.ca_bundle:
        try:
            ctx.load_verify_locations(cafile=os.path.expanduser(tls.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ProxyTlsError(f"cannot load `tls.caBundle` {tls.ca_bundle!r}: {_why(exc)}") from exc
    if with_client_cert and tls.client_cert:
        key = os.path.expanduser(tls.client_key) if tls.client_key else None
        try:
            ctx.load_cert_chain(os.path.expanduser(tls.client_cert), keyfile=key)
        except (OSError, ssl.SSLError) as exc:
            raise ProxyTlsError(
                f"cannot load `tls.clientCert` {tls.client_cert!r} / `tls.clientKey` {tls.client_key!r}: "
                f"{_why(exc)}"
            ) from exc
    elif with_client_cert and tls.client_key:
        raise ProxyTlsError("`tls.clientKey` is set but `tls.clientCert` is not; set both for mutual TLS")
    return ctx


def select_proxy(endpoint: str, explicit: str | None, environ: Mapping[str, str]) -> str | None:
    """Return the proxy URL to reach ``endpoint`` through, or None to connect directly."""
    if explicit:
        return explicit
    url = httpx.URL(endpoint)
    scheme = url.scheme
    if _bypassed(url.host, url.port or (443 if scheme == "https" else 80), _env(environ, "no_proxy")):
        return None
    return _env(environ, f"{scheme}_proxy") or _env(environ, "all_proxy") or None


def make_transport(
    settings: Settings,
    *,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
    environ: Mapping[str, str] | None = None,
    limits: PoolLimits = DEFAULT_LIMITS,
    check_ca: bool = True,
) -> httpx.AsyncBaseTransport:
    """Return the transport for ``settings``; ``network_backend`` is where attestation plugs in.

    ``check_ca=False`` only from :func:`~cube_lsp.cube.attested.make_attested_transport`, whose
    pinning backend refuses to write on a key that attestation has not vouched for.
    """
    env = os.environ if environ is None else environ
    proxy_url = select_proxy(settings.endpoint, settings.proxy, env) if settings.endpoint else None
    # Loading the CA stores takes ~0.1 s; a plain-http endpoint (a local dev stack) never needs them.
    plain = settings.endpoint is not None and settings.endpoint.startswith("http://")
    pool = httpcore.AsyncConnectionPool(
        ssl_context=None if plain else build_ssl_context(settings.tls, check_ca=check_ca),
        proxy=_proxy(proxy_url, settings.tls) if proxy_url else None,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry_s,
        retries=0,  # a failed connect is reported, not retried behind the user's back
        network_backend=network_backend,
    )
    return PoolTransport(pool)


class PoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport over any httpcore pool; httpcore errors come out as the httpx ones."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; the caller must close the returned response to release the connection."""
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("PoolTransport needs an async request body")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,  # carries httpx's timeouts and our `trace` callback
        )
        with _httpx_errors():
            core_response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection, including those still streaming."""
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response
        self._iterated = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # A second read is httpx's StreamConsumed, as with httpx's own transport: the official OpenAI
        # client drains a stream again after its [DONE] and expects exactly that (httpcore would raise
        # a bare RuntimeError, which failed every streamed OpenAI answer through this transport).
        if self._iterated:
            raise httpx.StreamConsumed()
        self._iterated = True
        with _httpx_errors():
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._response.aclose()


# httpcore and httpx share exception names; subclasses come before their bases.
_CORE_TO_HTTPX: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    # Keeps this transport a well-behaved httpx transport; ProxyError translation happens later, once,
    # in cube.errors.translate_httpx_errors.
    try:
        yield
    except Exception as exc:
        for core_type, httpx_type in _CORE_TO_HTTPX:
            if isinstance(exc, core_type):
                raise httpx_type(str(exc)) from exc
        raise


def _proxy(proxy_url: str, tls: TlsSettings) -> httpcore.Proxy:
    if "://" not in proxy_url:
        proxy_url = "http://" + proxy_url  # "host:3128", as curl accepts it
    try:
        url = httpx.URL(proxy_url)
    except httpx.InvalidURL as exc:
        raise ProxyNotConfigured(f"`proxy` {proxy_url!r} is not a valid URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ProxyNotConfigured(f"`proxy` must be an http:// or https:// URL, got scheme {url.scheme!r}")
    auth = (url.username, url.password) if url.username else None
    return httpcore.Proxy(
        url=str(url.copy_with(username=None, password=None)),
        auth=auth,
        # TLS to an https:// proxy: same CAs, but our client certificate is for the Cube proxy only.
        ssl_context=build_ssl_context(tls, with_client_cert=False) if url.scheme == "https" else None,
    )


def _env(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name) or environ.get(name.upper()) or "").strip()


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Return whether NO_PROXY names ``host:port`` (host, .domain, *.domain, IP, CIDR, optional port)."""
    host = host.lower().rstrip(".")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        pattern, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if _host_matches(host, pattern):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        inside, _, rest = entry[1:].partition("]")
        return inside, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def _host_matches(host: str, pattern: str) -> bool:
    try:
        network = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        network = None
    if network is not None:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    domain = pattern.removeprefix("*").removeprefix(".").rstrip(".")
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
