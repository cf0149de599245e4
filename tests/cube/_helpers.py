"""Small helpers shared by the cube client tests."""

from __future__ import annotations

import contextlib
from typing import Any

from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.requests import FimRequest
from cube_lsp.settings import Settings, merge_raw, parse_settings
from tests.support.scripted_backend import ScriptedBackend

FIM = FimRequest(
    model="qwen2.5-coder:1.5b",
    prompt="def add_numbers(a, b):\n    return",
    suffix="\n\nprint(add_numbers(1, 2))\n",
    max_tokens=64,
    temperature=0.1,
    stop=("\n\n",),
)


def settings_for(backend: ScriptedBackend, *, api: str = "ollama", **overrides: Any) -> Settings:
    """Return validated settings pointing at ``backend``; ``overrides`` are camelCase JSON."""
    settings, errors = parse_settings(merge_raw(backend.settings_json(api=api), overrides), environ={})  # type: ignore[arg-type]
    if errors:
        raise AssertionError(errors)
    return settings


async def collect(client: CubeClient, request: FimRequest = FIM) -> list[str]:
    """Return every chunk ``stream_fim`` yields."""
    async with contextlib.aclosing(client.stream_fim(request)) as chunks:
        return [chunk async for chunk in chunks]
