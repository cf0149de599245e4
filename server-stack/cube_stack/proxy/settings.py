"""Settings of the Cube-compatible proxy: one frozen dataclass, validated on construction, readable from env.

Every field has a type, a default and a one-line doc; :meth:`ProxySettings.from_env` reads
``CUBE_PROXY_<FIELD>`` variables (``CUBE_PROXY_IDLE_TIMEOUT=30``) and fails naming the variable.
Durations are seconds (floats). There is deliberately no total-response timeout: a live stream runs as
long as chunks keep coming (Cube's 10 s server write timeout cut long generations off).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cube_stack.proxy.errors import ProxySettingsError
from cube_stack.serving import ConnectionLimits, ConnectionLimitsError
from cube_stack.unix_socket import unix_socket_path

ENV_PREFIX = "CUBE_PROXY_"
ATTESTATION_MODES = ("auto", "configfs-tsm", "sev-guest", "simulated", "none")


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxySettingsError(name, f"expected an http:// or https:// URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ProxySettingsError(name, "the URL must not have a query string or fragment")


def _check_runtime_url(name: str, value: str) -> None:
    """Accept an http(s) URL or ``unix:/absolute/path.sock`` (the runtime on a Unix socket)."""
    try:
        if unix_socket_path(value) is not None:
            return
    except ValueError as exc:
        raise ProxySettingsError(name, str(exc)) from None
    _check_url(name, value)


@dataclass(frozen=True)
class ProxySettings:
    """Where the proxy listens, whom it asks about tokens, where it forwards, and its limits."""

    host: str = "127.0.0.1"  # listen address; inside a CVM usually 0.0.0.0
    port: int = 8900  # listen port (Cube's default); 0 picks a free one
    tls: bool = True  # serve HTTPS with a key made at start; false: plain HTTP (tests only)
    tls_hostnames: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")  # SANs of the self-signed cert
    tls_cert_days: int = 30  # validity of the self-signed certificate (clients pin the SPKI, not a CA)
    instance_id: str = ""  # reported by /health; unset: a random UUID per start
    auth_url: str = "http://127.0.0.1:8189"  # the auth service (or SuperMQ auth) base URL: JWKS and checks
    auth_timeout: float = 5.0  # seconds for one call to the auth service
    issuer: str = "supermq.auth"  # the only accepted JWT `iss`
    jwks_max_age: float = 300.0  # refetch the JWKS after this many seconds (stale keys stay if it fails)
    jwks_min_refresh_interval: float = 30.0  # least seconds between refetches caused by an unknown kid
    decision_ttl: float = 30.0  # seconds an allow decision is cached (and survives an auth outage)
    decision_cache_size: int = 10_000  # cached decisions kept (least recently used dropped first)
    ollama_url: str = "http://127.0.0.1:11434"  # runtime for /{domain}/api/* (Ollama): http(s) or unix:/path
    openai_url: str = ""  # runtime for /{domain}/v1/* (OpenAI): http(s) or unix:/path; unset: ollama_url
    # host:port of auth.v1.AuthService (ours or SuperMQ's): PATs and permissions; the JWKS stays at auth_url.
    # The default pairs with auth_url's and with `cube-stack auth serve`'s defaults.
    auth_grpc: str = "127.0.0.1:8181"
    auth_grpc_ca: str = ""  # PEM CA file that verifies the auth service's gRPC certificate; unset: plain gRPC
    auth_grpc_client_cert: str = ""  # PEM client certificate for mTLS (needs auth_grpc_ca); unset: none
    auth_grpc_client_key: str = field(default="", repr=False)  # PEM key of auth_grpc_client_cert
    auth_grpc_server_name: str = ""  # name to verify in the gRPC certificate; unset: auth_grpc's host
    # Which SEV-SNP interface answers POST /{domain}/attestation. auto: configfs-tsm, else /dev/sev-guest,
    # and refuse to start when neither works; simulated: dev only, NOT a CVM; none: the route answers 501.
    attestation: str = "auto"
    attestation_tsm_path: str = "/sys/kernel/config/tsm/report"  # the configfs-tsm report directory
    attestation_device: str = "/dev/sev-guest"  # the sev-guest character device
    attestation_state_dir: str = ""  # simulated only: keep its SIMULATED root (and a client policy) here
    # HOST_DATA (64 hex digits) the launch must have set: the SHA-256 of the deployment settings this proxy
    # was given (cube_wire.host_data). With SEV-SNP the start-up report must carry it, or the proxy refuses
    # to serve (the host lied about the settings); a simulated agent puts it in its reports. Unset: no check.
    attestation_host_data: str = ""
    runtime_api_key: str | None = field(default=None, repr=False)  # bearer sent upstream; unset: none
    connect_timeout: float = 5.0  # seconds to connect to the runtime
    first_byte_timeout: float = 300.0  # seconds until the runtime sends response headers (model load)
    idle_timeout: float = 60.0  # most seconds between two chunks of a response; no total limit
    max_upstream_connections: int = 100  # connection pool size towards the runtime
    max_body_bytes: int = 8 * 1024 * 1024  # larger request bodies get 413
    rate_limit_per_minute: float = 600.0  # sustained requests per user per minute; 0 disables the limit
    rate_limit_burst: int = 60  # requests a user may make at once before the sustained rate applies
    rate_limit_users: int = 10_000  # per-user buckets kept (least recently used dropped first)
    # POST /{domain}/attestation needs no token (a client attests before it trusts the proxy with one),
    # so it is limited per client address instead: each report costs the secure processor a request.
    attestation_rate_per_minute: float = 60.0  # sustained attestations per client address; 0 disables
    attestation_burst: int = 10  # attestations one address may ask for at once
    shutdown_grace: float = 30.0  # seconds in-flight requests (streams) get to finish on shutdown
    metrics: bool = True  # serve /metrics without authentication; false: 404
    admin_routes: bool = False  # expose Ollama's pull/create/copy/delete (need `manage`); false: 404
    # Slow and spoofing clients (cube_stack.serving); caps are per process. Address lists are CIDRs.
    handshake_timeout: float = 10.0  # seconds for a TLS handshake (and a PROXY v2 header) to finish
    header_timeout: float = 15.0  # seconds from connection start or a request's first byte to its last header
    max_header_bytes: int = 64 * 1024  # bytes of request line plus headers; more: 431 and close
    body_timeout: float = 60.0  # seconds from a request's last header to the last byte of its body
    max_connections: int = 2000  # client connections open at once; more are reset at accept
    max_connections_per_address: int = 64  # connections open from one client address (IPv6: one /64)
    trusted_forwarders: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For/-Proto is believed; unset: none
    proxy_protocol_from: tuple[str, ...] = ()  # CIDRs of TCP balancers that must send PROXY v2; unset: none
    proxy_protocol_v1: bool = False  # also accept PROXY v1's text line from those balancers; false: v2 only
    # Shared rate limits (cube_stack.proxy.shared_limits): every proxy naming one Redis shares each limit.
    # redis://, rediss:// or unix:// URL (may hold a password: kept out of repr); unset: limits per process
    redis_url: str = field(default="", repr=False)
    redis_address_key: str | None = field(default=None, repr=False)  # HMAC key for client addresses in Redis
    redis_timeout: float = 0.1  # most seconds a request waits on Redis; slower: per-process limits
    redis_lease: int = 8  # most tokens one Redis round trip takes for local spending; 1: exact limits

    def __post_init__(self) -> None:
        _check_url("auth_url", self.auth_url)
        host, sep, port = self.auth_grpc.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ProxySettingsError("auth_grpc", f"expected host:port, got {self.auth_grpc!r}")
        if bool(self.auth_grpc_client_cert) != bool(self.auth_grpc_client_key):
            raise ProxySettingsError("auth_grpc_client_cert", "set it and auth_grpc_client_key together")
        if (self.auth_grpc_client_cert or self.auth_grpc_server_name) and not self.auth_grpc_ca:
            raise ProxySettingsError("auth_grpc_ca", "needed for a client certificate or server name")
        _check_runtime_url("ollama_url", self.ollama_url)
        if self.openai_url:
            _check_runtime_url("openai_url", self.openai_url)
        if not 0 <= self.port <= 65535:
            raise ProxySettingsError("port", f"expected 0..65535, got {self.port}")
        for name in (
            "auth_timeout",
            "jwks_max_age",
            "connect_timeout",
            "first_byte_timeout",
            "idle_timeout",
            "decision_ttl",
            "shutdown_grace",
        ):
            if not getattr(self, name) > 0:
                raise ProxySettingsError(name, "must be a positive number of seconds")
        if self.jwks_min_refresh_interval < 0:
            raise ProxySettingsError("jwks_min_refresh_interval", "must not be negative")
        for name in ("decision_cache_size", "rate_limit_users", "max_upstream_connections", "tls_cert_days"):
            if getattr(self, name) < 1:
                raise ProxySettingsError(name, "must be at least 1")
        if self.max_body_bytes < 1024:
            raise ProxySettingsError("max_body_bytes", "must be at least 1024")
        if self.rate_limit_per_minute < 0:
            raise ProxySettingsError("rate_limit_per_minute", "must not be negative (0 disables)")
        if self.rate_limit_burst < 1:
            raise ProxySettingsError("rate_limit_burst", "must be at least 1")
        if self.attestation_rate_per_minute < 0:
            raise ProxySettingsError("attestation_rate_per_minute", "must not be negative (0 disables)")
        if self.attestation_burst < 1:
            raise ProxySettingsError("attestation_burst", "must be at least 1")
        self._check_redis()
        if self.attestation not in ATTESTATION_MODES:
            raise ProxySettingsError(
                "attestation", f"found {self.attestation!r}, wanted one of {', '.join(ATTESTATION_MODES)}"
            )
        if self.attestation_host_data:
            try:
                ok = len(bytes.fromhex(self.attestation_host_data)) == 32
            except ValueError:
                ok = False
            if not ok:
                raise ProxySettingsError("attestation_host_data", "expected 64 hex digits (32 bytes)")
        if self.attestation_state_dir and self.attestation != "simulated":
            raise ProxySettingsError("attestation_state_dir", "is for attestation 'simulated' only")
        if self.tls and not self.tls_hostnames:
            raise ProxySettingsError("tls_hostnames", "name at least one host for the certificate")
        try:
            self.connection_limits()
        except ConnectionLimitsError as exc:
            raise ProxySettingsError(exc.field, exc.detail) from None

    def _check_redis(self) -> None:
        if not self.redis_url:
            return
        scheme = urlsplit(self.redis_url).scheme  # not the whole URL in messages: it may hold a password
        if scheme not in ("redis", "rediss", "unix"):
            raise ProxySettingsError(
                "redis_url", f"expected a redis://, rediss:// or unix:// URL, got scheme {scheme!r}"
            )
        if len(self.redis_address_key or "") < 32:
            raise ProxySettingsError(
                "redis_address_key",
                "set a secret of at least 32 characters, the same on every proxy (client addresses are "
                "stored in Redis as HMACs under it), e.g. `openssl rand -hex 32`",
            )
        if not self.redis_timeout > 0:
            raise ProxySettingsError("redis_timeout", "must be a positive number of seconds")
        if self.redis_lease < 1:
            raise ProxySettingsError("redis_lease", "must be at least 1")

    def connection_limits(self) -> ConnectionLimits:
        """Return the serving layer's timeouts, caps and trusted addresses."""
        return ConnectionLimits(
            handshake_timeout=self.handshake_timeout,
            header_timeout=self.header_timeout,
            max_header_bytes=self.max_header_bytes,
            body_timeout=self.body_timeout,
            max_connections=self.max_connections,
            max_connections_per_address=self.max_connections_per_address,
            trusted_forwarders=self.trusted_forwarders,
            proxy_protocol_from=self.proxy_protocol_from,
            proxy_protocol_v1=self.proxy_protocol_v1,
        )

    @property
    def effective_openai_url(self) -> str:
        """Return the OpenAI-format runtime URL (Ollama serves /v1 too)."""
        return self.openai_url or self.ollama_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> ProxySettings:
        """Build settings from ``CUBE_PROXY_*`` variables; ``overrides`` win over the environment."""
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in environ:
                values[f.name] = _convert(name, hints[f.name], environ[name])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, kind: object, raw: str) -> object:
    if isinstance(kind, types.UnionType):  # `str | None`: empty means unset
        return raw or None
    if kind is bool:
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ProxySettingsError(name, f"expected true or false, got {raw!r}")
    if kind is int or kind is float:
        try:
            return kind(raw)
        except ValueError:
            raise ProxySettingsError(name, f"expected a number, got {raw!r}") from None
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
