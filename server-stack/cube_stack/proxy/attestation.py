"""``POST /{domainID}/attestation``: the seam between the proxy and the in-CVM attestation agent.

The client sends a fresh 32-byte nonce; the proxy hands it to the :class:`AttestationAgent` together with
the DER SubjectPublicKeyInfo of the TLS key it serves with, and returns the agent's JSON. The agent binds
both into REPORT_DATA (DESIGN.md §1.4); this module only validates input and routes. With no agent
configured the route answers 501.

The route takes no bearer token and checks none it is given: the client must be able to attest the proxy
before it trusts it with a credential (DESIGN.md §1.2: the network is not trusted, so a token sent to an
unattested server may be sent to an impostor). A report carries nothing secret -- the measurement, the
TCB and the chip id that the VCEK certificate names anyway -- but asking the secure processor for one
costs, so requests are rate-limited per client address (429 with Retry-After).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from typing import Any, Protocol, runtime_checkable

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from cube_stack.agent.errors import AgentRequestError
from cube_stack.proxy.errors import (
    BadRequestError,
    CubeProxyError,
    NotConfiguredError,
    RateLimitedError,
    error_response,
)
from cube_stack.proxy.middleware import audit_record, read_body
from cube_stack.proxy.ratelimit import Limiter
from cube_stack.proxy.routes import DOMAIN, ProxyRoute

log = logging.getLogger(__name__)

NONCE_BYTES = 32
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@runtime_checkable
class AttestationAgent(Protocol):
    """Produces attestation evidence binding a client nonce to the proxy's TLS key."""

    async def attest(self, nonce: bytes, spki_der: bytes) -> dict[str, Any]:
        """Return a JSON-serialisable attestation document for ``nonce`` and ``spki_der``."""
        ...


def parse_nonce(body: bytes) -> bytes:
    """Return the 32-byte nonce of ``{"nonce": "<hex or base64>"}``, or raise 400 naming the problem."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError(
            'the body must be JSON: {"nonce": "<32 bytes, hex or base64>"}', code="cube_proxy.invalid_json"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("nonce"), str):
        raise BadRequestError(
            "missing 'nonce': expected a hex or base64 string of 32 bytes", code="cube_proxy.missing_nonce"
        )
    text: str = data["nonce"].strip()
    if _HEX.match(text) and len(text) % 2 == 0:  # base64 of 32 bytes is never even-length pure hex
        raw = bytes.fromhex(text)
    else:
        try:
            altchars = b"-_" if ("-" in text or "_" in text) else b"+/"
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError(
                "'nonce' is neither hex nor base64", code="cube_proxy.nonce_encoding"
            ) from None
    if len(raw) != NONCE_BYTES:
        raise BadRequestError(
            f"'nonce' must be exactly {NONCE_BYTES} bytes, got {len(raw)}", code="cube_proxy.nonce_length"
        )
    return raw


def client_address(scope: Scope) -> str:
    """Return the peer's IP address, the key of the attestation rate limit ("" when unknown)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


class AttestationEndpoint:
    """The ASGI handler behind the attestation route: rate limit, nonce, agent, JSON answer."""

    def __init__(
        self,
        agent: AttestationAgent | None,
        spki_der: bytes,
        *,
        route: ProxyRoute,
        limiter: Limiter,
    ) -> None:
        self._agent = agent
        self._spki_der = spki_der
        self._route = route
        self._limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Validate the nonce, ask the agent, answer its document as JSON."""
        record = audit_record(scope)
        record.route = self._route.template
        record.domain = scope.get("path_params", {}).get(DOMAIN)
        try:
            wait = await self._limiter.take(client_address(scope))
            if wait > 0:
                raise RateLimitedError(
                    f"too many attestation requests from this address; retry in {wait:.1f} s",
                    retry_after=wait,
                )
            if self._agent is None:
                raise NotConfiguredError("attestation agent not configured")
            nonce = parse_nonce(await read_body(receive))
            document = await self._agent.attest(nonce, self._spki_der)
        except CubeProxyError as exc:
            record.outcome = exc.code
            await error_response(exc)(scope, receive, send)
            return
        except AgentRequestError as exc:  # the request's fault (an unusable nonce): 400 with its words
            record.outcome = exc.code
            await error_response(BadRequestError(exc.message, code=exc.code))(scope, receive, send)
            return
        except Exception as exc:  # an agent fault; its message may quote device paths or input
            log.error("proxy.attestation_failed type=%s", type(exc).__name__, extra={"event": "proxy.attest"})
            record.outcome = "cube_proxy.attestation_failed"
            await error_response(CubeProxyError("attestation failed", code="cube_proxy.attestation_failed"))(
                scope, receive, send
            )
            return
        await JSONResponse(document)(scope, receive, send)
