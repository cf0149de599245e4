"""Wire-independent descriptions of what we ask the proxy for (no httpx here, engines import it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FimRequest:
    """One fill-in-the-middle generation.

    With ``raw`` false the proxy's runtime applies the model's own FIM template to ``prompt`` (code
    before the cursor) and ``suffix`` (code after it): Ollama's native ``suffix`` field, or the OpenAI
    ``suffix`` parameter. With ``raw`` true, ``prompt`` is already a complete FIM prompt built from
    our template table and ``suffix`` is empty.
    """

    model: str
    prompt: str
    suffix: str = ""
    raw: bool = False
    max_tokens: int = 128
    temperature: float = 0.2
    stop: tuple[str, ...] = ()
