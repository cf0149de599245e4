"""Shared helpers of the search benches: the standard library as a corpus, a real stack, tables.

- :func:`stdlib_units` lists the public top-level modules and packages of the interpreter's standard
  library (tests, IDLE, lib2to3, demos, installers and codec tables left out), in sorted order.
- :func:`strip_docstrings` removes every docstring from a Python source by line arithmetic on the AST
  (comments and the rest of the code stay as written), so the queries cannot be found verbatim.
- :func:`docstring_queries` turns the documented public functions and methods of a source into
  (query = first sentence of the docstring, target = that function in the stripped copy).
- :func:`running_stack` starts a real ``cube-stack up`` on free ports and yields its client settings.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests.support is not installed: the benches run from a checkout
    sys.path.insert(0, str(REPO))

from cube_lsp.settings import Settings, load_settings_file  # noqa: E402
from tests.support.stack_process import StackProcess, cube_stack_up  # noqa: E402

#: Top-level names of the standard library that are not public library code.
EXCLUDED_UNITS = frozenset(
    {
        "test",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "pydoc_data",
        "encodings",  # generated codec tables
        "this",
        "antigravity",
    }
)
#: Directory names skipped inside a package.
EXCLUDED_DIRS = frozenset({"test", "tests", "__pycache__", "idle_test"})
MIN_QUERY_WORDS = 4
MAX_QUERY_CHARS = 300
#: First sentences that say nothing about what the function does (checked on the lower-cased start).
GENERIC_STARTS = (
    "return a string representation",
    "return repr",
    "return str(",
    "implement ",
    "initialize self",
    "see ",
    "same as ",
    "alias for",
    "deprecated",
    "for internal use",
    "internal ",
    "helper ",
    "override ",
    "this method is ",
    "this function is ",
    "not implemented",
    "abstract method",
    "todo",
)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@dataclass(frozen=True)
class Target:
    """One query and the function it must find: path relative to the copy, ``def`` line in the copy."""

    query: str
    path: str
    qualname: str
    def_line: int


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages (other work on the machine inflates wall times)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def stdlib_dir() -> Path:
    """Return the standard library of the interpreter running the bench."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_units(stdlib: Path) -> list[tuple[str, list[Path]]]:
    """Return the public top-level modules and packages: (name, their .py files), sorted by name."""
    units: list[tuple[str, list[Path]]] = []
    for entry in sorted(stdlib.iterdir()):
        name = entry.name.removesuffix(".py")
        if name.startswith(("_", ".")) or name in EXCLUDED_UNITS or "-" in name:
            continue
        if entry.is_file() and entry.suffix == ".py":
            units.append((name, [entry]))
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            files = [
                path
                for path in sorted(entry.rglob("*.py"))
                if not EXCLUDED_DIRS & set(path.relative_to(entry).parts[:-1])
                and not any(part.startswith("_") for part in path.relative_to(entry).parts[:-1])
            ]
            units.append((name, files))
    return units


def _docstring_nodes(tree: ast.Module) -> list[tuple[ast.Expr, list[ast.stmt]]]:
    """Return every docstring expression with the body it opens (module, classes, functions)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.append((first, body))
    return found


def strip_docstrings(source: str) -> str | None:
    """Return ``source`` without its docstrings, or None when it does not parse.

    A docstring alone on its lines is deleted with its lines (``pass`` takes its place when it was the
    whole body); one sharing a line with other code is replaced by ``pass`` in place. Everything else,
    comments included, is kept as written. The result is re-parsed to make sure it is still Python.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    lines = source.splitlines(keepends=True)
    # Edit from the bottom up so earlier positions stay valid.
    for expr, body in sorted(_docstring_nodes(tree), key=lambda item: -item[0].lineno):
        first, last = expr.lineno - 1, (expr.end_lineno or expr.lineno) - 1
        start_col, end_col = expr.col_offset, expr.end_col_offset or 0
        # Column offsets are in UTF-8 bytes.
        head = lines[first].encode("utf-8")[:start_col].decode("utf-8", "replace")
        tail = lines[last].encode("utf-8")[end_col:].decode("utf-8", "replace")
        alone = not head.strip() and tail.strip() in ("", ";")
        if alone:
            replacement = [f"{head}pass\n"] if len(body) == 1 else []
            lines[first : last + 1] = replacement
        else:
            lines[first : last + 1] = [f"{head}pass{tail}"]
    stripped = "".join(lines)
    try:
        ast.parse(stripped)
    except (SyntaxError, ValueError):
        return None
    return stripped


def first_sentence(docstring: str) -> str:
    """Return the first sentence of a docstring's first paragraph, on one line."""
    paragraph = inspect.cleandoc(docstring).split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    match = _SENTENCE_END.search(text)
    return text[: match.end()] if match else text


def is_useful_query(sentence: str) -> bool:
    """Tell whether a first sentence is long and specific enough to be a query."""
    lowered = sentence.lower()
    return (
        len(sentence.split()) >= MIN_QUERY_WORDS
        and len(sentence) <= MAX_QUERY_CHARS
        and not lowered.startswith(GENERIC_STARTS)
    )


def _public_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Yield (qualified name, node) for public module functions and methods of public classes."""

    def visit(
        body: Sequence[ast.stmt], prefix: str
    ) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                yield from visit(node.body, f"{prefix}{node.name}.")

    yield from visit(tree.body, "")


def docstring_queries(original: str, stripped: str, rel: str) -> list[Target]:
    """Return the queries of one file: documented public functions found again in the stripped copy.

    A qualified name defined twice in the file (a property's setter, a conditional definition) is
    ambiguous and left out.
    """
    copy_lines: dict[str, list[int]] = {}
    for qualname, node in _public_functions(ast.parse(stripped)):
        copy_lines.setdefault(qualname, []).append(node.lineno)
    targets = []
    for qualname, node in _public_functions(ast.parse(original)):
        docstring = ast.get_docstring(node, clean=False)
        lines = copy_lines.get(qualname, [])
        if not docstring or len(lines) != 1:
            continue
        sentence = first_sentence(docstring)
        if is_useful_query(sentence):
            targets.append(Target(sentence, rel, qualname, lines[0]))
    return targets


def drop_ambiguous(targets: Sequence[Target]) -> list[Target]:
    """Leave out queries whose sentence documents more than one function (no single right answer)."""
    counts: dict[str, int] = {}
    for target in targets:
        key = target.query.lower()
        counts[key] = counts.get(key, 0) + 1
    return [target for target in targets if counts[target.query.lower()] == 1]


@contextlib.contextmanager
def running_stack() -> Iterator[tuple[StackProcess, Settings, Path]]:
    """Start ``cube-stack up`` in a fresh temporary data dir; yield it, its settings and client.json."""
    with tempfile.TemporaryDirectory(prefix="cube-bench-stack-") as tmp:
        data_dir = Path(tmp) / "data"
        with cube_stack_up(data_dir) as stack:
            settings_path = data_dir / "client.json"
            settings, errors = load_settings_file(settings_path)
            if errors:
                raise RuntimeError(f"client.json of the stack: {errors}")
            if not settings.models.embedding:
                raise RuntimeError("client.json of the stack names no embedding model")
            yield stack, settings, settings_path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a plain-text table, columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    out.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return (
            f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"
        )
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
