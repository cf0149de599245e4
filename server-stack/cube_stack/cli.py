"""`cube-stack`: run the embedded stack (`up`) and administer its users, domains and tokens.

``cube-stack up`` starts everything on loopback and prints the endpoint, the domain, a token and
the exact cube-lsp settings; Ctrl-C stops it cleanly. The admin commands (``user``, ``domain``,
``token``) work on the same data directory, as the bootstrap admin, without a running stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from cube_stack import __version__
from cube_stack.stack import (
    ADMIN_EMAIL,
    ADMIN_USERNAME,
    EmbeddedStack,
    RunningStack,
    StackOptions,
    StackState,
    default_data_dir,
)
from cube_wire.errors import CubeError
from cube_wire.report import Product, parse_product


def product_argument(text: str) -> Product:
    """Parse ``--product`` (Milan, Milan-B0, Genoa-B1, ...) for argparse, with the choices in the error."""
    try:
        return parse_product(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `cube-stack`."""
    parser = argparse.ArgumentParser(prog="cube-stack", description="The cube-lsp server side")
    parser.add_argument("--version", action="version", version=f"cube-stack {__version__}")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the user's data dir")
    # `cube-stack up --data-dir DIR` must work as well as `cube-stack --data-dir DIR up`: each command
    # accepts it too, and SUPPRESS keeps the top-level value when the command is not given one.
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir", type=Path, default=argparse.SUPPRESS, help="default: the user's data dir"
    )
    # The admin commands work on `cube-stack up`'s data directory, or on a standalone auth service's
    # database (--database-url or CUBE_AUTH_DATABASE_URL) as one of its platform admins.
    database = argparse.ArgumentParser(add_help=False, parents=[data_dir])
    database.add_argument(
        "--database-url",
        default=None,
        help="the auth database (postgresql://... or a SQLite file); default: $CUBE_AUTH_DATABASE_URL, "
        "else the data dir of `cube-stack up`",
    )
    database.add_argument(
        "--as", dest="acting_admin", default=None, help="platform admin to act as with --database-url"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_auth_commands(commands)
    add_runtime_command(commands)

    up = commands.add_parser(
        "up", parents=[data_dir], help="start auth, runtime, simulated attestation agent and proxy"
    )
    up.add_argument("--host", default="127.0.0.1", help="proxy listen address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8900, help="proxy port (default 8900; 0: any free port)")
    up.add_argument("--auth-port", type=int, default=8189, help="auth API port (default 8189; 0: any)")
    up.add_argument("--model", action="append", type=Path, default=[], help="GGUF file to serve (repeatable)")
    up.add_argument("--embed-model", help="sentence-transformers model dir (default: all-MiniLM-L6-v2)")
    up.add_argument("--no-ollama", action="store_true", help="do not use an Ollama at 127.0.0.1:11434")

    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    create_user = user.add_parser("create", help="create a user", parents=[database])
    create_user.add_argument("username")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--password", required=True)

    domain = commands.add_parser("domain", help="manage domains").add_subparsers(dest="action", required=True)
    create_domain = domain.add_parser("create", help="create a domain", parents=[database])
    create_domain.add_argument("name")
    create_domain.add_argument("--route", required=True, help="short identifier used in URLs")
    domain.add_parser("list", help="list domains", parents=[database])

    token = commands.add_parser("token", help="manage personal access tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    create_token = token_actions.add_parser("create", help="create a PAT for a domain", parents=[database])
    create_token.add_argument("--domain", required=True, help="domain id")
    create_token.add_argument("--name", default="cube-lsp")
    create_token.add_argument("--duration", default="90d", help="e.g. 720h or 90d")
    create_token.add_argument(
        "--operation", default="*", help="llm operation the token allows (e.g. completions); * for all"
    )
    token_actions.add_parser("list", help="list the admin's PATs", parents=[database])
    revoke = token_actions.add_parser("revoke", help="revoke a PAT", parents=[database])
    revoke.add_argument("pat_id")

    policy = commands.add_parser("policy", help="write a client attestation policy")
    policy_actions = policy.add_subparsers(dest="action", required=True)
    from_measurement = policy_actions.add_parser("from-measurement", help="pin a launch measurement (hex)")
    from_measurement.add_argument("measurement", help="48-byte launch measurement, 96 hex digits")
    from_measurement.add_argument("--product", action="append", type=product_argument)
    from_measurement.add_argument("--vmpl", action="append", type=int, help="allowed VMPL (default 0)")
    from_measurement.add_argument("--host-data", help="required HOST_DATA, 64 hex digits")
    from_report = policy_actions.add_parser("from-report", help="pin what a trusted CVM's report shows")
    from_report.add_argument("report", help="raw 1184-byte report, or the agent's JSON document")
    from_report.add_argument("--product", type=product_argument, help="for v2 reports (Milan, Milan-B0, ...)")
    for sub in (from_measurement, from_report):
        sub.add_argument("--simulated-root", metavar="SHA256", help="trust this SIMULATED root, not AMD's")
        sub.add_argument(
            "--allow-debug", action="store_true", help="accept debug guests (never in production)"
        )
        sub.add_argument("-o", "--output", type=Path, help="write here (default: print)")
    add_measure_command(policy_actions)
    hal = commands.add_parser("hal", help="the CVM image: build, launch (see hal/README.md)")
    hal_actions = hal.add_subparsers(dest="action", required=True)
    check_kernel = hal_actions.add_parser(
        "check-kernel", help="check a kernel config for what an SEV-SNP guest needs; list its modules"
    )
    check_kernel.add_argument("config", type=Path, help="the kernel's .config, e.g. /boot/config-6.1.0-...")
    launch_args = hal_actions.add_parser(
        "launch-args", help="print the QEMU arguments that launch a deployment description"
    )
    launch_args.add_argument("--deployment", type=Path, required=True, help="the deployment TOML")
    launch_args.add_argument("--no-sev", action="store_true", help="no SEV-SNP: plain VM under TCG")
    launch_args.add_argument(
        "-0", "--null", action="store_true", help="one argument per NUL-terminated record (for scripts)"
    )
    from cube_stack.hal.image.cli import add_image_commands

    add_image_commands(hal_actions)
    return parser


def print_kernel_check(config: Path) -> int:
    """Print what the kernel config lacks for an SNP guest (exit 1) or the modules it needs (exit 0)."""
    from cube_stack.hal.kernel import check_kernel_config

    check = check_kernel_config(config.read_text(encoding="utf-8", errors="replace"))
    version = ".".join(map(str, check.version)) if check.version else "unknown"
    for option, found, why in check.missing:
        print(f"MISSING {option} (found {found}): {why}")
    print(f"kernel {version}: " + ("ok" if check.ok else f"{len(check.missing)} missing"))
    print("modules for the initramfs: " + (" ".join(check.modules) or "none"))
    return 0 if check.ok else 1


def add_measure_command(policy_actions: Any) -> None:
    """Add `cube-stack policy measure`: the expected launch measurement, and a policy pinning it."""
    measure = policy_actions.add_parser(
        "measure",
        help="compute a CVM's launch measurement (sev-snp-measure) and optionally write its policy",
        description="Prints the 96-hex-digit measurement as the last line. Give --deployment, "
        "or the measured inputs one by one.",
    )
    measure.add_argument("--deployment", type=Path, help="the deployment TOML (instead of the flags below)")
    measure.add_argument("--ovmf", type=Path, help="OVMF image: edk2's AmdSevX64 build")
    measure.add_argument("--kernel", type=Path, help="kernel given to QEMU -kernel")
    measure.add_argument("--initrd", type=Path, help="initramfs given to QEMU -initrd")
    measure.add_argument("--append", help="kernel command line given to QEMU -append")
    measure.add_argument("--vcpus", type=int, help="number of vCPUs (QEMU -smp)")
    measure.add_argument("--vcpu-type", help="QEMU -cpu model, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa")
    measure.add_argument("--guest-features", help="VMSA SEV_FEATURES in hex (default 0x1)")
    measure.add_argument("--vmm-type", choices=["QEMU", "ec2", "gce"], help="default QEMU")
    measure.add_argument("--host-data-from", type=Path, help="deployment settings JSON: pin its HOST_DATA")
    measure.add_argument(
        "--ovmf-only", action="store_true", help="print the firmware pages' digest alone (--snp-ovmf-hash)"
    )
    measure.add_argument("--product", action="append", type=product_argument)
    measure.add_argument("--vmpl", action="append", type=int, help="allowed VMPL (default 0)")
    measure.add_argument("-o", "--output", type=Path, help="write the client attestation policy here")


def add_runtime_command(commands: Any) -> None:
    """Add `cube-stack runtime serve ...`: its flags belong to cube_stack.runtime.standalone."""
    runtime = commands.add_parser(
        "runtime", add_help=False, help="serve the built-in model runtime on its own (serve --help)"
    )
    runtime.add_argument("action", choices=["serve"])
    runtime.add_argument("rest", nargs=argparse.REMAINDER, help="the runtime's flags")


def add_auth_commands(commands: Any) -> None:
    """Add `cube-stack auth serve|migrate|keygen`; every flag also reads a ``CUBE_AUTH_*`` variable."""
    auth = commands.add_parser("auth", help="run the auth service on its own (see docs/auth.md)")
    actions = auth.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="postgresql://user@host/db or a SQLite file [DATABASE_URL]")
    common.add_argument(
        "--data-dir", type=Path, default=argparse.SUPPRESS, help="SQLite default home [DATA_DIR]"
    )
    serve = actions.add_parser("serve", parents=[common], help="serve the HTTP API and auth.v1 over gRPC")
    serve.add_argument("--http-listen", help="host:port of the HTTP API [HTTP_LISTEN] (127.0.0.1:8189)")
    serve.add_argument(
        "--grpc-listen", help="host:port of auth.v1.AuthService [GRPC_LISTEN] (127.0.0.1:8181)"
    )
    serve.add_argument("--grpc-tls-cert", help="PEM certificate of the gRPC server [GRPC_TLS_CERT]")
    serve.add_argument("--grpc-tls-key", help="PEM key of --grpc-tls-cert [GRPC_TLS_KEY]")
    serve.add_argument(
        "--grpc-tls-client-ca", help="require client certificates from this CA [GRPC_TLS_CLIENT_CA]"
    )
    serve.add_argument("--signing-key", help="current Ed25519 signing key, PEM [SIGNING_KEY_FILE]")
    serve.add_argument(
        "--previous-signing-key",
        action="append",
        help="an earlier key whose tokens still verify (repeatable) [PREVIOUS_SIGNING_KEYS]",
    )
    serve.add_argument("--issuer", help="JWT iss [ISSUER] (supermq.auth)")
    serve.add_argument("--access-token-ttl", help="e.g. 1h [ACCESS_TOKEN_TTL]")
    serve.add_argument("--refresh-token-ttl", help="e.g. 24h [REFRESH_TOKEN_TTL]")
    serve.add_argument("--pat-max-ttl", help="e.g. 365d [PAT_MAX_TTL]")
    serve.add_argument("--log-level", help="debug, info, warning or error [LOG_LEVEL] (info)")
    actions.add_parser("migrate", parents=[common], help="apply pending schema migrations and exit")
    keygen = actions.add_parser("keygen", help="write a new Ed25519 signing key (0600) and print its kid")
    keygen.add_argument("path", type=Path, help="the new key file (never overwritten)")


# `cube-stack auth` flags and the CUBE_AUTH_* variables they override (the flag wins).
_AUTH_FLAGS = (
    "database_url",
    "data_dir",
    "http_listen",
    "grpc_listen",
    "grpc_tls_cert",
    "grpc_tls_key",
    "grpc_tls_client_ca",
    "issuer",
    "access_token_ttl",
    "refresh_token_ttl",
    "pat_max_ttl",
    "log_level",
)


def auth_environ(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, str]:
    """Return ``environ`` with the given ``cube-stack auth`` flags written over their variables."""
    merged = dict(environ)
    for name in _AUTH_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            merged[f"CUBE_AUTH_{name.upper()}"] = str(value)
    if getattr(args, "signing_key", None) is not None:
        merged["CUBE_AUTH_SIGNING_KEY_FILE"] = args.signing_key
    if getattr(args, "previous_signing_key", None):
        merged["CUBE_AUTH_PREVIOUS_SIGNING_KEYS"] = os.pathsep.join(args.previous_signing_key)
    return merged


def run_auth_command(args: argparse.Namespace) -> int:
    """Run `cube-stack auth serve|migrate|keygen`."""
    import logging

    from cube_stack.auth.keyfiles import write_new_key_file
    from cube_stack.auth.migrations import LATEST_VERSION
    from cube_stack.auth.settings import AuthSettings
    from cube_stack.auth.standalone import ServeOptions, run_auth, run_migrate

    if args.action == "keygen":
        key = write_new_key_file(args.path)
        print(json.dumps({"kid": key.kid, "path": str(args.path)}))
        return 0
    environ = auth_environ(args, dict(os.environ))
    settings = AuthSettings.from_env(environ)
    if args.action == "migrate":
        before, applied = asyncio.run(run_migrate(settings))
        if applied:
            print(f"cube-stack auth: schema version {before} -> {applied[-1]} (applied {applied})")
        else:
            latest = f"latest {LATEST_VERSION}"
            print(f"cube-stack auth: schema already at version {before} ({latest}); nothing to do")
        return 0
    options = ServeOptions.from_env(environ)
    logging.getLogger().setLevel(options.log_level.upper())
    asyncio.run(run_auth(settings, options))
    return 0


def banner(running: RunningStack) -> str:
    """Return what `cube-stack up` prints once everything listens."""
    settings = json.dumps(running.client_settings, indent=2)
    demo = ""
    if running.completion_model.startswith("cube-demo"):
        demo = (
            "\n  NOTE: no --model given and no Ollama found: serving the generated demo model "
            f"{running.completion_model!r}.\n  It has RANDOM WEIGHTS: it proves the path (attestation, auth, "
            "proxy, llama.cpp), not quality.\n"
        )
    return f"""cube-stack is up (Ctrl-C stops it)
  proxy endpoint : {running.endpoint}   (TLS; key made at start, bound to the attestation report)
  attestation    : SIMULATED agent (no SEV-SNP hardware here); policy {running.paths["policy"]}
  auth API       : {running.auth_url}   (SuperMQ-compatible)
  runtime        : {running.runtime} at {running.runtime_url}
  models         : completion {running.completion_model!r}, embeddings {running.embedding_model!r}
  domain         : {running.domain_id}
  token          : {running.token}
{demo}
cube-lsp / VS Code settings (written to {running.paths["client"]}):
{settings}

Try it:  cube complete --settings {running.paths["client"]} FILE:LINE:COL
"""


async def run_up(options: StackOptions, *, ready: Callable[[RunningStack], None] | None = None) -> None:
    """Start the stack, print the banner, and run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with EmbeddedStack(options) as running:
        print(banner(running), flush=True)
        if ready is not None:
            ready(running)
        await stop.wait()
        print("cube-stack: stopping…", flush=True)


async def _admin_on_database(
    database_url: str, acting_admin: str, action: Callable[[Any, Any], Awaitable[object]]
) -> object:
    """Run ``action(service, admin_principal)`` on a standalone auth service's database.

    No password is asked: whoever can run this with the database URL can write the database anyway.
    The other ``CUBE_AUTH_*`` variables apply as they do to `cube-stack auth serve`.
    """
    from cube_stack.auth.service import AuthService
    from cube_stack.auth.settings import AuthSettings

    settings = AuthSettings.from_env(os.environ, database_url=database_url)
    service = await AuthService.open(settings, signing=False)
    try:
        return await action(service, await service.acting_admin(acting_admin))
    finally:
        await service.close()


async def _admin(
    data_dir: Path, action: Callable[[Any, Any], Awaitable[object]], args: argparse.Namespace | None = None
) -> object:
    """Run ``action(service, admin_principal)`` against the stack's (or --database-url's) auth database."""
    from cube_stack.auth.service import AuthService
    from cube_stack.auth.settings import AuthSettings

    database_url = getattr(args, "database_url", None) or os.environ.get("CUBE_AUTH_DATABASE_URL", "")
    if database_url:
        acting = getattr(args, "acting_admin", None) or os.environ.get("CUBE_AUTH_ADMIN_USERNAME") or "admin"
        return await _admin_on_database(database_url, acting, action)
    state_path = data_dir / "state.json"
    if not state_path.is_file():
        raise CubeError(f"no stack in {data_dir}; run `cube-stack up` first", code="stack.missing")
    state = StackState.load_or_create(state_path)
    service = await AuthService.open(
        AuthSettings(
            data_dir=data_dir / "auth",
            admin_username=ADMIN_USERNAME,
            admin_email=ADMIN_EMAIL,
            admin_password=state.admin_password,
        )
    )
    try:
        pair = await service.issue_tokens(ADMIN_USERNAME, state.admin_password)
        admin = await service.authenticate(pair.access_token)
        return await action(service, admin)
    finally:
        await service.close()


def run_admin(args: argparse.Namespace, data_dir: Path) -> object:
    """Dispatch one admin command; return a JSON-ready result."""
    from cube_stack.auth.requests import parse_new_domain, parse_new_pat, parse_new_user

    async def user_create(service: Any, admin: Any) -> object:
        body = {"credentials": {"username": args.username, "secret": args.password}}
        body |= {"email": args.email, "first_name": args.username, "last_name": "-"}
        user = await service.create_user(admin, parse_new_user(body))
        return {"id": user.id, "username": args.username}

    async def domain_create(service: Any, admin: Any) -> object:
        domain = await service.create_domain(
            admin, parse_new_domain({"name": args.name, "route": args.route})
        )
        return {"id": domain.id, "name": domain.name, "route": domain.route}

    async def domain_list(service: Any, admin: Any) -> object:
        total, domains = await service.list_domains(admin, status=None, offset=0, limit=100)
        return {"total": total, "domains": [{"id": d.id, "name": d.name, "route": d.route} for d in domains]}

    async def token_create(service: Any, admin: Any) -> object:
        scope = {
            "domain_id": args.domain,
            "entity_type": "llm",
            "entity_id": "*",
            "operation": args.operation,
        }
        body = {"name": args.name, "description": "cube-stack token create", "duration": args.duration}
        pat, secret = await service.create_pat(admin, parse_new_pat(body | {"scopes": [scope]}))
        return {"id": pat.id, "token": secret, "expires_at": pat.expires_at.isoformat()}

    async def token_list(service: Any, admin: Any) -> object:
        total, pats = await service.list_pats(admin, 0, 100)
        return {"total": total, "pats": [{"id": p.id, "name": p.name, "revoked": p.revoked} for p in pats]}

    async def token_revoke(service: Any, admin: Any) -> object:
        await service.revoke_pat(admin, args.pat_id)
        return {"revoked": args.pat_id}

    handlers = {
        ("user", "create"): user_create,
        ("domain", "create"): domain_create,
        ("domain", "list"): domain_list,
        ("token", "create"): token_create,
        ("token", "list"): token_list,
        ("token", "revoke"): token_revoke,
    }
    return asyncio.run(_admin(data_dir, handlers[(args.command, args.action)], args))


def write_policy(args: argparse.Namespace) -> int:
    """Build a policy from a measurement or a report; print it or write it to --output."""
    from cube_stack.policy_writer import policy_from_measurement, policy_from_report, read_report
    from cube_wire.report import parse_report

    if args.action == "measure":
        return run_measure(args)
    if args.action == "from-measurement":
        policy = policy_from_measurement(
            args.measurement,
            products=tuple(p.value for p in args.product) if args.product else ("Milan", "Genoa", "Turin"),
            vmpls=tuple(args.vmpl or (0,)),
            host_data_hex=args.host_data,
            simulated_root=args.simulated_root,
            allow_debug=args.allow_debug,
        )
    else:
        raw = read_report(Path(args.report))
        report = parse_report(raw, product=args.product)
        policy = policy_from_report(report, simulated_root=args.simulated_root, allow_debug=args.allow_debug)
    text = json.dumps(policy, indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"cube-stack: policy written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def measure_inputs(args: argparse.Namespace) -> tuple[Any, bytes | None]:
    """Return the LaunchInputs and HOST_DATA of `policy measure`, from --deployment or from the flags."""
    from cube_stack.hal.deployment import VCPU_TYPES, LaunchInputs, load_deployment, parse_guest_features
    from cube_wire.host_data import host_data_from_file

    flags = ("ovmf", "kernel", "initrd", "append", "vcpus", "vcpu_type", "guest_features", "vmm_type")
    given = [f"--{name.replace('_', '-')}" for name in flags if getattr(args, name) is not None]
    if args.deployment is not None:
        if given:
            message = f"{', '.join(given)}: not with --deployment, which describes them all"
            raise CubeError(message, code="hal.usage")
        deployment = load_deployment(args.deployment)
        host_data = deployment.host_data
        if args.host_data_from is not None:
            host_data = host_data_from_file(args.host_data_from)
        return deployment.launch, host_data
    if args.ovmf is None:
        raise CubeError("--ovmf (or --deployment): missing", code="hal.usage")
    if args.ovmf_only:
        if given != ["--ovmf"] or args.host_data_from or args.output:
            raise CubeError("--ovmf-only: takes --ovmf alone", code="hal.usage")
        return LaunchInputs(args.ovmf, None, None, "", 1, None), None
    if args.vcpus is None or args.vcpus < 1:
        raise CubeError(f"--vcpus: found {args.vcpus}, wanted 1 or more", code="hal.usage")
    vmm = args.vmm_type or "QEMU"
    if args.vcpu_type is None and vmm == "QEMU":
        raise CubeError("--vcpu-type: missing (EPYC-v4, EPYC-Milan, EPYC-Genoa, ...)", code="hal.usage")
    if args.vcpu_type is not None and args.vcpu_type not in VCPU_TYPES:
        message = f"--vcpu-type: found {args.vcpu_type!r}, wanted one of {list(VCPU_TYPES)}"
        raise CubeError(message, code="hal.usage")
    if args.kernel is None and (args.initrd is not None or args.append):
        raise CubeError("--initrd and --append are measured only with --kernel", code="hal.usage")
    features = "0x1" if args.guest_features is None else args.guest_features
    inputs = LaunchInputs(
        firmware=args.ovmf,
        kernel=args.kernel,
        initramfs=args.initrd,
        cmdline=args.append or "",
        vcpus=args.vcpus,
        vcpu_type=args.vcpu_type,
        guest_features=parse_guest_features(features),
        vmm=vmm,
    )
    host_data = host_data_from_file(args.host_data_from) if args.host_data_from is not None else None
    return inputs, host_data


def run_measure(args: argparse.Namespace) -> int:
    """Run `cube-stack policy measure`: print what was measured, then the measurement as the last line."""
    from cube_stack.hal.measure import firmware_measurement, launch_measurement
    from cube_stack.policy_writer import policy_from_measurement

    inputs, host_data = measure_inputs(args)
    if args.ovmf_only:
        print(firmware_measurement(inputs.firmware).hex())
        return 0
    if inputs.kernel is None:
        print("cube-stack: no --kernel: the measurement covers the firmware only", file=sys.stderr)
    measurement = launch_measurement(inputs).hex()
    print(f"firmware       : {inputs.firmware}")
    print(f"kernel         : {inputs.kernel or '(none)'}")
    print(f"initramfs      : {inputs.initramfs or '(none: empty)'}")
    print(f"cmdline        : {inputs.cmdline!r}")
    print(f"vcpus          : {inputs.vcpus} x {inputs.vcpu_type or '(VMM default)'} ({inputs.vmm})")
    print(f"guest features : {inputs.guest_features:#x}")
    if host_data is not None:
        print(f"host data      : {host_data.hex()}")
    if args.output:
        policy = policy_from_measurement(
            measurement,
            products=tuple(p.value for p in args.product) if args.product else ("Milan", "Genoa", "Turin"),
            vmpls=tuple(args.vmpl or (0,)),
            host_data_hex=host_data.hex() if host_data is not None else None,
        )
        args.output.write_text(json.dumps(policy, indent=2) + "\n", encoding="utf-8")
        print(f"policy         : written to {args.output}")
    print(measurement)
    return 0


def print_launch_args(args: argparse.Namespace) -> int:
    """Run `cube-stack hal launch-args`: the QEMU arguments, shell-quoted or NUL-separated."""
    import shlex

    from cube_stack.hal.deployment import load_deployment
    from cube_stack.hal.launch import qemu_argv

    argv = qemu_argv(load_deployment(args.deployment), sev=not args.no_sev)
    if args.null:
        sys.stdout.write("".join(f"{arg}\0" for arg in argv))
    else:
        print(shlex.join(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cube-stack`."""
    import logging

    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command not in ("policy", "hal"):
        # Like ssh-agent and gpg-agent: whatever this process or its libraries create (SQLite's
        # journal files, caches) is the user's alone. Our own secrets are made 0600 explicitly too.
        os.umask(0o077)
    try:
        if args.command == "up":
            options = StackOptions(
                data_dir=data_dir,
                host=args.host,
                port=args.port,
                auth_port=args.auth_port,
                models=tuple(args.model),
                embed_model=args.embed_model,
                ollama_url=None if args.no_ollama else StackOptions.ollama_url,
            )
            asyncio.run(run_up(options))
            return 0
        if args.command == "policy":
            return write_policy(args)
        if args.command == "hal" and args.action == "check-kernel":
            return print_kernel_check(args.config)
        if args.command == "hal" and args.action == "launch-args":
            return print_launch_args(args)
        if args.command == "hal":
            from cube_stack.hal.image.cli import run_image_command

            return run_image_command(args)
        if args.command == "auth":
            return run_auth_command(args)
        if args.command == "runtime":
            # Imported here: the runtime needs the `runtime` extra, which a server-only install lacks.
            from cube_stack.runtime.standalone import main as runtime_main

            return runtime_main(args.rest)
        print(json.dumps(run_admin(args, data_dir), indent=2))
        return 0
    except CubeError as error:
        print(f"cube-stack: {error.message} [{error.code}]", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"cube-stack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
