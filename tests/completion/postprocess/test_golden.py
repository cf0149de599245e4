"""Run every golden case in tests/golden/postprocess through the whole pipeline."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.completion.postprocess import PostprocessConfig, postprocess
from cube_lsp.completion.types import Candidate

from ._markers import MarkerError, parse_marked

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "postprocess"
CASES = sorted(GOLDEN.rglob("*.toml"))
LANGUAGES = {"python", "typescript", "javascript", "go", "rust", "java", "c"}


def _config(overrides: dict[str, Any]) -> PostprocessConfig:
    fields = {field.name for field in dataclasses.fields(PostprocessConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in overrides.items()}
    return dataclasses.replace(PostprocessConfig(), **values)


@pytest.mark.parametrize("path", CASES, ids=[str(path.relative_to(GOLDEN)) for path in CASES])
def test_golden_case(path: Path) -> None:
    case = tomllib.loads(path.read_text(encoding="utf-8"))
    assert isinstance(case.get("description"), str) and case["description"]
    config = _config(case.get("config", {}))
    context = case["context"]
    expected = case["expected"]
    marked = parse_marked(context["text"], context["language"], context.get("multiline"))
    result = postprocess(Candidate(marked.completion), marked.context, config)

    outcomes = [key for key in ("text", "discard", "unchanged") if key in expected]
    assert len(outcomes) == 1, f"[expected] needs exactly one of text/discard/unchanged, got {outcomes}"
    if expected.get("discard"):
        assert result is None, case["description"]
        return
    assert result is not None, f"dropped: {case['description']}"
    if expected.get("unchanged"):
        assert result == Candidate(marked.completion), case["description"]
        return
    replaced = expected.get("replace_suffix_chars", marked.replaced or 0)
    if marked.replaced is not None:
        assert replaced == marked.replaced, "replace_suffix_chars disagrees with the ╣ marker"
    assert result == Candidate(expected["text"], replaced), case["description"]


def test_golden_cases_cover_every_language_and_group() -> None:
    languages: dict[str, int] = {}
    groups = {path.parent.name for path in CASES}
    for path in CASES:
        language = tomllib.loads(path.read_text(encoding="utf-8"))["context"]["language"]
        key = "typescript" if language in ("typescript", "javascript") else language
        languages[key] = languages.get(key, 0) + 1
    assert len(CASES) >= 70
    assert {language for language in LANGUAGES if language != "javascript"} <= set(languages)
    assert min(languages.values()) >= 8, languages
    assert {"artefacts", "brackets", "repetition", "scope", "single_line", "suffix_overlap"} <= groups
    assert "unchanged" in groups


@pytest.mark.parametrize(
    "marked",
    [
        "x = ├1",  # no end marker
        "x = ├1┤ ├",  # two start markers
        "x = ║├1┤",  # a cursor marker besides ├
        "x = 1┤├",  # end before start
        "x = ├1╣┤",  # replaced-range end inside the completion
        "f(├1┤)\n)╣",  # replaced range beyond the cursor line
        "f(├1┤)╣)╣",  # two replaced-range ends
    ],
)
def test_marker_parser_rejects_malformed_text(marked: str) -> None:
    with pytest.raises(MarkerError):
        parse_marked(marked, "python", multiline=False)


def test_marker_parser_reads_replaced_range() -> None:
    marked = parse_marked("f(├a)┤);╣ # x", "python", multiline=False)
    assert (marked.context.prefix, marked.completion, marked.context.suffix) == ("f(", "a)", "); # x")
    assert marked.replaced == 2
