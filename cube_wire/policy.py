"""The attestation policy file: a versioned JSON document, loaded strictly; no crypto.

The policy is data, close to go-sev-guest's ``check.Config``. ``load_policy`` rejects unknown keys, wrong
types and wrong lengths (a bad policy must stop all sending, so it raises ``PolicyInvalidError``).
Operators write it (``cube-stack policy``), clients load it and check reports against it
(``cube_lsp.attestation.policy.check_policy``), so its schema lives here, shared. Defaults are safe:
debug forbidden, migration agent forbidden, VMPL 0 only, AMD's root only, committed firmware equal to
current firmware, and a measurement REQUIRED (an empty allow-list rejects everything unless the policy
sets ``"allow_any_measurement": true``).

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

from cube_wire.attestation_errors import PolicyInvalidError
from cube_wire.report import GuestPolicy, PlatformInfo, Product, parse_product

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
        parsed = []
        for i, name in enumerate(products):
            try:
                parsed.append(parse_product(name) if isinstance(name, str) else Product(name))
            except ValueError as exc:
                raise _bad(f"products[{i}]", str(exc)) from None
        kw["products"] = tuple(parsed)
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
