"""Shared fixtures: the SCRIPTED BACKEND (tests/support) is available to every test package."""

from tests.support.fixtures import (  # noqa: F401 - imported fixtures are used by name
    scripted_backend,
    scripted_backend_mtls,
    scripted_backend_tls,
    tls_files,
)
