"""Golden cases for the chunker: one realistic file per language and the chunks it must give.

Each ``tests/golden/chunker/<name>/`` holds one source file and ``expected.json`` (symbol, kind, lines and
header of every chunk, in order). ``CUBE_UPDATE_GOLDEN=1`` rewrites the expected files: read every one
before committing it, the golden file is the spec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cube_lsp.languages import language_for_path
from cube_lsp.search.chunker import chunk_source

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "chunker"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())
UPDATE = os.environ.get("CUBE_UPDATE_GOLDEN") == "1"


def _source(case: str) -> Path:
    sources = [path for path in (GOLDEN / case).iterdir() if path.name != "expected.json"]
    if len(sources) != 1:
        raise AssertionError(f"{case}: expected one source file besides expected.json, found {sources}")
    return sources[0]


def _chunks(case: str):
    source = _source(case)
    info = language_for_path(source.name)
    text = source.read_text(encoding="utf-8")
    return text, chunk_source(f"{case}/{source.name}", text, info.name if info else None)


def test_every_language_has_a_case():
    named = {"python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp", "csharp"}
    named |= {"ruby", "php", "kotlin", "markdown"}
    assert named <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    _, chunks = _chunks(case)
    actual = [
        {
            "symbol": chunk.symbol,
            "kind": chunk.kind,
            "start_line": chunk.start_line,
            "end_line": chunk.end_line,
            "header": chunk.header,
        }
        for chunk in chunks
    ]
    expected_path = GOLDEN / case / "expected.json"
    if UPDATE:
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert actual == json.loads(expected_path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES)
def test_golden_covers_every_line(case: str) -> None:
    text, chunks = _chunks(case)
    lines = text.split("\n")
    covered = {line for chunk in chunks for line in range(chunk.start_line, chunk.end_line + 1)}
    missing = [number for number, line in enumerate(lines, 1) if line.strip() and number not in covered]
    assert missing == []


@pytest.mark.parametrize("case", CASES)
def test_golden_text_is_the_files_lines(case: str) -> None:
    text, chunks = _chunks(case)
    lines = text.split("\n")
    for chunk in chunks:
        exact = "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        if chunk.text != exact:
            # Only the outline of a class (or a named module: Ruby, Rust) differs: its members' bodies
            # are collapsed. Merged runs of top-level code (kind "module", no symbol) never are.
            assert chunk.kind not in ("function", "method", "lines"), chunk
            assert chunk.symbol is not None, chunk
            assert "..." in chunk.text
