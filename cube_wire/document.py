"""The attestation document: what the in-CVM agent answers to ``POST /{domain}/attestation``.

The agent builds it (:func:`attestation_document`), the client parses it (:func:`parse_attestation_document`);
the format, which both rely on exactly::


    {
      "version": 1,
      "provider": "configfs-tsm" | "sev-guest" | "simulated",
      "simulated": false,                        # true only for the SIMULATED dev-mode provider
      "report": "<standard base64 (with padding) of the 1184-byte ATTESTATION_REPORT>",
      "certificates": "<standard base64 of the GUID certificate table>" | null,   # null: none from the host
      "binding": {
        "label": "cube-attest-v1",               # the REPORT_DATA label
        "nonce": "<64 lower-case hex: the client's nonce, echoed>",
        "spki_sha256": "<64 lower-case hex: SHA-256 of the DER SPKI bound into REPORT_DATA>"
      },
      "product": "Milan" | "Genoa" | "Turin" | null   # from the report's CPUID (v3+), else null
    }

The document is evidence, not a verdict: a client must still verify the report and recompute the binding
from its own nonce and the SPKI of the peer certificate of *its* connection.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cube_wire.attestation_errors import AttestationError
from cube_wire.binding import BINDING_LABEL
from cube_wire.report import product_of_report
from cube_wire.spki import spki_sha256

__all__ = ["DOCUMENT_VERSION", "AttestationDocument", "attestation_document", "parse_attestation_document"]

DOCUMENT_VERSION = 1


def attestation_document(
    provider: str, simulated: bool, report: bytes, certificates: bytes | None, nonce: bytes, spki_der: bytes
) -> dict[str, Any]:
    """Return the agent's JSON document for one report (the format in this module's docstring)."""
    return {
        "version": DOCUMENT_VERSION,
        "provider": provider,
        "simulated": bool(simulated),
        "report": base64.b64encode(report).decode("ascii"),
        "certificates": base64.b64encode(certificates).decode("ascii") if certificates else None,
        "binding": {
            "label": BINDING_LABEL.decode("ascii"),
            "nonce": nonce.hex(),
            "spki_sha256": spki_sha256(spki_der),
        },
        "product": product_of_report(report),
    }


@dataclass(frozen=True)
class AttestationDocument:
    """The in-CVM agent's answer to ``POST /{domain}/attestation`` (evidence, not a verdict)."""

    report: bytes  # the ATTESTATION_REPORT
    certificates: bytes | None  # the GUID certificate table from the host; None: none shipped
    provider: str  # configfs-tsm | sev-guest | simulated
    simulated: bool  # what the agent claims; the verifier decides from the chain
    product: str | None
    nonce: bytes | None  # the nonce the agent says it bound
    spki_sha256: str | None  # the key the agent says it bound


def _invalid(message: str) -> AttestationError:
    return AttestationError(f"attestation document: {message}", code="attestation.document_invalid")


def _b64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise _invalid(f"'{name}': found {type(value).__name__}, wanted a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"'{name}': found a string that is not base64") from None


def parse_attestation_document(data: bytes | str | Mapping[str, Any]) -> AttestationDocument:
    """Parse the agent's JSON document; raise ``attestation.document_invalid`` when it is not one."""
    if isinstance(data, Mapping):
        doc: Any = data
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _invalid("found a body that is not JSON") from None
    if not isinstance(doc, Mapping):
        raise _invalid(f"found {type(doc).__name__}, wanted a JSON object")
    if doc.get("version") != DOCUMENT_VERSION or isinstance(doc.get("version"), bool):
        raise _invalid(f"'version': found {doc.get('version')!r}, wanted {DOCUMENT_VERSION}")
    report = _b64(doc.get("report"), "report")
    certificates = None if doc.get("certificates") is None else _b64(doc["certificates"], "certificates")
    binding = doc.get("binding")
    nonce: bytes | None = None
    spki: str | None = None
    if binding is not None:
        if not isinstance(binding, Mapping):
            raise _invalid(f"'binding': found {type(binding).__name__}, wanted an object")
        label = binding.get("label")
        if label != BINDING_LABEL.decode():
            raise _invalid(f"'binding.label': found {label!r}, wanted {BINDING_LABEL.decode()!r}")
        try:
            nonce = bytes.fromhex(binding["nonce"]) if binding.get("nonce") is not None else None
        except (TypeError, ValueError):
            raise _invalid("'binding.nonce': found a value that is not hex") from None
        spki = binding.get("spki_sha256") if isinstance(binding.get("spki_sha256"), str) else None
    product = doc.get("product")
    return AttestationDocument(
        report=report,
        certificates=certificates,
        provider=str(doc.get("provider", "")),
        simulated=doc.get("simulated") is True,
        product=product if isinstance(product, str) else None,
        nonce=nonce,
        spki_sha256=spki,
    )
