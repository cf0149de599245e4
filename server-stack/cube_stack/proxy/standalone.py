"""The proxy as a service of its own, as it runs inside the CVM: ``python -m cube_stack.proxy``.

``cube-stack up`` wires everything into one process for a laptop; a deployment runs the proxy next to
the model runtime inside the confidential VM and the auth service (or SuperMQ) outside it. This module
builds that proxy from ``CUBE_PROXY_*`` settings: the TLS key (made here, in memory, never written), the
attestation agent on the SEV-SNP interface the settings name, and the auth client (HTTP, or
``auth.v1`` gRPC with the JWKS still over HTTP).

It fails closed at start: before listening it asks the agent for one report bound to the key it will
serve with, so a proxy that cannot attest (no SEV-SNP interface, no permission on the device, firmware
errors) exits with the reason instead of serving a route every client will refuse. ``attestation =
none`` is the explicit way to run without an agent (the route answers 501; clients that require
attestation send nothing).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from cube_stack.agent import Agent, SimulatedOptions, SimulatedProvider, select_provider
from cube_stack.auth.grpc.client import GrpcAuthClient
from cube_stack.log_level import configure_logging
from cube_stack.private_files import write_private
from cube_stack.proxy.app import create_proxy_app
from cube_stack.proxy.authclient import AuthClient, GrpcProxyAuthClient, HttpAuthClient, grpc_client_tls
from cube_stack.proxy.server import ProxyServer
from cube_stack.proxy.settings import ProxySettings
from cube_stack.tls_identity import TlsIdentity
from cube_wire.errors import CubeError
from cube_wire.report import parse_report

log = logging.getLogger(__name__)


class HostDataMismatchError(CubeError):
    """The attestation report's HOST_DATA is not the digest of the deployment settings the proxy got."""

    code = "proxy.host_data_mismatch"


def build_auth(settings: ProxySettings) -> AuthClient:
    """Return the auth client: ``auth.v1`` at ``auth_grpc`` (TLS with ``auth_grpc_ca``), JWKS over HTTP."""
    tls = grpc_client_tls(
        settings.auth_grpc_ca,
        settings.auth_grpc_client_cert,
        settings.auth_grpc_client_key,
        settings.auth_grpc_server_name,
    )
    return GrpcProxyAuthClient(
        GrpcAuthClient(settings.auth_grpc, tls=tls, timeout=settings.auth_timeout),
        jwks=HttpAuthClient(settings.auth_url, timeout=settings.auth_timeout),
    )


async def build_agent(settings: ProxySettings, identity: TlsIdentity) -> Agent | None:
    """Return the attestation agent, after one report proved that it works; None for mode ``none``."""
    if settings.attestation == "none":
        log.warning(
            "proxy.attestation_off no attestation agent: POST /{domain}/attestation answers 501 and "
            "clients that require attestation will send nothing",
            extra={"event": "proxy.attestation"},
        )
        return None
    simulated = None
    if settings.attestation == "simulated":
        state = Path(settings.attestation_state_dir) if settings.attestation_state_dir else None
        host_data = (
            bytes.fromhex(settings.attestation_host_data) if settings.attestation_host_data else bytes(32)
        )
        simulated = SimulatedOptions(data_dir=state, host_data=host_data)
    provider = select_provider(
        settings.attestation,
        tsm_path=settings.attestation_tsm_path,
        device=settings.attestation_device,
        simulated=simulated,
    )
    agent = Agent(provider, identity.spki_der)
    document = await agent.attest(secrets.token_bytes(32), identity.spki_der)  # the self-test: fail now
    if settings.attestation_host_data:
        check_host_data(base64.b64decode(document["report"]), bytes.fromhex(settings.attestation_host_data))
    return agent


def check_host_data(report: bytes, expected: bytes) -> None:
    """Refuse to serve when the launch's HOST_DATA is not the digest of the settings this proxy was given.

    HOST_DATA is set by the host at launch and cannot be changed by the guest; the settings reach the
    guest through the host too. If the two disagree, the host handed the guest other settings than the
    ones clients will check, and serving would put their code behind an auth endpoint nobody vouched for.
    """
    actual = parse_report(report).host_data
    if not hmac.compare_digest(actual, expected):
        raise HostDataMismatchError(
            f"the launch's HOST_DATA is {actual.hex()}, but the settings given to this proxy hash to "
            f"{expected.hex()}: relaunch with host-data set from the same settings file "
            "(cube-stack policy measure --host-data-from)"
        )


def write_simulated_policy(agent: Agent | None, path: Path) -> bool:
    """Write a client policy naming the agent's SIMULATED root to ``path``; False for a real agent.

    A policy for real hardware pins a launch measurement (``cube-stack policy from-measurement``); the
    SIMULATED root exists only on this machine, so only the proxy can say which one to trust.
    """
    provider = agent.provider if agent is not None else None
    if not isinstance(provider, SimulatedProvider):
        return False
    write_private(path, json.dumps(provider.client_policy(), indent=2) + "\n")
    return True


async def run_proxy(settings: ProxySettings) -> None:
    """Build key, agent and auth client, then serve until SIGINT/SIGTERM (uvicorn's handlers).

    The ``proxy.listening`` log line names the URL (the port, when ``port`` is 0) and the SPKI.
    """
    identity = TlsIdentity.generate(settings.tls_hostnames, days=settings.tls_cert_days)
    agent = await build_agent(settings, identity)
    if settings.attestation_state_dir:
        policy = Path(settings.attestation_state_dir) / "client-policy.json"
        if write_simulated_policy(agent, policy):
            log.warning("proxy.simulated_policy a client policy for this SIMULATED root: %s", policy)
    auth = build_auth(settings)
    try:
        server = ProxyServer(create_proxy_app(settings, auth=auth, agent=agent, identity=identity), settings)
        await server.serve()
    finally:
        await auth.aclose()


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the proxy from ``CUBE_PROXY_*`` variables; return the process exit status."""
    env = os.environ if environ is None else environ
    try:
        configure_logging(env)
        settings = ProxySettings.from_env(env)
    except CubeError as exc:
        print(f"cube proxy: {exc.message}", file=sys.stderr)
        return 2
    # SIGTERM (how a service manager stops us) as SIGINT: uvicorn drains in-flight requests, then
    # re-raises the signal, which lands here as KeyboardInterrupt and a clean exit instead of death by
    # signal; before uvicorn listens it simply stops the start-up.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(run_proxy(settings))
    except CubeError as exc:
        print(f"cube proxy: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
