"""SPKI pinning at the httpcore network-backend seam: no request byte goes to a key that is not attested.

This bridges the attestation verdicts (:class:`PinSet`, filled by :mod:`cube_lsp.cube.attested`) and
httpcore's connection pool. :class:`PinningBackend` wraps any ``httpcore.AsyncNetworkBackend``; the streams it
returns check the server's key twice:

* ``start_tls`` (run once per new TLS connection, pooled or not) completes the handshake, reads the peer
  certificate from ``get_extra_info("ssl_object")`` and closes the connection with
  :class:`SpkiNotPinnedError` when its SubjectPublicKeyInfo is not pinned. Nothing has been written yet.
* ``write`` re-checks the pin before every write, so a pooled connection whose pin expired or was dropped
  (policy change, interval) cannot carry a request either; httpcore then closes it.

The one exception is the attestation exchange itself: inside :func:`attestation_exchange` (a context
variable, so it covers only the task that fetches the report) a connection to an unpinned key may carry the
attestation request, which holds a nonce and nothing else. A plain-text write to the endpoint is always
refused; streams to an HTTP(S) proxy in front of it are not checked (the tunnel inside them is).
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpcore
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cube_wire.attestation_errors import AttestationError
from cube_wire.spki import spki_sha256

__all__ = [
    "PinSet",
    "PinningBackend",
    "SpkiNotPinnedError",
    "attestation_exchange",
    "peer_spki_der",
    "spki_sha256",
]

_EXCHANGE: contextvars.ContextVar[bool] = contextvars.ContextVar("cube_attestation_exchange", default=False)


class SpkiNotPinnedError(AttestationError):
    """The server presented a TLS key that is not (or no longer) attested; nothing was sent on it."""

    code = "attestation.spki_not_pinned"

    def __init__(self, message: str, *, spki_der: bytes | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.spki_der = spki_der


def peer_spki_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes:
    """Return the DER SubjectPublicKeyInfo of the peer certificate of a live TLS connection."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise SpkiNotPinnedError(
            "TLS connection: found no server certificate, wanted one whose key is attested",
            code="attestation.no_tls",
        )
    try:
        cert = x509.load_der_x509_certificate(der)
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError) as exc:
        raise SpkiNotPinnedError(
            f"server certificate: cannot read its public key ({exc})", code="attestation.no_tls"
        ) from None


@contextlib.contextmanager
def attestation_exchange() -> Iterator[None]:
    """Let the current task send the attestation request over a connection whose key is not pinned yet."""
    token = _EXCHANGE.set(True)
    try:
        yield
    finally:
        _EXCHANGE.reset(token)


class PinSet:
    """The server keys (SPKI DER) that passed attestation, each valid for ``lifetime_s`` after it passed."""

    def __init__(self, *, lifetime_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._pinned_at: dict[bytes, float] = {}

    def pin(self, spki_der: bytes) -> None:
        """Trust ``spki_der`` from now until the lifetime runs out."""
        self._pinned_at[bytes(spki_der)] = self._clock()

    def is_pinned(self, spki_der: bytes) -> bool:
        """Return whether ``spki_der`` is pinned and its pin has not expired."""
        pinned_at = self._pinned_at.get(bytes(spki_der))
        return pinned_at is not None and self._clock() - pinned_at < self._lifetime_s

    def any_pinned(self) -> bool:
        """Return whether at least one pin is still valid."""
        now = self._clock()
        return any(now - at < self._lifetime_s for at in self._pinned_at.values())

    def clear(self) -> None:
        """Drop every pin (the policy changed or stopped being valid)."""
        self._pinned_at.clear()

    def pinned(self) -> Iterable[str]:
        """Return the SHA-256 of every valid pin (for status and logs)."""
        now = self._clock()
        return [spki_sha256(k) for k, at in self._pinned_at.items() if now - at < self._lifetime_s]


class PinningBackend(httpcore.AsyncNetworkBackend):
    """A network backend whose TLS connections to ``target_host`` carry bytes only to pinned keys."""

    def __init__(
        self, pins: PinSet, *, target_host: str, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.pins = pins
        self.target_host = target_host.strip("[]").lower()
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect; a plain connection to the endpoint itself may not be written to before TLS."""
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _PinnedStream(stream, self, guarded=self._is_target(host))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to a Unix socket; guarded like a connection to the endpoint."""
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _PinnedStream(stream, self, guarded=True)

    async def sleep(self, seconds: float) -> None:
        """Sleep with the inner backend's clock."""
        await self._inner.sleep(seconds)

    def _is_target(self, host: str | None) -> bool:
        return (host or "").strip("[]").lower() == self.target_host


class _PinnedStream(httpcore.AsyncNetworkStream):
    """A stream that refuses writes to the endpoint unless its TLS key is pinned (or attesting now)."""

    def __init__(
        self,
        inner: httpcore.AsyncNetworkStream,
        backend: PinningBackend,
        *,
        guarded: bool,
        spki_der: bytes | None = None,
    ) -> None:
        self._inner = inner
        self._backend = backend
        self._guarded = guarded
        self._spki_der = spki_der

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self._guarded and buffer:
            self._check()
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        if not self._backend._is_target(server_hostname):
            return _PinnedStream(stream, self._backend, guarded=False)  # TLS to an HTTPS proxy
        try:
            spki = peer_spki_der(stream.get_extra_info("ssl_object"))
            checked = _PinnedStream(stream, self._backend, guarded=True, spki_der=spki)
            checked._check()
        except BaseException:
            await stream.aclose()
            raise
        return checked

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def _check(self) -> None:
        if self._spki_der is None:
            raise SpkiNotPinnedError(
                f"connection to {self._backend.target_host}: found plain text, wanted TLS to an attested key",
                code="attestation.https_required",
            )
        if _EXCHANGE.get() or self._backend.pins.is_pinned(self._spki_der):
            return
        raise SpkiNotPinnedError(
            f"TLS key of {self._backend.target_host}: found SPKI SHA-256 {spki_sha256(self._spki_der)}, "
            "wanted an attested key (refused before sending anything)",
            spki_der=self._spki_der,
        )
