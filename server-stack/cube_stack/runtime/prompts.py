"""Prompts as the runtime sees them, and the two ways of turning them into model input.

Bridges the HTTP request shapes (Ollama ``prompt``/``suffix``/``raw``, chat ``messages``, OpenAI
``prompt``/``suffix``) and what llama.cpp consumes:

- fill-in-the-middle (FIM) prompts become token ids in PSM order,
  ``[BOS] <FIM_PRE> prefix <FIM_SUF> suffix <FIM_MID>``, built from the special-token *ids* the GGUF
  metadata names, so that neither the prefix nor the suffix (user code) can spell a control token;
- chat prompts are rendered with the model's own Jinja chat template (``tokenizer.chat_template``) in
  a sandbox, since the template comes from a model file, or with a plain fallback layout.

Pure apart from Jinja: no llama.cpp here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cube_stack.runtime.errors import ModelRuntimeError


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn: ``role`` is system, user, assistant or tool."""

    role: str
    content: str


@dataclass(frozen=True)
class TextPrompt:
    """Text given to the model as it is; ``parse_special`` lets raw prompts spell control tokens."""

    text: str
    parse_special: bool = False


@dataclass(frozen=True)
class FimPrompt:
    """Fill in the middle between ``prefix`` (before the cursor) and ``suffix`` (after it)."""

    prefix: str
    suffix: str


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation; the model's chat template turns it into text ending in the assistant's turn."""

    messages: tuple[ChatMessage, ...]
    # Ollama ``/api/generate`` without ``raw``: a model without a chat template gets the text bare
    # (Ollama's default template is ``{{ .System }} {{ .Prompt }}``), not the fallback chat layout.
    bare_without_template: bool = False


Prompt = TextPrompt | FimPrompt | ChatPrompt


@dataclass(frozen=True)
class FimTokens:
    """The ids of a model's FIM control tokens (``tokenizer.ggml.fim_{pre,suf,mid}_token_id``)."""

    prefix: int
    suffix: int
    middle: int


def assemble_fim_tokens(
    prefix: Sequence[int], suffix: Sequence[int], fim: FimTokens, *, bos: int | None = None
) -> list[int]:
    """Return the PSM token sequence ``[BOS] PRE prefix SUF suffix MID`` from tokenised parts."""
    head = [bos] if bos is not None else []
    return [*head, fim.prefix, *prefix, fim.suffix, *suffix, fim.middle]


class ChatTemplate:
    """A model's Jinja chat template, compiled once in a sandbox (templates come from model files)."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ModelRuntimeError(f"the model's chat template does not compile: {exc}") from exc
        self.source = source
        self._bos_token = bos_token
        self._eos_token = eos_token

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """Render ``messages`` (ending with the assistant's turn opened when asked)."""
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos_token,
                eos_token=self._eos_token,
            )
        except TemplateError as exc:
            raise ModelRuntimeError(
                f"the model's chat template failed on this conversation: {exc}",
                code="runtime.template_failed",
            ) from exc


def render_fallback_chat(messages: Sequence[ChatMessage]) -> str:
    """Lay out a conversation for a model without a chat template: ``Role: content`` paragraphs."""
    turns = [f"{m.role.capitalize()}: {m.content}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)
