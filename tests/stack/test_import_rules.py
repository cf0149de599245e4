"""The server side's import rules, read from the source with ``ast`` (every import, also inside functions).

* ``cube_stack`` imports nothing from the client package ``cube_lsp`` (pygls, tree-sitter): what both
  sides need is in ``cube_wire``;
* ``cube_wire`` imports neither side, and no third-party package but ``cryptography``;
* the server packages import in one direction: ``agent``, ``auth`` and ``runtime`` never import
  ``cube_stack.proxy`` (the proxy maps their errors to HTTP, not the other way round).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "server-stack" / "cube_stack"
WIRE = ROOT / "cube_wire"


def imports(package_dir: Path, package: str) -> list[tuple[str, str]]:
    """Return (module file, imported module) for every import under ``package_dir``."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if "_generated" in path.parts:
            continue  # protoc output, made at first use
        relative = path.relative_to(package_dir.parent).with_suffix("")
        module = ".".join(relative.parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found += [(module, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = module.split(".")[: -node.level]
                    found.append((module, ".".join([*base, node.module or ""]).rstrip(".")))
                elif node.module:
                    found.append((module, node.module))
    assert found, f"no imports found under {package_dir}: wrong path?"
    return found


def test_the_server_side_imports_nothing_from_the_client() -> None:
    offending = [
        (m, i) for m, i in imports(STACK, "cube_stack") if i == "cube_lsp" or i.startswith("cube_lsp.")
    ]
    assert offending == []


@pytest.mark.parametrize("layer", ["agent", "auth", "runtime"])
def test_server_layers_never_import_the_proxy(layer: str) -> None:
    offending = [
        (m, i)
        for m, i in imports(STACK / layer, f"cube_stack.{layer}")
        if i == "cube_stack.proxy" or i.startswith("cube_stack.proxy.")
    ]
    assert offending == []


def test_the_wire_package_stands_alone() -> None:
    allowed = set(sys.stdlib_module_names) | {"cube_wire", "cryptography"}
    offending = [(m, i) for m, i in imports(WIRE, "cube_wire") if i.split(".")[0] not in allowed]
    assert offending == []


def test_the_rules_would_see_a_violation(tmp_path: Path) -> None:
    """The walker finds imports inside functions and relative ones, so a rule cannot pass by blindness."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from cube_lsp.server import main\n\nfrom . import b\n")
    found = imports(package, "pkg")
    assert ("pkg.a", "cube_lsp.server") in found and ("pkg.a", "pkg") in found


def test_the_in_cvm_services_load_without_the_auth_service_or_the_client() -> None:
    """The CVM image carries the proxy, agent and runtime only: starting them must not import SQLAlchemy,
    argon2, torch or the client (an import of those would fail at boot inside the image). grpcio's own
    optional ``import grpc_tools`` is left out: it tolerates the package's absence."""
    import subprocess

    code = (
        "import sys, cube_stack.proxy.standalone, cube_stack.runtime.standalone, cube_stack.agent\n"
        "banned = ('sqlalchemy', 'argon2', 'asyncpg', 'aiosqlite', 'torch', 'sentence_transformers', 'pygls',"
        " 'cube_lsp')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(banned)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
