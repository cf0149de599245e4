"""Does a verified report meet the attestation policy? ``check_policy``, over the shared policy schema.

The policy file's schema and its strict loader are :mod:`cube_wire.policy` (operators write policies,
clients load them). ``check_policy`` takes only a ``VerifiedReport`` (which only ``verify.py`` constructs)
and raises ``PolicyViolationError`` with one code per check.
"""

from __future__ import annotations

from collections.abc import Mapping

from cube_lsp.attestation.verify import VerifiedReport
from cube_wire.attestation_errors import PolicyViolationError
from cube_wire.policy import (
    POLICY_VERSION,
    TCB_COMPONENTS,
    TCB_KINDS,
    BitRule,
    FirmwareMinimum,
    Policy,
    TcbMinimum,
    load_policy,
)
from cube_wire.report import TcbVersion

__all__ = [
    "POLICY_VERSION",
    "TCB_COMPONENTS",
    "TCB_KINDS",
    "BitRule",
    "FirmwareMinimum",
    "Policy",
    "TcbMinimum",
    "check_policy",
    "load_policy",
]


# --------------------------------------------------------------------------------------------- checking


def _violation(field_name: str, message: str, code: str) -> PolicyViolationError:
    return PolicyViolationError(field_name, message, code=f"attestation.{code}")


def _in_list(value: bytes, allowed: tuple[bytes, ...], field_name: str, code: str) -> None:
    if value not in allowed:
        wanted = ", ".join(a.hex() for a in allowed[:3]) + (" ..." if len(allowed) > 3 else "")
        raise _violation(field_name, f"found {value.hex()}, wanted one of [{wanted}]", code)


def _check_bits(values: object, rules: Mapping[str, BitRule], prefix: str, code_prefix: str) -> None:
    for name, rule in rules.items():
        is_set = bool(getattr(values, name))
        if rule == "forbidden" and is_set:
            if prefix == "POLICY" and name == "debug":
                raise _violation(
                    "POLICY.DEBUG", "found 1, wanted 0 (the host could read guest memory)", "debug_enabled"
                )
            raise _violation(
                f"{prefix}.{name.upper()}",
                "found 1, wanted 0 (forbidden by policy)",
                f"{code_prefix}_forbidden",
            )
        if rule == "required" and not is_set:
            raise _violation(
                f"{prefix}.{name.upper()}",
                "found 0, wanted 1 (required by policy)",
                f"{code_prefix}_required",
            )


def _check_tcb(tcb: TcbVersion, minimum: TcbMinimum, field_name: str) -> None:
    for name, value in tcb.components().items():
        wanted = getattr(minimum, name)
        if value < wanted:
            raise _violation(
                f"{field_name}.{name}", f"found {value}, wanted at least {wanted}", "tcb_too_low"
            )


def check_policy(verified: VerifiedReport, policy: Policy) -> None:
    """Raise PolicyViolationError for the first policy check the verified report fails."""
    if not isinstance(verified, VerifiedReport):
        raise TypeError("check_policy accepts only a VerifiedReport (from verify_report)")
    if not isinstance(policy, Policy):
        raise TypeError("check_policy needs a Policy (from load_policy)")
    r = verified.report

    if verified.root != policy.root_of_trust:
        raise _violation(
            "root of trust", f"found {verified.root}, wanted {policy.root_of_trust}", "root_not_allowed"
        )
    if policy.products is not None and verified.product not in policy.products:
        wanted = ", ".join(p.value for p in policy.products)
        raise _violation(
            "product", f"found {verified.product.value}, wanted one of {wanted}", "product_not_allowed"
        )

    if not policy.allow_any_measurement:
        if not policy.measurements:
            raise _violation(
                "MEASUREMENT",
                f"found {r.measurement.hex()}, but the policy allows no measurement "
                "(list it in 'measurements', or set 'allow_any_measurement')",
                "measurement_mismatch",
            )
        _in_list(r.measurement, policy.measurements, "MEASUREMENT", "measurement_mismatch")
    if policy.host_data is not None:
        _in_list(r.host_data, policy.host_data, "HOST_DATA", "host_data_mismatch")
    if policy.report_ids is not None:
        _in_list(r.report_id, policy.report_ids, "REPORT_ID", "report_id_not_allowed")
    if policy.chip_ids is not None:
        _in_list(r.chip_id, policy.chip_ids, "CHIP_ID", "chip_id_not_allowed")
    if policy.family_id is not None and r.family_id != policy.family_id:
        raise _violation(
            "FAMILY_ID", f"found {r.family_id.hex()}, wanted {policy.family_id.hex()}", "family_id_mismatch"
        )
    if policy.image_id is not None and r.image_id != policy.image_id:
        raise _violation(
            "IMAGE_ID", f"found {r.image_id.hex()}, wanted {policy.image_id.hex()}", "image_id_mismatch"
        )
    has_id_block = any(r.id_key_digest)
    if policy.require_id_block and not has_id_block:
        raise _violation(
            "ID_KEY_DIGEST", "found all zero (no ID block), wanted an ID block", "id_block_missing"
        )
    if policy.id_key_digests is not None and has_id_block:
        _in_list(r.id_key_digest, policy.id_key_digests, "ID_KEY_DIGEST", "id_key_not_allowed")
    if policy.require_author_key and not r.author_key_en:
        raise _violation("AUTHOR_KEY_EN", "found 0, wanted 1 (an author key)", "author_key_missing")
    if policy.author_key_digests is not None and r.author_key_en:
        _in_list(
            r.author_key_digest, policy.author_key_digests, "AUTHOR_KEY_DIGEST", "author_key_not_allowed"
        )
    if r.guest_svn < policy.minimum_guest_svn:
        raise _violation(
            "GUEST_SVN",
            f"found {r.guest_svn}, wanted at least {policy.minimum_guest_svn}",
            "guest_svn_too_low",
        )

    _check_bits(r.policy, policy.guest_policy_bits, "POLICY", "policy_bit")
    abi = (r.policy.abi_major, r.policy.abi_minor)
    if abi < policy.minimum_abi:
        raise _violation(
            "POLICY.ABI",
            f"found {abi[0]}.{abi[1]}, wanted at least {policy.minimum_abi[0]}.{policy.minimum_abi[1]}",
            "abi_too_low",
        )
    _check_bits(r.platform_info, policy.platform_info_bits, "PLATFORM_INFO", "platform_info")
    if r.vmpl not in policy.vmpls:
        raise _violation("VMPL", f"found {r.vmpl}, wanted one of {list(policy.vmpls)}", "vmpl_not_allowed")

    for kind in TCB_KINDS:
        _check_tcb(getattr(r, f"{kind}_tcb"), policy.minimum_tcb[kind], f"{kind.upper()}_TCB")
    for kind, fw in (("current", r.current_firmware), ("committed", r.committed_firmware)):
        minimum = policy.minimum_firmware[kind]
        floor = (minimum.major, minimum.minor, minimum.build)
        if fw.as_tuple() < floor:
            raise _violation(
                f"{kind.upper()}_FIRMWARE",
                f"found {fw}, wanted at least {'.'.join(map(str, floor))}",
                "firmware_too_low",
            )
    if not policy.permit_provisional_firmware:
        if r.committed_tcb.raw != r.current_tcb.raw:
            raise _violation(
                "COMMITTED_TCB",
                f"found {r.committed_tcb}, wanted CURRENT_TCB {r.current_tcb} "
                "(provisional firmware not permitted)",
                "provisional_firmware",
            )
        if r.committed_firmware != r.current_firmware:
            raise _violation(
                "COMMITTED_FIRMWARE",
                f"found {r.committed_firmware}, wanted {r.current_firmware} "
                "(provisional firmware not permitted)",
                "provisional_firmware",
            )

    for name, required, found in (
        ("LAUNCH_MIT_VECTOR", policy.required_launch_mit_vector, r.launch_mit_vector),
        ("CURRENT_MIT_VECTOR", policy.required_current_mit_vector, r.current_mit_vector),
    ):
        if required and (found is None or found & required != required):
            shown = "absent (report version < 5)" if found is None else f"0x{found:x}"
            raise _violation(name, f"found {shown}, wanted bits 0x{required:x} set", "mitigation_missing")
