"""Builds the VS Code extension and runs its unit tests (mocha, plain node) from the README's pytest command.

The steps are those of editor-extension/package.json: `npm ci`, `npm run check` (strict tsc),
`npm run build` (esbuild bundle), `npm test` and `npm run package` (a .vsix). npm missing is a
failure, not a skip: Node 20 and npm are part of the test environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[2] / "editor-extension"
STEPS = [
    ("ci", "--no-audit", "--no-fund", "--loglevel=error"),
    ("run", "check"),
    ("run", "build"),
    ("test",),
    ("run", "package"),
]
TIMEOUT_S = {"ci": 300}
DEFAULT_TIMEOUT_S = 120

pytestmark = pytest.mark.slow


def _npm(*args: str) -> subprocess.CompletedProcess[str]:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: the VS Code extension cannot be built (install Node 20 and npm)")
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "npm_config_update_notifier": "false"}
    return subprocess.run(
        [npm, *args],
        cwd=EXTENSION,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S.get(args[0], DEFAULT_TIMEOUT_S),
        check=False,
    )


def test_extension_builds_type_checks_passes_its_unit_tests_and_packages() -> None:
    vsix = EXTENSION / "cube-lsp.vsix"
    vsix.unlink(missing_ok=True)
    for step in STEPS:
        done = _npm(*step)
        output = (done.stdout + done.stderr)[-4000:]
        assert done.returncode == 0, f"npm {' '.join(step)} failed ({done.returncode}):\n{output}"
    assert (EXTENSION / "dist" / "extension.js").is_file()
    assert vsix.is_file(), "npm run package made no .vsix"
