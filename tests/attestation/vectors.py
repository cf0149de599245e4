"""The shared SEV-SNP test vectors (shared/testvectors/snp, see its SOURCES.md) and how to load them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.attestation import CertTable, Product, VerifyOptions

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SNP = SHARED / "testvectors" / "snp"

if not (SNP / "expected.json").is_file():  # pragma: no cover - only outside the project workspace
    pytest.skip(f"SEV-SNP test vectors not found at {SNP}", allow_module_level=True)

EXPECTED: dict[str, Any] = json.loads((SNP / "expected.json").read_text())
REPORTS: dict[str, dict[str, Any]] = EXPECTED["reports"]
SIGNED = {k: v for k, v in REPORTS.items() if v.get("cert_file")}
PRODUCT_VECTORS = {  # one real report per product, for the expensive loops
    Product.MILAN: "oak_milan_oc_release_v3",
    Product.GENOA: "oak_genoa_v5",
    Product.TURIN: "oak_turin_v5",
}


def report_bytes(vid: str) -> bytes:
    return (SNP / REPORTS[vid]["report_file"]).read_bytes()


def leaf_bytes(vid: str) -> bytes:
    """Return the vector's VCEK/VLEK; PEM bundles (VCEK, ASK, ARK) give their first certificate."""
    data = (SNP / REPORTS[vid]["cert_file"]).read_bytes()
    if data.startswith(b"-----BEGIN"):
        end = b"-----END CERTIFICATE-----"
        return data[: data.index(end) + len(end)] + b"\n"
    return data


def certs_for(vid: str) -> CertTable:
    leaf = leaf_bytes(vid)
    return CertTable(vlek=leaf) if REPORTS[vid]["signer"] == "SEV-VLEK" else CertTable(vcek=leaf)


def pinned_now(vid: str) -> datetime:
    """A time inside every certificate's validity: one day after the leaf's notBefore."""
    return datetime.fromisoformat(REPORTS[vid]["cert_not_before"]) + timedelta(days=1)


def options_at(vid: str, **kw: Any) -> VerifyOptions:
    when = pinned_now(vid)
    return VerifyOptions(now=lambda: when, **kw)
