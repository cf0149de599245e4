"""Pytest fixtures serving a SCRIPTED BACKEND (see :mod:`.scripted_backend`); star-import them in conftest.

One server per kind runs for the whole pytest session (starting and stopping uvicorn costs about
0.1 s); each test gets it through a function-scoped fixture that calls ``reset()`` first, so the
script, the recorded requests and the counters are the test's own::

    scripted_backend        plain HTTP
    scripted_backend_tls    HTTPS with a certificate from a test-time trustme CA (``.tls.ca_bundle``)
    scripted_backend_mtls   HTTPS that also requires a client certificate (``.tls.client_cert/key``)
    tls_files               the trustme CA and PEM files both TLS servers use

The ``*_server`` fixtures are the session-scoped servers behind them; a conftest must import them
too (``from tests.support.fixtures import *`` does). All servers want the bearer token
``SCRIPTED_TOKEN``; ``backend.settings_json()`` returns matching cube-lsp settings.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from .scripted_backend import ScriptedBackend, TlsFiles, make_tls_files

__all__ = [
    "SCRIPTED_TOKEN",
    "scripted_backend",
    "scripted_backend_mtls",
    "scripted_backend_mtls_server",
    "scripted_backend_server",
    "scripted_backend_tls",
    "scripted_backend_tls_server",
    "tls_files",
]

SCRIPTED_TOKEN = "scripted-test-token-7f3a9c"  # long enough to spot in a log line


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Return a trustme CA with server and client certificates written to a temporary directory."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def scripted_backend_server() -> Iterator[ScriptedBackend]:
    """Yield the session's plain-HTTP scripted backend (use ``scripted_backend`` in tests)."""
    with ScriptedBackend(token=SCRIPTED_TOKEN) as backend:
        yield backend


@pytest.fixture(scope="session")
def scripted_backend_tls_server(tls_files: TlsFiles) -> Iterator[ScriptedBackend]:
    """Yield the session's HTTPS scripted backend (use ``scripted_backend_tls`` in tests)."""
    with ScriptedBackend(token=SCRIPTED_TOKEN, tls=tls_files) as backend:
        yield backend


@pytest.fixture(scope="session")
def scripted_backend_mtls_server(tls_files: TlsFiles) -> Iterator[ScriptedBackend]:
    """Yield the session's mutual-TLS scripted backend (use ``scripted_backend_mtls`` in tests)."""
    # TLS 1.2 makes a refused client certificate fail the handshake instead of racing a reset.
    mtls = ScriptedBackend(
        token=SCRIPTED_TOKEN, tls=tls_files, require_client_cert=True, max_tls_version=ssl.TLSVersion.TLSv1_2
    )
    with mtls as backend:
        yield backend


@pytest.fixture
def scripted_backend(scripted_backend_server: ScriptedBackend) -> Iterator[ScriptedBackend]:
    """Yield the plain-HTTP scripted backend with a fresh session."""
    yield from _fresh(scripted_backend_server)


@pytest.fixture
def scripted_backend_tls(scripted_backend_tls_server: ScriptedBackend) -> Iterator[ScriptedBackend]:
    """Yield the HTTPS scripted backend (CA: ``backend.tls.ca_bundle``) with a fresh session."""
    yield from _fresh(scripted_backend_tls_server)


@pytest.fixture
def scripted_backend_mtls(scripted_backend_mtls_server: ScriptedBackend) -> Iterator[ScriptedBackend]:
    """Yield the HTTPS scripted backend that requires a client certificate, with a fresh session."""
    yield from _fresh(scripted_backend_mtls_server)


def _fresh(backend: ScriptedBackend) -> Iterator[ScriptedBackend]:
    backend.reset()
    yield backend
    backend.reset()  # end whatever the test left hanging
