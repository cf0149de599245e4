r"""Parse and validate the JSON bodies of the Ollama and OpenAI routes into frozen request objects.

Bridges wire formats and the model host: every field is type-checked here, with a 400
(:class:`BadRequestError`) naming the field, so the inference code only ever sees valid values.
Unknown fields are ignored, as Ollama and the OpenAI servers do. Pure: no I/O.

Before any route parses a body, :func:`reject_unpaired_surrogates` checks every string of the decoded
JSON, keys and nested values alike (:mod:`cube_stack.json_text`): Python's JSON decoder turns an escape
like ``"\ud800"`` into a lone surrogate, which is no Unicode character and fails the first time the
text is encoded (tokenizer, chat template, logs) -- far from the parser, as a 500. It is a 400 here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cube_stack.json_text import unpaired_surrogate_path
from cube_stack.runtime.errors import BadRequestError, UnpairedSurrogateError
from cube_stack.runtime.names import normalize_model_name
from cube_stack.runtime.prompts import ChatMessage, ChatPrompt, FimPrompt, Prompt, TextPrompt

_ROLES = frozenset({"system", "user", "assistant", "tool"})
# OpenAI's two encodings; the official Python client sends "base64" unless told otherwise.
EMBEDDING_ENCODINGS = ("float", "base64")
MAX_STOPS = 16
# Texts per embedding request. The proxy lets a body of 8 MiB through, which is 8,000 texts of 1 KB of
# code: measured at 138 texts/s on an idle 2-core CPU, one request would hold the runtime for about a
# minute while every other user waits (512 take 3.7 s). OpenAI allows 2,048; cube-lsp sends 64.
MAX_EMBED_INPUTS = 512


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample; the defaults are Ollama's."""

    num_predict: int | None = None  # unset or negative: until the context window is full
    temperature: float = 0.8  # 0: greedy
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    repeat_penalty: float = 1.1
    seed: int | None = None  # unset: a fresh random seed per request
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerateRequest:
    """A text generation: Ollama ``/api/generate`` and ``/api/chat``, OpenAI completions and chat."""

    model: str
    prompt: Prompt
    options: SamplingOptions
    stream: bool = True
    include_usage: bool = False  # OpenAI ``stream_options.include_usage``


@dataclass(frozen=True)
class EmbedRequest:
    """A batch of texts to embed: Ollama ``/api/embed`` and ``/api/embeddings``, OpenAI embeddings."""

    model: str
    inputs: tuple[str, ...]
    truncate: bool = True
    encoding_format: str = "float"  # OpenAI only: "float" (JSON numbers) or "base64" (little-endian float32)


def reject_unpaired_surrogates(body: Any) -> None:
    """Raise 400 naming the first field (``messages[0].content``) whose key or text holds a lone surrogate."""
    field = unpaired_surrogate_path(body)
    if field is not None:
        raise UnpairedSurrogateError(
            field, f"field '{field}' holds an unpaired UTF-16 surrogate, which is not text"
        )


def require_object(body: Any) -> Mapping[str, Any]:
    """Return ``body`` if it is a JSON object; 400 otherwise."""
    if not isinstance(body, Mapping):
        raise BadRequestError("the request body must be a JSON object")
    return body


def parse_model_name(body: Mapping[str, Any], *, legacy_key: str | None = None) -> str:
    """Return the normalised ``model`` (or the legacy ``name``) field; 400 when missing or malformed."""
    value = body.get("model")
    if value is None and legacy_key is not None:
        value = body.get(legacy_key)
    if not isinstance(value, str) or not value:
        raise BadRequestError("field 'model' is required and must be a non-empty string")
    return normalize_model_name(value)


def parse_ollama_generate(body: Any) -> GenerateRequest:
    """Parse ``/api/generate``: ``suffix`` makes a FIM prompt; ``raw`` skips the chat template."""
    body = require_object(body)
    model = parse_model_name(body)
    prompt = _optional(body, "prompt", str) or ""
    suffix = _optional(body, "suffix", str) or ""
    system = _optional(body, "system", str)
    raw = _optional(body, "raw", bool) or False
    _reject_unsupported(body, ("images", "format", "template", "context", "tools"))
    parsed: Prompt
    if suffix:
        parsed = FimPrompt(prefix=prompt, suffix=suffix)
    elif raw:
        parsed = TextPrompt(prompt, parse_special=True)
    else:
        turns = [ChatMessage("system", system)] if system else []
        parsed = ChatPrompt((*turns, ChatMessage("user", prompt)), bare_without_template=True)
    return GenerateRequest(
        model=model,
        prompt=parsed,
        options=parse_ollama_options(body.get("options")),
        stream=_stream_flag(body, default=True),
    )


def parse_ollama_chat(body: Any) -> GenerateRequest:
    """Parse ``/api/chat``: a list of ``{role, content}`` messages."""
    body = require_object(body)
    _reject_unsupported(body, ("format", "tools"))
    return GenerateRequest(
        model=parse_model_name(body),
        prompt=ChatPrompt(_parse_messages(body.get("messages"))),
        options=parse_ollama_options(body.get("options")),
        stream=_stream_flag(body, default=True),
    )


def parse_ollama_embed(body: Any) -> EmbedRequest:
    """Parse ``/api/embed``: ``input`` is a string or a list of strings."""
    body = require_object(body)
    return EmbedRequest(
        model=parse_model_name(body),
        inputs=_parse_inputs(body.get("input"), "input"),
        truncate=_optional(body, "truncate", bool) is not False,
    )


def parse_ollama_legacy_embeddings(body: Any) -> EmbedRequest:
    """Parse the legacy ``/api/embeddings``: one ``prompt`` string."""
    body = require_object(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise BadRequestError("field 'prompt' is required and must be a string")
    return EmbedRequest(model=parse_model_name(body), inputs=(prompt,))


def parse_ollama_options(options: Any) -> SamplingOptions:
    """Parse Ollama's ``options`` object (num_predict, temperature, top_k, top_p, min_p, seed, stop...)."""
    if options is None:
        return SamplingOptions()
    if not isinstance(options, Mapping):
        raise BadRequestError("field 'options' must be an object")
    defaults = SamplingOptions()
    num_predict = _optional(options, "num_predict", int, field="options.num_predict")
    return SamplingOptions(
        num_predict=None if num_predict is None or num_predict < 0 else num_predict,
        temperature=_number(options, "temperature", defaults.temperature, "options.", low=0.0),
        top_k=_optional(options, "top_k", int, field="options.top_k") or defaults.top_k,
        top_p=_number(options, "top_p", defaults.top_p, "options.", low=0.0, high=1.0),
        min_p=_number(options, "min_p", defaults.min_p, "options.", low=0.0, high=1.0),
        repeat_penalty=_number(options, "repeat_penalty", defaults.repeat_penalty, "options.", low=0.0),
        seed=_optional(options, "seed", int, field="options.seed"),
        stop=_parse_stop(options.get("stop"), "options.stop"),
    )


def parse_openai_completion(body: Any) -> GenerateRequest:
    """Parse ``/v1/completions``: ``prompt`` (+ ``suffix`` for FIM), ``max_tokens`` defaulting to 16."""
    body = require_object(body)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequestError("field 'prompt' must be a string (batches are not supported)")
    suffix = _optional(body, "suffix", str) or ""
    _reject_n(body)
    parsed: Prompt = (
        FimPrompt(prefix=prompt, suffix=suffix) if suffix else TextPrompt(prompt, parse_special=True)
    )
    return GenerateRequest(
        model=parse_model_name(body),
        prompt=parsed,
        options=_openai_options(body, default_max_tokens=16),
        stream=_stream_flag(body, default=False),
        include_usage=_include_usage(body),
    )


def parse_openai_chat(body: Any) -> GenerateRequest:
    """Parse ``/v1/chat/completions``: messages, ``max_tokens``/``max_completion_tokens``."""
    body = require_object(body)
    _reject_n(body)
    _reject_unsupported(body, ("tools", "response_format"))
    return GenerateRequest(
        model=parse_model_name(body),
        prompt=ChatPrompt(_parse_messages(body.get("messages"))),
        options=_openai_options(body, default_max_tokens=None),
        stream=_stream_flag(body, default=False),
        include_usage=_include_usage(body),
    )


def parse_openai_embeddings(body: Any) -> EmbedRequest:
    """Parse ``/v1/embeddings``: ``input`` is a string or a list of strings; ``encoding_format``."""
    body = require_object(body)
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"  # OpenAI's default when the field is absent or null
    if encoding not in EMBEDDING_ENCODINGS:
        raise BadRequestError("field 'encoding_format' must be 'float' or 'base64'")
    return EmbedRequest(
        model=parse_model_name(body),
        inputs=_parse_inputs(body.get("input"), "input"),
        encoding_format=encoding,
    )


def _openai_options(body: Mapping[str, Any], *, default_max_tokens: int | None) -> SamplingOptions:
    max_tokens = _optional(body, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = _optional(body, "max_tokens", int)
    if max_tokens is None:
        max_tokens = default_max_tokens
    elif max_tokens < 0:
        raise BadRequestError("field 'max_tokens' must not be negative")
    return SamplingOptions(
        num_predict=max_tokens,
        temperature=_number(body, "temperature", 1.0, "", low=0.0, high=2.0),
        top_p=_number(body, "top_p", 1.0, "", low=0.0, high=1.0),
        repeat_penalty=1.0,
        seed=_optional(body, "seed", int),
        stop=_parse_stop(body.get("stop"), "stop"),
    )


def _parse_messages(value: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise BadRequestError("field 'messages' must be a non-empty list")
    messages = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise BadRequestError(f"field 'messages[{index}]' must be an object")
        role, content = item.get("role"), item.get("content")
        if role not in _ROLES:
            raise BadRequestError(f"field 'messages[{index}].role' must be one of {sorted(_ROLES)}")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise BadRequestError(f"field 'messages[{index}].content' must be a string")
        messages.append(ChatMessage(role, content))
    return tuple(messages)


def _parse_inputs(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and len(value) > MAX_EMBED_INPUTS:
        raise BadRequestError(
            f"field '{field}' has {len(value)} texts; at most {MAX_EMBED_INPUTS} per request are allowed"
        )
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise BadRequestError(f"field '{field}' must be a string or a non-empty list of strings")


def _parse_stop(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequestError(f"field '{field}' must be a string or a list of strings")
    if len(value) > MAX_STOPS:
        raise BadRequestError(f"field '{field}' has {len(value)} entries; at most {MAX_STOPS} are allowed")
    return tuple(item for item in value if item)


def _stream_flag(body: Mapping[str, Any], *, default: bool) -> bool:
    value = _optional(body, "stream", bool)
    return default if value is None else value


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _reject_n(body: Mapping[str, Any]) -> None:
    if body.get("n", 1) != 1:
        raise BadRequestError("field 'n' must be 1: one choice per request")


def _reject_unsupported(body: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    for field in fields:
        if body.get(field) not in (None, "", [], {}):
            raise BadRequestError(f"field '{field}' is not supported by the built-in runtime")


def _optional(body: Mapping[str, Any], key: str, kind: type, *, field: str | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python; JSON true is not a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequestError(f"field '{field or key}' must be of type {kind.__name__}")
    return value


def _number(
    body: Mapping[str, Any], key: str, default: float, prefix: str, *, low: float, high: float = math.inf
) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequestError(f"field '{prefix}{key}' must be a number in [{low}, {high}]")
    return float(value)
