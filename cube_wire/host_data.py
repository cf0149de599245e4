"""HOST_DATA: the SHA-256 of the deployment settings a client must be able to check.

The host sets HOST_DATA (32 bytes) at launch (QEMU ``sev-snp-guest,host-data=``); the CVM cannot
change it and it appears in every attestation report, so a policy that pins it tells "our CVM, with
this auth endpoint, this domain and this log level" apart from another CVM running the same image.
Operators compute it with ``cube-stack policy measure --host-data-from FILE``; a client recomputes it
from the same settings with :func:`host_data_digest` (or any language: the bytes are spelled out below).

The settings file is JSON with these keys (the first four required)::

    {"version": 1, "auth_endpoint": "https://auth.example.com", "domain": "<domain id>", "log_level": "info",
     "auth_grpc": "auth.example.com:8181", "auth_grpc_ca": "<PEM text>"}

``auth_grpc`` is where the proxy asks ``auth.v1`` about tokens (default: the auth endpoint's host, port
8181) and ``auth_grpc_ca`` the PEM certificate(s) that verify that service's TLS (absent: plain gRPC).
Both are optional and, when present, part of the digest: a host cannot point the CVM at another auth
service, or at a man in the middle, without changing HOST_DATA.

HOST_DATA = SHA-256 of the canonical form: the same object, keys sorted, no whitespace
(``separators=(",", ":")``), non-ASCII kept as UTF-8. Formatting of the file therefore does not
matter, and an unknown or missing key is an error, never silently left out of the digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cube_wire.errors import CubeError

HOST_DATA_VERSION = 1
LOG_LEVELS = ("debug", "info", "warning", "error")


class HostDataError(CubeError):
    """The deployment settings behind HOST_DATA are malformed; ``field`` names the key."""

    code = "host_data.invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"host data '{field}': {message}")
        self.field = field


@dataclass(frozen=True)
class DeploymentSettings:
    """The settings HOST_DATA vouches for."""

    auth_endpoint: str  # the auth service the proxy asks (https://... or http://... on loopback)
    domain: str  # the domain id the proxy serves
    log_level: str  # one of LOG_LEVELS: "debug" would log prompts, so a client may want to refuse it
    auth_grpc: str | None = None  # host:port of auth.v1; None: the auth endpoint's host, port 8181
    auth_grpc_ca: str | None = None  # PEM CA for auth.v1's TLS; None: plain gRPC

    def canonical_bytes(self) -> bytes:
        """Return the exact bytes whose SHA-256 is HOST_DATA."""
        fields = {
            "auth_endpoint": self.auth_endpoint,
            "domain": self.domain,
            "log_level": self.log_level,
            "version": HOST_DATA_VERSION,
        }
        if self.auth_grpc is not None:
            fields["auth_grpc"] = self.auth_grpc
        if self.auth_grpc_ca is not None:
            fields["auth_grpc_ca"] = self.auth_grpc_ca
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_deployment_settings(data: object) -> DeploymentSettings:
    """Validate the settings object (the JSON file's content); raise ``HostDataError`` naming the key."""
    if not isinstance(data, Mapping):
        raise HostDataError("(top level)", f"found {type(data).__name__}, wanted a JSON object")
    wanted = {"version", "auth_endpoint", "domain", "log_level"}
    optional = {"auth_grpc", "auth_grpc_ca"}
    unknown = sorted(set(data) - wanted - optional)
    if unknown:
        raise HostDataError(unknown[0], f"unknown key; wanted only {sorted(wanted | optional)}")
    for key in sorted(wanted):
        if key not in data:
            raise HostDataError(key, "missing")
    if data["version"] != HOST_DATA_VERSION or isinstance(data["version"], bool):
        raise HostDataError("version", f"found {data['version']!r}, wanted {HOST_DATA_VERSION}")
    for key in ("auth_endpoint", "domain", "log_level"):
        if not isinstance(data[key], str) or not data[key]:
            raise HostDataError(key, f"found {data[key]!r}, wanted a non-empty string")
    url = urlsplit(data["auth_endpoint"])
    if url.scheme not in ("https", "http") or not url.hostname:
        raise HostDataError("auth_endpoint", f"found {data['auth_endpoint']!r}, wanted an http(s) URL")
    if data["log_level"] not in LOG_LEVELS:
        raise HostDataError("log_level", f"found {data['log_level']!r}, wanted one of {list(LOG_LEVELS)}")
    return DeploymentSettings(
        data["auth_endpoint"],
        data["domain"],
        data["log_level"],
        _auth_grpc(data.get("auth_grpc")),
        _auth_grpc_ca(data.get("auth_grpc_ca")),
    )


def _auth_grpc(value: object) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise HostDataError("auth_grpc", f"found {value!r}, wanted host:port")
    return str(value)


def _auth_grpc_ca(value: object) -> str | None:
    """Accept one or more PEM certificates that parse; anything else could not verify a server."""
    if value is None:
        return None
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise HostDataError("auth_grpc_ca", "wanted PEM certificate text")
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(value.encode())
    except ValueError as exc:
        raise HostDataError("auth_grpc_ca", f"not a PEM certificate ({exc})") from None
    return value


def host_data_digest(settings: DeploymentSettings) -> bytes:
    """Return HOST_DATA (32 bytes) for ``settings``."""
    return hashlib.sha256(settings.canonical_bytes()).digest()


def host_data_from_file(path: Path) -> bytes:
    """Return HOST_DATA for the settings JSON file at ``path``."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise HostDataError(str(path), f"cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HostDataError(str(path), f"not JSON ({exc})") from None
    return host_data_digest(parse_deployment_settings(data))
