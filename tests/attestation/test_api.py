"""The public surface of cube_lsp.attestation, and what it must not import."""

from __future__ import annotations

import subprocess
import sys

import cube_lsp.attestation as attestation
from cube_wire.errors import CubeError


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in dir(attestation) if not n.startswith("_")}
    modules = {"binding", "errors", "policy", "report", "verify"}
    assert set(attestation.__all__) == public - modules
    assert sorted(attestation.__all__, key=str) == sorted(set(attestation.__all__), key=str)


def test_errors_are_cube_errors_with_attestation_codes() -> None:
    for name in attestation.__all__:
        obj = getattr(attestation, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, CubeError) and obj.code.startswith("attestation."), name


def test_the_package_imports_no_lsp_or_http_library() -> None:
    code = (
        "import sys, cube_lsp.attestation; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol', 'httpx', 'httpcore')]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_pinned_roots_ship_as_package_data() -> None:
    from importlib import resources

    roots = resources.files("cube_lsp.attestation") / "roots"
    names = sorted(p.name for p in roots.iterdir() if p.name.endswith(".pem"))
    assert names == sorted(
        f"{p}_{r}.pem" for p in ("milan", "genoa", "turin") for r in ("ark", "ask", "asvk")
    )
