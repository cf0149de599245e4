"""Does a verified report meet the attestation policy? A versioned JSON policy, loaded strictly; no crypto.

The policy is data, close to go-sev-guest's ``check.Config``. ``load_policy`` rejects unknown keys, wrong
types and wrong lengths (a bad policy must stop all sending, so it raises ``PolicyInvalidError``).
``check_policy`` takes only a ``VerifiedReport`` (which only ``verify.py`` constructs) and raises
``PolicyViolationError`` with one code per check. Defaults are safe: debug forbidden, migration agent
forbidden, VMPL 0 only, AMD's root only, committed firmware equal to current firmware, and a measurement
REQUIRED (an empty allow-list rejects everything unless the policy sets ``"allow_any_measurement": true``).

Schema (version 1; every key but ``version`` is optional)::

    {
      "version": 1,
      "measurements": ["<96 hex>", ...],          # launch digests allowed; empty: none allowed
      "allow_any_measurement": false,              # true: skip the measurement check (loud on purpose)
      "host_data": ["<64 hex>", ...],              # absent/null: not checked
      "report_ids": ["<64 hex>", ...],             # absent/null: not checked
      "chip_ids": ["<128 hex>", ...],              # absent/null: not checked
      "family_id": "<32 hex>", "image_id": "<32 hex>",   # absent/null: not checked
      "require_id_block": false,                   # ID_KEY_DIGEST must be non-zero
      "id_key_digests": ["<96 hex>", ...],         # absent/null: any ID key (or none)
      "require_author_key": false,                 # AUTHOR_KEY_EN must be 1
      "author_key_digests": ["<96 hex>", ...],     # absent/null: any author key (or none)
      "minimum_guest_svn": 0,
      "guest_policy": {                            # each bit: "forbidden" | "allowed" | "required"
        "debug": "forbidden", "migrate_ma": "forbidden", "smt": "allowed", "single_socket": "allowed",
        "cxl_allow": "allowed", "mem_aes_256_xts": "allowed", "rapl_dis": "allowed",
        "ciphertext_hiding": "allowed", "page_swap_disable": "allowed",
        "minimum_abi": {"major": 0, "minor": 0}
      },
      "platform_info": {"smt_enabled": "allowed", ...},   # same tri-state per PLATFORM_INFO bit
      "minimum_tcb": {                             # bootloader, tee, snp, microcode, fmc (Turin only)
        "current": {...}, "reported": {...}, "committed": {...}, "launch": {...}
      },
      "minimum_firmware": {                        # compared as (major, minor, build)
        "current": {"major": 1, "minor": 55, "build": 0}, "committed": {...}
      },
      "permit_provisional_firmware": false,        # false: committed TCB/firmware must equal current
      "vmpls": [0],                                # allowed VMPL values
      "products": ["Milan", "Genoa", "Turin"],     # absent/null: any
      "required_launch_mit_vector": 0,             # bits that must be set (version 5 reports)
      "required_current_mit_vector": 0,
      "root_of_trust": "amd"                       # or {"simulated": "<64 hex SHA-256 of the simulated ARK>"}
    }
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cube_lsp.attestation.errors import PolicyInvalidError, PolicyViolationError
from cube_lsp.attestation.report import GuestPolicy, PlatformInfo, Product, TcbVersion
from cube_lsp.attestation.verify import VerifiedReport

POLICY_VERSION = 1
BitRule = Literal["forbidden", "allowed", "required"]
TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode", "fmc")
TCB_KINDS = ("current", "reported", "committed", "launch")


@dataclass(frozen=True)
class TcbMinimum:
    """Minimum per TCB component; 0 means no minimum. ``fmc`` applies only to reports that have one."""

    bootloader: int = 0
    tee: int = 0
    snp: int = 0
    microcode: int = 0
    fmc: int = 0


@dataclass(frozen=True)
class FirmwareMinimum:
    """Minimum firmware version, compared as (major, minor, build)."""

    major: int = 0
    minor: int = 0
    build: int = 0


_DEFAULT_GUEST_BITS: dict[str, BitRule] = {name: "allowed" for name in GuestPolicy.BIT_NAMES}
_DEFAULT_GUEST_BITS |= {"debug": "forbidden", "migrate_ma": "forbidden"}


@dataclass(frozen=True)
class Policy:
    """A validated attestation policy; build it with ``load_policy``. ``None`` means "not checked"."""

    measurements: tuple[bytes, ...] = ()
    allow_any_measurement: bool = False
    host_data: tuple[bytes, ...] | None = None
    report_ids: tuple[bytes, ...] | None = None
    chip_ids: tuple[bytes, ...] | None = None
    family_id: bytes | None = None
    image_id: bytes | None = None
    require_id_block: bool = False
    id_key_digests: tuple[bytes, ...] | None = None
    require_author_key: bool = False
    author_key_digests: tuple[bytes, ...] | None = None
    minimum_guest_svn: int = 0
    guest_policy_bits: Mapping[str, BitRule] = field(default_factory=lambda: dict(_DEFAULT_GUEST_BITS))
    minimum_abi: tuple[int, int] = (0, 0)
    platform_info_bits: Mapping[str, BitRule] = field(
        default_factory=lambda: dict.fromkeys(PlatformInfo.BIT_NAMES, "allowed")
    )
    minimum_tcb: Mapping[str, TcbMinimum] = field(
        default_factory=lambda: {k: TcbMinimum() for k in TCB_KINDS}
    )
    minimum_firmware: Mapping[str, FirmwareMinimum] = field(
        default_factory=lambda: {"current": FirmwareMinimum(), "committed": FirmwareMinimum()}
    )
    permit_provisional_firmware: bool = False
    vmpls: tuple[int, ...] = (0,)
    products: tuple[Product, ...] | None = None
    required_launch_mit_vector: int = 0
    required_current_mit_vector: int = 0
    root_of_trust: str = "amd"  # "amd" or "simulated:<fingerprint>", the form VerifiedReport.root takes


# --------------------------------------------------------------------------------------------- loading


def _bad(path: str, message: str) -> PolicyInvalidError:
    return PolicyInvalidError(path, message)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(path, f"found {_type_name(value)} {value!r}, wanted true or false")
    return value


def _int(value: object, path: str, *, lo: int = 0, hi: int = 2**64 - 1) -> int:
    if isinstance(value, str) and value.lower().startswith("0x"):
        try:
            value = int(value, 16)
        except ValueError:
            raise _bad(path, f"found {value!r}, wanted an integer") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(path, f"found {_type_name(value)} {value!r}, wanted an integer")
    if not lo <= value <= hi:
        raise _bad(path, f"found {value}, wanted an integer in [{lo}, {hi}]")
    return value


def _hex(value: object, path: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise _bad(path, f"found {_type_name(value)}, wanted a string of {2 * size} hex digits")
    text = value.strip().lower()
    text = text.removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise _bad(path, f"found {value!r}, wanted {2 * size} hex digits") from None
    if len(raw) != size:
        raise _bad(path, f"found {len(raw)} bytes, wanted {size} bytes ({2 * size} hex digits)")
    return raw


def _hex_list(value: object, path: str, size: int, *, nullable: bool = True) -> tuple[bytes, ...] | None:
    if value is None and nullable:
        return None
    if not isinstance(value, list):
        raise _bad(path, f"found {_type_name(value)}, wanted a list of {2 * size}-hex-digit strings")
    return tuple(_hex(item, f"{path}[{i}]", size) for i, item in enumerate(value))


def _object(value: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(path, f"found {_type_name(value)}, wanted an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _bad(f"{path}.{unknown[0]}", f"unknown key; wanted one of {', '.join(allowed)}")
    return value


def _bit_rule(value: object, path: str) -> BitRule:
    if value == "forbidden" or value == "allowed" or value == "required":
        return value
    raise _bad(path, f"found {value!r}, wanted 'forbidden', 'allowed' or 'required'")


_TOP_KEYS = (
    "version",
    "measurements",
    "allow_any_measurement",
    "host_data",
    "report_ids",
    "chip_ids",
    "family_id",
    "image_id",
    "require_id_block",
    "id_key_digests",
    "require_author_key",
    "author_key_digests",
    "minimum_guest_svn",
    "guest_policy",
    "platform_info",
    "minimum_tcb",
    "minimum_firmware",
    "permit_provisional_firmware",
    "vmpls",
    "products",
    "required_launch_mit_vector",
    "required_current_mit_vector",
    "root_of_trust",
)


def _root_of_trust(value: object) -> str:
    if value == "amd":
        return "amd"
    if isinstance(value, dict):
        obj = _object(value, "root_of_trust", ("simulated",))
        if "simulated" not in obj:
            raise _bad("root_of_trust", 'found {}, wanted "amd" or {"simulated": "<sha256 hex>"}')
        return "simulated:" + _hex(obj["simulated"], "root_of_trust.simulated", 32).hex()
    raise _bad("root_of_trust", f'found {value!r}, wanted "amd" or {{"simulated": "<sha256 hex>"}}')


def _parse(doc: object) -> Policy:
    obj = _object(doc, "(policy)", _TOP_KEYS)
    if "version" not in obj:
        raise _bad("version", f"missing, wanted {POLICY_VERSION}")
    if obj["version"] != POLICY_VERSION or isinstance(obj["version"], bool):
        raise _bad("version", f"found {obj['version']!r}, wanted {POLICY_VERSION}")
    kw: dict[str, Any] = {}
    if "measurements" in obj:
        kw["measurements"] = _hex_list(obj["measurements"], "measurements", 48, nullable=False)
    if "allow_any_measurement" in obj:
        kw["allow_any_measurement"] = _bool(obj["allow_any_measurement"], "allow_any_measurement")
    for key, size in (
        ("host_data", 32),
        ("report_ids", 32),
        ("chip_ids", 64),
        ("id_key_digests", 48),
        ("author_key_digests", 48),
    ):
        if key in obj:
            kw[key] = _hex_list(obj[key], key, size)
    for key in ("family_id", "image_id"):
        if obj.get(key) is not None:
            kw[key] = _hex(obj[key], key, 16)
    for key in ("require_id_block", "require_author_key", "permit_provisional_firmware"):
        if key in obj:
            kw[key] = _bool(obj[key], key)
    if "minimum_guest_svn" in obj:
        kw["minimum_guest_svn"] = _int(obj["minimum_guest_svn"], "minimum_guest_svn", hi=2**32 - 1)
    for key in ("required_launch_mit_vector", "required_current_mit_vector"):
        if key in obj:
            kw[key] = _int(obj[key], key)
    if "guest_policy" in obj:
        gp = _object(obj["guest_policy"], "guest_policy", (*GuestPolicy.BIT_NAMES, "minimum_abi"))
        bits = dict(_DEFAULT_GUEST_BITS)
        for name in GuestPolicy.BIT_NAMES:
            if name in gp:
                bits[name] = _bit_rule(gp[name], f"guest_policy.{name}")
        kw["guest_policy_bits"] = bits
        if "minimum_abi" in gp:
            abi = _object(gp["minimum_abi"], "guest_policy.minimum_abi", ("major", "minor"))
            kw["minimum_abi"] = tuple(
                _int(abi.get(k, 0), f"guest_policy.minimum_abi.{k}", hi=255) for k in ("major", "minor")
            )
    if "platform_info" in obj:
        pi = _object(obj["platform_info"], "platform_info", PlatformInfo.BIT_NAMES)
        kw["platform_info_bits"] = {
            n: _bit_rule(pi.get(n, "allowed"), f"platform_info.{n}") for n in PlatformInfo.BIT_NAMES
        }
    if "minimum_tcb" in obj:
        mt = _object(obj["minimum_tcb"], "minimum_tcb", TCB_KINDS)
        tcbs: dict[str, TcbMinimum] = {}
        for kind in TCB_KINDS:
            comp = _object(mt.get(kind, {}), f"minimum_tcb.{kind}", TCB_COMPONENTS)
            tcbs[kind] = TcbMinimum(
                **{c: _int(comp.get(c, 0), f"minimum_tcb.{kind}.{c}", hi=255) for c in TCB_COMPONENTS}
            )
        kw["minimum_tcb"] = tcbs
    if "minimum_firmware" in obj:
        mf = _object(obj["minimum_firmware"], "minimum_firmware", ("current", "committed"))
        fws: dict[str, FirmwareMinimum] = {}
        for kind in ("current", "committed"):
            ver = _object(mf.get(kind, {}), f"minimum_firmware.{kind}", ("major", "minor", "build"))
            fws[kind] = FirmwareMinimum(
                **{
                    p: _int(ver.get(p, 0), f"minimum_firmware.{kind}.{p}", hi=255)
                    for p in ("major", "minor", "build")
                }
            )
        kw["minimum_firmware"] = fws
    if "vmpls" in obj:
        vmpls = obj["vmpls"]
        if not isinstance(vmpls, list) or not vmpls:
            raise _bad("vmpls", f"found {vmpls!r}, wanted a non-empty list of integers 0..3")
        kw["vmpls"] = tuple(_int(v, f"vmpls[{i}]", hi=3) for i, v in enumerate(vmpls))
    if obj.get("products") is not None:
        products = obj["products"]
        if not isinstance(products, list) or not products:
            raise _bad("products", f"found {products!r}, wanted a non-empty list of Milan, Genoa, Turin")
        names = {p.value: p for p in Product}
        for i, name in enumerate(products):
            if name not in names:
                raise _bad(f"products[{i}]", f"found {name!r}, wanted one of {', '.join(names)}")
        kw["products"] = tuple(names[n] for n in products)
    if "root_of_trust" in obj:
        kw["root_of_trust"] = _root_of_trust(obj["root_of_trust"])
    return Policy(**kw)


def load_policy(source: str | os.PathLike[str] | Mapping[str, Any]) -> Policy:
    """Load and strictly validate a policy from a JSON file path or an already-decoded mapping."""
    if isinstance(source, Mapping):
        return _parse(dict(source))
    if not isinstance(source, str | os.PathLike):
        raise _bad("(policy)", f"found {_type_name(source)}, wanted a JSON file path or a mapping")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(str(path), f"cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(str(path), f"is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    return _parse(doc)


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
