from __future__ import annotations

import dataclasses
import inspect
import time

import pytest

import cube_lsp.completion.postprocess as postprocess_package
from cube_lsp.completion.postprocess import PIPELINE, PostprocessConfig, postprocess
from cube_lsp.completion.types import Candidate, CursorContext

from ._markers import context_at

BODY = "".join(f"def func_{i}(x):\n    y = x + {i}\n    return y\n\n" for i in range(12_500))
RAW = (
    "total = 0\n    for v in values:\n        total += v\n    print(total)\n    return total\n\n"
    "def other():\n    pass<|endoftext|>"
)
PREFIX = "def main():\n    values = [1, 2, 3]\n    "


def test_public_api() -> None:
    assert set(postprocess_package.__all__) == {
        "DEFAULT_CONFIG",
        "DEFAULT_STOP_TOKENS",
        "PIPELINE",
        "Filter",
        "PostprocessConfig",
        "postprocess",
    }


def test_pipeline_order_is_declared_once() -> None:
    names = [step.__name__ for step in PIPELINE]
    assert names == [
        "normalize_line_endings",
        "strip_artefacts",
        "limit_to_single_line",
        "remove_repetitive_lines",
        "limit_scope_by_indentation",
        "stop_at_suffix_start",
        "remove_suffix_overlap",
        "balance_brackets",
        "trim_space",
        "restore_line_endings",
    ]
    for step in PIPELINE:
        assert list(inspect.signature(step).parameters) == ["candidate", "context", "config"]
        assert step.__module__.rsplit(".", 1)[1] == step.__name__  # one filter per module
        assert inspect.getdoc(step)


def test_config_is_frozen_and_every_field_documented() -> None:
    config = PostprocessConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tab_size = 8  # type: ignore[misc]
    source = inspect.getsource(PostprocessConfig)
    for field in dataclasses.fields(PostprocessConfig):
        line = next(line for line in source.splitlines() if line.strip().startswith(f"{field.name}:"))
        assert "  # " in line, f"{field.name} has no comment"


def test_a_none_from_any_filter_stops_the_pipeline() -> None:
    assert postprocess(Candidate("   "), context_at("x = ║\n")) is None


def test_postprocess_on_partial_text_is_safe() -> None:
    context = context_at("def f(a):\n    ║\n    return a\n", multiline=True)
    raw = "if a is None:\n        a = 0\n    return a"
    results = [postprocess(Candidate(raw[:end]), context) for end in range(len(raw) + 1)]
    assert results[-1] == Candidate("if a is None:\n        a = 0")
    assert all(result is None or result.text.strip() for result in results)


def _best_time(context: CursorContext, runs: int = 30) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        postprocess(Candidate(RAW), context)
        best = min(best, time.perf_counter() - start)
    return best


def test_typical_input_is_fast() -> None:
    context = CursorContext("python", PREFIX, "\n\nif __name__ == '__main__':\n    main()\n", True)
    assert postprocess(Candidate(RAW), context) is not None
    assert _best_time(context) < 0.002


def test_cost_does_not_grow_with_a_50k_line_suffix() -> None:
    context = CursorContext("python", BODY + PREFIX, "\n" + BODY, True)
    assert len(context.suffix.splitlines()) >= 50_000
    assert _best_time(context) < 0.005
