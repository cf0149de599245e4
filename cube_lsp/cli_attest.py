"""`cube attest show|verify|endpoint`: inspect a report, verify it offline, or attest a live proxy.

This bridges files and a live endpoint to ``cube_lsp.attestation`` and the attested transport. REPORT is a
raw 1184-byte ATTESTATION_REPORT or the in-CVM agent's JSON document (detected by its first byte); the
document's certificate table is used unless ``--certs``/``--vcek`` replace it. Field names follow
``testvectors/snp/expected.json``. Exit status: 0 valid (or shown), 1 the report or the endpoint failed a
check, 2 bad arguments or unreadable input, 3 the proxy could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cube_lsp.attestation import (
    CertTable,
    Policy,
    Product,
    SigningKey,
    TcbVersion,
    TrustedRoot,
    VerifiedReport,
    VerifyOptions,
    check_policy,
    load_policy,
    parse_cert_table,
    parse_report,
    verify_report,
)
from cube_lsp.cube.attested import (
    AttestationStatus,
    default_cache_dir,
    kds_getter,
    make_attested_transport,
    parse_attestation_document,
)
from cube_lsp.settings import Settings, parse_settings
from cube_wire.errors import CubeError
from cube_wire.host_data import host_data_from_file
from cube_wire.report import AttestationReport, parse_product

__all__ = ["ATTEST_OPTIONS", "Evidence", "add_attest_parser", "load_evidence", "report_fields", "run_attest"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_PROXY = 0, 1, 2, 3
NO_POLICY = (
    "NO POLICY WAS APPLIED: only authenticity was checked (report signature, certificate chain to the "
    "pinned root, certificate-to-report binding). Measurement, debug, TCB and VMPL were NOT checked."
)


def _product_argument(text: str) -> Product:
    """Parse ``--product`` (Milan, Milan-B0, ...) for argparse, with the choices in the error."""
    try:
        return parse_product(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The options only `cube attest` uses, by dest; `cube` registers them before the subcommand as well
# (see cube_lsp.cli.OPTIONS), so each is (flags, add_argument keywords without a default).
ATTEST_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "json": (("--json",), {"action": "store_true", "help": "print JSON"}),
    "vcek": (("--vcek",), {"metavar": "FILE", "help": "the VCEK or VLEK (DER or PEM)"}),
    "certs": (("--certs",), {"metavar": "FILE", "help": "an extended-report certificate table (GUID table)"}),
    "product": (
        ("--product",),
        {"type": _product_argument, "help": "product, e.g. Milan or Milan-B0 (v2 reports)"},
    ),
    "at": (("--at",), {"metavar": "ISO8601", "help": "verify as of this time (default: now)"}),
    "offline": (("--offline",), {"action": "store_true", "help": "never fetch a VCEK from AMD's key server"}),
    "ca_bundle": (
        ("--ca-bundle",),
        {"metavar": "FILE", "help": "PEM of CAs that signed the proxy's certificate"},
    ),
}

AddOptions = Callable[..., None]


def add_attest_parser(commands: Any, add_options: AddOptions) -> None:
    """Register `cube attest` and its subcommands on the `cube` subparsers.

    ``add_options(parser, names, required=(), helps={})`` adds the named options of ``cube_lsp.cli.OPTIONS``.
    """
    attest = commands.add_parser("attest", help="inspect and verify SEV-SNP attestation")
    sub = attest.add_subparsers(dest="attest_command", required=True)
    show = sub.add_parser("show", help="print the fields of a report")
    show.add_argument("report", metavar="REPORT", help="1184-byte report or the agent's JSON document")
    add_options(show, ["json"])
    verify = sub.add_parser("verify", help="verify a report's signature, chain and (with --policy) policy")
    verify.add_argument("report", metavar="REPORT", help="1184-byte report or the agent's JSON document")
    add_options(
        verify,
        ["vcek", "certs", "policy", "product", "at", "offline", "json"],
        helps={"policy": "attestation policy JSON (unset: authenticity only)"},
    )
    host_data = sub.add_parser(
        "host-data",
        help="print the HOST_DATA a deployment's settings give (to pin in a policy, or to check a report's)",
    )
    host_data.add_argument("settings_file", metavar="SETTINGS", help="the deployment settings JSON")
    add_options(host_data, [])
    endpoint = sub.add_parser("endpoint", help="attest a live proxy over the attested transport")
    endpoint.add_argument("url", metavar="URL", help="proxy base URL, https://...")
    add_options(endpoint, ["domain", "policy", "ca_bundle", "json"], required=["domain", "policy"])


def run_attest(args: argparse.Namespace) -> int:
    """Run one `cube attest` subcommand and return the exit status."""
    try:
        if args.attest_command == "show":
            return _show(args)
        if args.attest_command == "verify":
            return _verify(args)
        if args.attest_command == "host-data":
            print(host_data_from_file(Path(args.settings_file)).hex())
            return 0
        return _endpoint(args)
    except CubeError as error:
        print(f"cube: {error.message} [{error.code}]", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Evidence:
    """A report and the certificate table that came with it (None: none)."""

    report: bytes
    certificates: bytes | None
    simulated_claim: bool | None  # the agent's `simulated` flag when REPORT was its document


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise CubeError(f"cannot read {what} {path}: {exc.strerror or exc}", code="cli.file") from None


def load_evidence(path: str) -> Evidence:
    """Read REPORT: raw report bytes, or the agent's JSON document (detected by a leading '{')."""
    data = _read(path, "REPORT")
    if data.lstrip()[:1] == b"{":
        document = parse_attestation_document(data)
        return Evidence(document.report, document.certificates, document.simulated)
    return Evidence(data, None, None)


def _tcb(tcb: TcbVersion) -> dict[str, Any]:
    out: dict[str, Any] = {} if tcb.fmc is None else {"fmc": tcb.fmc}
    out |= {"bl": tcb.bootloader, "tee": tcb.tee, "snp": tcb.snp, "ucode": tcb.microcode}
    out["raw"] = f"0x{tcb.raw:016x}"
    return out


def report_fields(report: AttestationReport) -> dict[str, Any]:
    """Return the report's fields under the names testvectors/snp/expected.json uses."""
    out: dict[str, Any] = {
        "version": report.version,
        "guest_svn": report.guest_svn,
        "policy": hex(report.policy.raw),
        "vmpl": report.vmpl,
        "signature_algo": report.signature_algo,
        "platform_info": hex(report.platform_info.raw),
        "signing_key": report.signing_key,
        "author_key_en": int(report.author_key_en),
        "mask_chip_key": int(report.mask_chip_key),
    }
    if report.cpuid_fam_id is not None:
        out |= {
            "cpuid_fam": report.cpuid_fam_id,
            "cpuid_mod": report.cpuid_mod_id,
            "cpuid_step": report.cpuid_step,
        }
    out |= {"current_fw": str(report.current_firmware), "committed_fw": str(report.committed_firmware)}
    if report.launch_mit_vector is not None:
        out["launch_mit_vector"] = hex(report.launch_mit_vector)
        out["current_mit_vector"] = hex(report.current_mit_vector or 0)
    for name in (
        "measurement",
        "report_data",
        "host_data",
        "id_key_digest",
        "author_key_digest",
        "report_id",
        "report_id_ma",
        "chip_id",
        "family_id",
        "image_id",
    ):
        out[name] = getattr(report, name).hex()
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        out[name] = _tcb(getattr(report, name))
    out |= {
        "debug": report.policy.debug,
        "migrate_ma": report.policy.migrate_ma,
        "smt_allowed": report.policy.smt,
        "single_socket": report.policy.single_socket,
        "product": report.product.value if report.product is not None else None,
        "product_candidates": [p.value for p in report.product_candidates],
    }
    return out


def _print_fields(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        print(f"{name:<20} {value}")


# --------------------------------------------------------------------------------------------- show


def _show(args: argparse.Namespace) -> int:
    evidence = load_evidence(args.report)
    try:
        report = parse_report(evidence.report)
    except CubeError as error:
        print(f"cube: REPORT is not a valid report: {error.message} [{error.code}]", file=sys.stderr)
        return EXIT_INVALID
    fields = report_fields(report)
    if args.json:
        print(json.dumps(fields, indent=1))
    else:
        if evidence.simulated_claim:
            print(
                "SIMULATED: the agent says this report comes from its dev-mode provider, not SEV-SNP hardware"
            )
        _print_fields(fields)
        for warning in report.warnings:
            print(f"warning: {warning}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- verify


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CubeError(f"--at: found {text!r}, wanted an ISO 8601 time", code="cli.usage") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _first_certificate(data: bytes) -> bytes:
    end = b"-----END CERTIFICATE-----"
    if data.lstrip().startswith(b"-----BEGIN") and end in data:
        return data[: data.index(end) + len(end)] + b"\n"
    return data


def _certs(args: argparse.Namespace, evidence: Evidence, report: AttestationReport) -> CertTable:
    certs = parse_cert_table(evidence.certificates) if evidence.certificates else CertTable()
    if args.certs:
        certs = parse_cert_table(_read(args.certs, "--certs"))
    if args.vcek:
        leaf = _first_certificate(_read(args.vcek, "--vcek"))
        certs = replace(certs, vlek=leaf) if report.signer is SigningKey.VLEK else replace(certs, vcek=leaf)
    return certs


def _options(args: argparse.Namespace, policy: Policy | None) -> VerifyOptions:
    when = _when(args.at)
    root = policy.root_of_trust if policy is not None else "amd"
    simulated = root.startswith("simulated:")
    return VerifyOptions(
        now=(lambda: when) if when is not None else None,
        product=args.product,
        trust_amd=not simulated,
        extra_roots=(TrustedRoot.from_fingerprint(root.split(":", 1)[1]),) if simulated else (),
        getter=None if args.offline else kds_getter,
        cache_dir=default_cache_dir(),
        offline=args.offline,
    )


def _verify(args: argparse.Namespace) -> int:
    evidence = load_evidence(args.report)
    policy = load_policy(Path(args.policy).expanduser()) if args.policy else None
    options = _options(args, policy)
    verified: VerifiedReport | None = None
    report: AttestationReport | None = None
    try:
        report = parse_report(evidence.report, product=options.product)
        verified = verify_report(report, _certs(args, evidence, report), options)
        if policy is not None:
            check_policy(verified, policy)
    except CubeError as error:
        if error.code.startswith("cli."):
            raise
        return _verdict(args, verified, report, policy, error)
    return _verdict(args, verified, report, policy, None)


def _verdict(
    args: argparse.Namespace,
    verified: VerifiedReport | None,
    report: AttestationReport | None,
    policy: Policy | None,
    error: CubeError | None,
) -> int:
    result: dict[str, Any] = {
        "valid": error is None,
        "code": error.code if error is not None else None,
        "message": error.message if error is not None else None,
        "policy_applied": policy is not None,
        "notice": NO_POLICY if policy is None else None,
        "simulated": verified.simulated if verified is not None else None,
        "root": verified.root if verified is not None else None,
        "product": verified.product.value if verified is not None else None,
        "signer": f"SEV-{verified.signer.name}" if verified is not None else None,
        "report": report_fields(report) if report is not None else None,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        if error is not None:
            print(f"INVALID [{error.code}]: {error.message}")
        elif verified is not None:
            chain = " <- ".join(_cn(cert) for cert in verified.chain)
            kind = "a SIMULATED root (dev mode, NOT AMD)" if verified.simulated else "AMD"
            print(f"VALID: signed by {kind}, {verified.product.value}, chain {chain}")
            print("policy: applied, every check passed" if policy is not None else NO_POLICY)
        if report is not None:
            print(f"measurement          {report.measurement.hex()}")
            print(f"reported_tcb         {report.reported_tcb}")
    if policy is None and error is not None and not args.json:
        print(NO_POLICY)
    return EXIT_OK if error is None else EXIT_INVALID


def _cn(cert: Any) -> str:
    from cryptography.x509.oid import NameOID

    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else "?"


# --------------------------------------------------------------------------------------------- endpoint


def _endpoint(args: argparse.Namespace) -> int:
    policy = load_policy(Path(args.policy).expanduser())
    mode = "simulated" if policy.root_of_trust.startswith("simulated:") else "required"
    raw: dict[str, Any] = {
        "endpoint": args.url,
        "domain": args.domain,
        "attestation": {"mode": mode, "policy": args.policy},
    }
    if args.ca_bundle:
        raw["tls"] = {"caBundle": args.ca_bundle}
    settings, errors = parse_settings(raw)
    if errors:
        raise CubeError("; ".join(e.message for e in errors), code="settings.invalid")
    status, error = asyncio.run(_attest_endpoint(settings))
    sys.stderr.flush()  # log lines first, each whole, then the result on lines of its own
    _print_status(args, status)
    sys.stdout.flush()
    if error is None:
        return EXIT_OK
    return EXIT_PROXY if error.code.startswith("proxy.") else EXIT_INVALID


async def _attest_endpoint(settings: Settings) -> tuple[AttestationStatus, CubeError | None]:
    transport = make_attested_transport(settings)
    try:
        return await transport.attestor.attest(), None
    except CubeError as error:
        return transport.attestor.status, error
    finally:
        await transport.aclose()


def _print_status(args: argparse.Namespace, status: AttestationStatus) -> None:
    fields = status.payload() | {"endpoint": args.url, "spki_sha256": status.spki_sha256}
    if args.json:
        print(json.dumps(fields, indent=1))
        return
    verdict = {"verified": "VERIFIED", "simulated": "SIMULATED (dev mode, NOT a confidential VM)"}.get(
        status.state, f"FAILED [{status.code}]"
    )
    detail = status.message
    if status.state == "simulated" and status.measurement:
        # The attestor's message already says SIMULATED (dev mode, ...): say it once, in the verdict.
        detail = f"{status.product}, measurement {status.measurement[:16]}…"
    print(f"{verdict}: {detail}")
    _print_fields({k: v for k, v in fields.items() if k not in ("message", "state") and v is not None})
