"""Write client attestation policies from a launch measurement or from a report of a known-good CVM.

An operator who built an image (HAL computes its launch measurement) or who holds a report from a
CVM they trust gives clients a policy that pins exactly that: the measurement, the product, the
VMPL, and (from a report) HOST_DATA and the TCB and firmware the CVM reported, as minimums. The
result is checked with the loader clients use (:func:`cube_wire.policy.load_policy`) before it is
returned, so a written policy always loads. Debug stays forbidden unless asked for explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cube_wire.document import parse_attestation_document
from cube_wire.errors import CubeError
from cube_wire.policy import load_policy
from cube_wire.report import AttestationReport

PRODUCTS = ("Milan", "Genoa", "Turin")


def policy_from_measurement(
    measurement_hex: str,
    *,
    products: tuple[str, ...] = PRODUCTS,
    vmpls: tuple[int, ...] = (0,),
    host_data_hex: str | None = None,
    simulated_root: str | None = None,
    allow_debug: bool = False,
) -> dict[str, Any]:
    """Return a policy accepting only ``measurement_hex`` (48 bytes, hex) on the given products."""
    measurement = measurement_hex.strip().lower()
    if len(measurement) != 96 or any(c not in "0123456789abcdef" for c in measurement):
        raise CubeError(
            f"measurement: found {len(measurement)} characters, wanted 96 hex digits (48 bytes)",
            code="policy.measurement_invalid",
        )
    unknown = [p for p in products if p not in PRODUCTS]
    if unknown:
        raise CubeError(
            f"product: found {unknown}, wanted some of {list(PRODUCTS)}", code="policy.product_invalid"
        )
    policy: dict[str, Any] = {
        "version": 1,
        "measurements": [measurement],
        "products": list(products),
        "vmpls": list(vmpls),
        "root_of_trust": {"simulated": simulated_root} if simulated_root else "amd",
    }
    if host_data_hex:
        policy["host_data"] = [host_data_hex.strip().lower()]
    if allow_debug:
        policy["guest_policy"] = {"debug": "allowed"}
    load_policy(policy)  # raises attestation.policy_invalid with the field named
    return policy


def policy_from_report(
    report: AttestationReport, *, simulated_root: str | None = None, allow_debug: bool = False
) -> dict[str, Any]:
    """Return a policy that accepts CVMs like the one that produced ``report``, at its TCB or newer."""
    if report.product is None:
        raise CubeError(
            "product: the report does not say whether it is Milan or Genoa; pass --product",
            code="policy.product_unknown",
        )
    policy = policy_from_measurement(
        report.measurement.hex(),
        products=(report.product.value,),
        vmpls=(report.vmpl,),
        host_data_hex=report.host_data.hex(),
        simulated_root=simulated_root,
        allow_debug=allow_debug,
    )
    policy["minimum_tcb"] = {"reported": report.reported_tcb.components()}
    firmware = report.current_firmware
    policy["minimum_firmware"] = {
        "current": {"major": firmware.major, "minor": firmware.minor, "build": firmware.build}
    }
    load_policy(policy)
    return policy


def read_report(path: Path) -> bytes:
    """Return the report in ``path``: raw report bytes, or the agent's JSON document (a leading '{')."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"REPORT {path}: cannot be read ({exc.strerror})"
        raise CubeError(message, code="policy.report_unreadable") from None
    if data.lstrip()[:1] == b"{":
        return parse_attestation_document(data).report
    return data
