"""Fixtures of the extension's tests: one build of the .vsix for every real-VS-Code test."""

from __future__ import annotations

import time

import pytest

from tests.extension.vscode_harness import Build, build_vsix, setup_tools


@pytest.fixture(scope="session")
def vscode_build() -> Build:
    """The setup script's tools and the packaged extension (skips when Chromium cannot be installed)."""
    clock = time.monotonic()
    tools = setup_tools()
    timings = {"setup script": time.monotonic() - clock}
    clock = time.monotonic()
    vsix = build_vsix()
    timings["npm ci + package"] = time.monotonic() - clock
    return Build(tools, vsix, timings)
