"""Golden cases for FIM prompt building: tests/golden/prompt/*.toml.

Each case has ``description``, ``[config]`` (camelCase completion settings merged over the
defaults), ``[context]`` (``document`` with the ``║`` cursor marker, ``model``, ``language_id``,
``path``, ``raw``, ``multiline``, optional ``repo_name`` and ``[[context.snippets]]``) and
``[expected]`` (``prompt``, ``suffix``, and ``stop`` when given).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.completion.prompt import PromptInput, build_fim_prompt
from cube_lsp.completion.types import Snippet
from cube_lsp.cube.requests import FimRequest
from cube_lsp.settings import parse_settings

CURSOR = "║"
CASES = sorted((Path(__file__).parent.parent / "golden" / "prompt").glob("*.toml"))


def split_cursor(document: str) -> tuple[str, int]:
    if document.count(CURSOR) != 1:
        raise ValueError(f"the document must hold exactly one {CURSOR} marker")
    offset = document.index(CURSOR)
    return document.replace(CURSOR, ""), offset


def run_case(case: dict[str, Any]) -> FimRequest:
    settings, errors = parse_settings({"completion": case.get("config", {})})
    if errors:
        raise ValueError(f"bad [config]: {errors}")
    context = case["context"]
    text, offset = split_cursor(context["document"])
    snippets = [
        Snippet(path=s["path"], text=s["text"], score=s["score"], source=s.get("source", "recent"))
        for s in context.get("snippets", [])
    ]
    source = PromptInput(
        text,
        offset,
        context["language_id"],
        context["path"],
        context["model"],
        snippets,
        context["raw"],
        context["multiline"],
        repo_name=context.get("repo_name", ""),
    )
    built = build_fim_prompt(source, settings.completion)
    return built.request


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_golden(case_path: Path) -> None:
    case = tomllib.loads(case_path.read_text(encoding="utf-8"))
    assert case["description"]
    request = run_case(case)
    expected = case["expected"]
    assert request.prompt == expected["prompt"]
    assert request.suffix == expected["suffix"]
    assert request.raw == case["context"]["raw"]
    if "stop" in expected:
        assert list(request.stop) == expected["stop"]
