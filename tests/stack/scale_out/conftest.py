"""Fixtures for the scale-out tests: the kits of the standalone and proxy tests, one runtime per session.

The two kit directories go on ``sys.path`` (as their own conftests arrange for their tests), so
``standalone_kit`` (auth and generic processes) and ``process_kit`` (Redis, free ports) are shared, not
copied. The built-in runtime (real llama.cpp, the RANDOM-WEIGHTS demo model, MiniLM embeddings) is
stateless towards the proxies and the slowest to start, so one serves the whole session; the SIMULATED
agent's root (RSA-4096) is made once and shared by every proxy of the session, so one client policy
fits them all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for kit in (HERE.parent / "auth_standalone", HERE.parent / "proxy"):
    if str(kit) not in sys.path:
        sys.path.insert(0, str(kit))

from scale_out_kit import RuntimeProcess  # noqa: E402


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """The built-in runtime on a loopback port, serving ``cube-demo:random`` and ``all-minilm:l6-v2``."""
    process = RuntimeProcess.serve(tmp_path_factory.mktemp("demo"))
    try:
        yield process
    finally:
        assert process.stop() == 0


@pytest.fixture(scope="session")
def agent_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SIMULATED agent's state directory, shared by every proxy of the session."""
    return tmp_path_factory.mktemp("agent")
