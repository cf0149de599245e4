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

from cube_lsp.errors import CubeError
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
    commands = parser.add_subparsers(dest="command", required=True)

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
    create_user = user.add_parser("create", help="create a user", parents=[data_dir])
    create_user.add_argument("username")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--password", required=True)

    domain = commands.add_parser("domain", help="manage domains").add_subparsers(dest="action", required=True)
    create_domain = domain.add_parser("create", help="create a domain", parents=[data_dir])
    create_domain.add_argument("name")
    create_domain.add_argument("--route", required=True, help="short identifier used in URLs")
    domain.add_parser("list", help="list domains", parents=[data_dir])

    token = commands.add_parser("token", help="manage personal access tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    create_token = token_actions.add_parser("create", help="create a PAT for a domain", parents=[data_dir])
    create_token.add_argument("--domain", required=True, help="domain id")
    create_token.add_argument("--name", default="cube-lsp")
    create_token.add_argument("--duration", default="90d", help="e.g. 720h or 90d")
    create_token.add_argument(
        "--operation", default="*", help="llm operation the token allows (e.g. completions); * for all"
    )
    token_actions.add_parser("list", help="list the admin's PATs", parents=[data_dir])
    revoke = token_actions.add_parser("revoke", help="revoke a PAT", parents=[data_dir])
    revoke.add_argument("pat_id")

    policy = commands.add_parser("policy", help="write a client attestation policy")
    policy_actions = policy.add_subparsers(dest="action", required=True)
    from_measurement = policy_actions.add_parser("from-measurement", help="pin a launch measurement (hex)")
    from_measurement.add_argument("measurement", help="48-byte launch measurement, 96 hex digits")
    from_measurement.add_argument("--product", action="append", choices=["Milan", "Genoa", "Turin"])
    from_measurement.add_argument("--vmpl", action="append", type=int, help="allowed VMPL (default 0)")
    from_measurement.add_argument("--host-data", help="required HOST_DATA, 64 hex digits")
    from_report = policy_actions.add_parser("from-report", help="pin what a trusted CVM's report shows")
    from_report.add_argument("report", help="raw 1184-byte report, or the agent's JSON document")
    from_report.add_argument("--product", choices=["Milan", "Genoa", "Turin"], help="for v2 reports")
    for sub in (from_measurement, from_report):
        sub.add_argument("--simulated-root", metavar="SHA256", help="trust this SIMULATED root, not AMD's")
        sub.add_argument(
            "--allow-debug", action="store_true", help="accept debug guests (never in production)"
        )
        sub.add_argument("-o", "--output", type=Path, help="write here (default: print)")
    return parser


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


async def _admin(data_dir: Path, action: Callable[[Any, Any], Awaitable[object]]) -> object:
    """Run ``action(service, admin_principal)`` against the stack's auth database."""
    from cube_stack.auth.service import AuthService
    from cube_stack.auth.settings import AuthSettings

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
    return asyncio.run(_admin(data_dir, handlers[(args.command, args.action)]))


def write_policy(args: argparse.Namespace) -> int:
    """Build a policy from a measurement or a report; print it or write it to --output."""
    from cube_lsp.attestation import Product, parse_report
    from cube_lsp.cli_attest import load_evidence
    from cube_stack.policy_writer import policy_from_measurement, policy_from_report

    if args.action == "from-measurement":
        policy = policy_from_measurement(
            args.measurement,
            products=tuple(args.product or ("Milan", "Genoa", "Turin")),
            vmpls=tuple(args.vmpl or (0,)),
            host_data_hex=args.host_data,
            simulated_root=args.simulated_root,
            allow_debug=args.allow_debug,
        )
    else:
        evidence = load_evidence(args.report)
        report = parse_report(evidence.report, product=Product(args.product) if args.product else None)
        policy = policy_from_report(report, simulated_root=args.simulated_root, allow_debug=args.allow_debug)
    text = json.dumps(policy, indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"cube-stack: policy written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cube-stack`."""
    import logging

    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command != "policy":
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
