"""The built-in runtime's ASGI app: the Ollama API subset the proxy needs, plus the OpenAI subset.

Bridges HTTP and :class:`~cube_stack.runtime.registry.ModelRegistry`. Routes parse their body with
:mod:`cube_stack.runtime.requests`, start a generation (or an embedding) and stream it chunk by chunk:
NDJSON on ``/api/*`` (Ollama), server-sent events on ``/v1/*`` (OpenAI). When the client goes away,
Starlette cancels the streaming task and the generation stops; non-streaming requests watch for the
disconnect themselves. Errors are raised as :mod:`cube_stack.runtime.errors` classes and rendered once,
in :func:`_render_error`: ``{"error": message, "code": code}`` on ``/api/*`` (what Ollama clients read),
``{"error": {"message", "type", "code"}}`` on ``/v1/*``. No prompt or completion text is logged.
Every body is decoded and checked in one place, :func:`_read_json` (lone UTF-16 surrogates are a 400).
Paths match exactly: a trailing slash is a 404, never a redirect built from the ``Host`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Lifespan

import cube_stack
from cube_stack.runtime.embeddings import EmbeddingResult, SentenceEmbedder, float32_base64
from cube_stack.runtime.errors import BadRequestError, ModelRuntimeError, PayloadTooLargeError
from cube_stack.runtime.gguf_embeddings import LlamaEmbedder
from cube_stack.runtime.llama import GenerationReport, LlamaModel
from cube_stack.runtime.registry import Embedder, GenerationStream, ModelRegistry
from cube_stack.runtime.requests import (
    GenerateRequest,
    parse_model_name,
    parse_ollama_chat,
    parse_ollama_embed,
    parse_ollama_generate,
    parse_ollama_legacy_embeddings,
    parse_openai_chat,
    parse_openai_completion,
    parse_openai_embeddings,
    reject_unpaired_surrogates,
    require_object,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
NDJSON = "application/x-ndjson"


def create_runtime_app(registry: ModelRegistry, *, lifespan: Lifespan[Starlette] | None = None) -> Starlette:
    """Return the Starlette app serving ``registry``'s models over the Ollama and OpenAI APIs."""
    routes = _Routes(registry)
    app = Starlette(
        routes=[
            Route("/", routes.root, methods=["GET", "HEAD"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/api/version", routes.version, methods=["GET"]),
            Route("/api/tags", routes.tags, methods=["GET"]),
            Route("/api/show", routes.show, methods=["POST"]),
            Route("/api/generate", routes.generate, methods=["POST"]),
            Route("/api/chat", routes.chat, methods=["POST"]),
            Route("/api/embed", routes.embed, methods=["POST"]),
            Route("/api/embeddings", routes.legacy_embeddings, methods=["POST"]),
            Route("/v1/models", routes.openai_models, methods=["GET"]),
            Route("/v1/completions", routes.openai_completions, methods=["POST"]),
            Route("/v1/chat/completions", routes.openai_chat, methods=["POST"]),
            Route("/v1/embeddings", routes.openai_embeddings, methods=["POST"]),
        ],
        exception_handlers={ModelRuntimeError: _render_error, Exception: _render_unexpected},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # Starlette would answer /api/tags/ with 307 to http://{Host}/...
    return app


class _Routes:
    """Route handlers; each parses, calls the registry and shapes the answer."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")  # what Ollama answers; some clients check it

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "pass", "service": "cube-runtime", "models": self.registry.names()})

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": cube_stack.__version__})

    async def tags(self, request: Request) -> Response:
        models = [_tag_entry(name, self.registry.get(name)) for name in self.registry.names()]
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        body = require_object(await _read_json(request))
        name = parse_model_name(body, legacy_key="name")
        return JSONResponse(_show_document(name, self.registry.get(name)))

    async def generate(self, request: Request) -> Response:
        parsed = parse_ollama_generate(await _read_json(request))
        return await self._ollama_generation(request, parsed, lambda text: {"response": text})

    async def chat(self, request: Request) -> Response:
        parsed = parse_ollama_chat(await _read_json(request))
        return await self._ollama_generation(
            request, parsed, lambda text: {"message": {"role": "assistant", "content": text}}
        )

    async def embed(self, request: Request) -> Response:
        parsed = parse_ollama_embed(await _read_json(request))
        started = time.perf_counter_ns()
        result = await self.registry.embed(parsed.model, parsed.inputs, truncate=parsed.truncate)
        return JSONResponse(
            {
                "model": parsed.model,
                "embeddings": result.vectors,
                "total_duration": time.perf_counter_ns() - started,
                "load_duration": 0,
                "prompt_eval_count": result.token_count,
                **_truncation(result),
            }
        )

    async def legacy_embeddings(self, request: Request) -> Response:
        parsed = parse_ollama_legacy_embeddings(await _read_json(request))
        result = await self.registry.embed(parsed.model, parsed.inputs)
        return JSONResponse({"embedding": result.vectors[0]})

    async def openai_models(self, request: Request) -> Response:
        data = [
            {
                "id": name,
                "object": "model",
                "created": int(self.registry.get(name).facts.modified_at),
                "owned_by": "cube",
            }
            for name in self.registry.names()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def openai_completions(self, request: Request) -> Response:
        parsed = parse_openai_completion(await _read_json(request))
        return await self._openai_generation(request, parsed, chat=False)

    async def openai_chat(self, request: Request) -> Response:
        parsed = parse_openai_chat(await _read_json(request))
        return await self._openai_generation(request, parsed, chat=True)

    async def openai_embeddings(self, request: Request) -> Response:
        parsed = parse_openai_embeddings(await _read_json(request))
        result = await self.registry.embed(parsed.model, parsed.inputs)
        encode: Callable[[list[float]], Any] = (
            float32_base64 if parsed.encoding_format == "base64" else lambda vector: vector
        )
        data = [
            {"object": "embedding", "index": i, "embedding": encode(vector)}
            for i, vector in enumerate(result.vectors)
        ]
        usage = {"prompt_tokens": result.token_count, "total_tokens": result.token_count}
        document = {"object": "list", "data": data, "model": parsed.model, "usage": usage}
        return JSONResponse(document | _truncation(result))

    async def _ollama_generation(
        self, request: Request, parsed: GenerateRequest, shape: Callable[[str], dict[str, Any]]
    ) -> Response:
        stream = await self.registry.generate(parsed.model, parsed.prompt, parsed.options)
        if parsed.stream:
            return StreamingResponse(_ollama_lines(parsed.model, stream, shape), media_type=NDJSON)
        text = await _collect_unless_disconnected(request, stream)
        if text is None or stream.report is None:
            return Response(status_code=499)  # nobody is listening any more
        return JSONResponse({**_ollama_head(parsed.model), **shape(text), **_ollama_final(stream.report)})

    async def _openai_generation(self, request: Request, parsed: GenerateRequest, *, chat: bool) -> Response:
        stream = await self.registry.generate(parsed.model, parsed.prompt, parsed.options)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        if parsed.stream:
            events = _openai_events(ident, parsed, stream, chat=chat)
            return StreamingResponse(
                events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        text = await _collect_unless_disconnected(request, stream)
        if text is None or stream.report is None:
            return Response(status_code=499)
        report = stream.report
        choice: dict[str, Any] = {"index": 0, "finish_reason": _finish_reason(report)}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice |= {"text": text, "logprobs": None}
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": parsed.model,
                "choices": [choice],
                "usage": _usage(report),
            }
        )


async def _ollama_lines(
    model: str, stream: GenerationStream, shape: Callable[[str], dict[str, Any]]
) -> AsyncIterator[bytes]:
    try:
        async for piece in stream:
            yield _line({**_ollama_head(model), **shape(piece), "done": False})
        if stream.report is not None:
            yield _line({**_ollama_head(model), **shape(""), **_ollama_final(stream.report)})
    except ModelRuntimeError as exc:  # headers are gone: Ollama reports mid-stream errors as a line
        yield _line({"error": exc.message, "code": exc.code})
    finally:
        if stream.report is None:
            stream.cancel()


async def _openai_events(
    ident: str, parsed: GenerateRequest, stream: GenerationStream, *, chat: bool
) -> AsyncIterator[bytes]:
    created = int(time.time())
    head = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion", "created": created}
    head["model"] = parsed.model

    def chunk(text: str | None, finish: str | None, *, role: bool = False) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice |= {"text": text or "", "logprobs": None}
        return _event({**head, "choices": [choice]})

    try:
        if chat:
            yield chunk("", None, role=True)
        async for piece in stream:
            yield chunk(piece, None)
        if stream.report is not None:
            yield chunk(None if chat else "", _finish_reason(stream.report))
            if parsed.include_usage:
                yield _event({**head, "choices": [], "usage": _usage(stream.report)})
        yield b"data: [DONE]\n\n"
    except ModelRuntimeError as exc:
        yield _event({"error": {"message": exc.message, "type": "server_error", "code": exc.code}})
    finally:
        if stream.report is None:
            stream.cancel()


async def _collect_unless_disconnected(request: Request, stream: GenerationStream) -> str | None:
    """Collect the whole text, or cancel the generation and return None if the client leaves first."""
    collect = asyncio.ensure_future(stream.collect())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({collect, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not collect.done():
            stream.cancel()
            collect.cancel()
            await asyncio.wait({collect})
    return None if collect.cancelled() else collect.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _read_json(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the request body is {declared} bytes; the limit is {MAX_BODY_BYTES}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise PayloadTooLargeError(f"the request body exceeds {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ModelRuntimeError(
            "the client left before sending its request", code="runtime.client_gone"
        ) from exc
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError("the request body is not valid JSON") from exc
    except RecursionError as exc:
        raise BadRequestError("the request body nests too deeply") from exc
    reject_unpaired_surrogates(body)  # the one place every route's JSON passes through
    return body


def _truncation(result: EmbeddingResult) -> dict[str, Any]:
    """Say which inputs were cut to the model's input limit.

    Neither Ollama nor OpenAI defines these fields, so their clients ignore them, while ours can
    re-chunk instead of indexing half a function without knowing it.
    """
    return {"truncated_inputs": list(result.truncated), "max_input_tokens": result.max_tokens}


def _ollama_head(model: str) -> dict[str, Any]:
    return {"model": model, "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


def _ollama_final(report: GenerationReport) -> dict[str, Any]:
    return {
        "done": True,
        "done_reason": report.done_reason,
        "total_duration": report.total_duration,
        "load_duration": 0,
        "prompt_eval_count": len(report.prompt_tokens),
        "prompt_eval_duration": report.prompt_eval_duration,
        "eval_count": report.eval_count,
        "eval_duration": report.eval_duration,
    }


def _finish_reason(report: GenerationReport) -> str:
    return "length" if report.done_reason == "length" else "stop"


def _usage(report: GenerationReport) -> dict[str, int]:
    prompt = len(report.prompt_tokens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": report.eval_count,
        "total_tokens": prompt + report.eval_count,
    }


def _line(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8") + b"\n"


def _event(document: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(document, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _tag_entry(name: str, model: LlamaModel | Embedder) -> dict[str, Any]:
    facts = model.facts
    return {
        "name": name,
        "model": name,
        "modified_at": datetime.fromtimestamp(facts.modified_at, UTC).isoformat().replace("+00:00", "Z"),
        "size": facts.size,
        "digest": facts.digest.removeprefix("sha256:"),
        "details": _details(model),
    }


def _details(model: LlamaModel | Embedder) -> dict[str, Any]:
    facts = model.facts
    return {
        "parent_model": "",
        "format": "safetensors" if isinstance(model, SentenceEmbedder) else "gguf",
        "family": facts.architecture,
        "families": [facts.architecture],
        "parameter_size": _human_count(facts.parameter_count),
        "quantization_level": facts.quantization,
    }


def _show_document(name: str, model: LlamaModel | Embedder) -> dict[str, Any]:
    if isinstance(model, SentenceEmbedder | LlamaEmbedder):
        info = model.facts
        return {
            "modelfile": f"# Modelfile generated by cube-stack\nFROM {info.path}\n",
            "parameters": "",
            "template": "",
            "details": _details(model),
            "model_info": {
                "general.architecture": info.architecture,
                "general.description": info.description,
                "general.parameter_count": info.parameter_count,
                f"{info.architecture}.embedding_length": info.dimensions,
                f"{info.architecture}.context_length": info.max_tokens,
            },
            "capabilities": ["embedding"],
        }
    facts = model.facts
    description = facts.metadata.get("general.description", "")
    header = "".join(f"# {line}\n" for line in description.splitlines())
    model_info: dict[str, Any] = {
        key: _typed(value)
        for key, value in sorted(facts.metadata.items())
        if not key.startswith("tokenizer.chat_template")
    }
    model_info["general.parameter_count"] = facts.parameter_count
    return {
        "modelfile": f"# Modelfile generated by cube-stack\n{header}FROM {facts.path}\n",
        "parameters": "",
        "template": facts.chat_template or "",
        "details": _details(model),
        "model_info": model_info,
        "capabilities": ["completion", "insert"] if facts.fim is not None else ["completion"],
    }


def _typed(value: str) -> Any:
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    return value


def _human_count(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


async def _render_error(request: Request, exc: Exception) -> Response:
    error = exc if isinstance(exc, ModelRuntimeError) else ModelRuntimeError(str(exc))
    if request.url.path.startswith("/v1/"):
        kind = "invalid_request_error" if error.status < 500 else "server_error"
        body: dict[str, Any] = {"error": {"message": error.message, "type": kind, "code": error.code}}
    else:
        body = {"error": error.message, "code": error.code}
    return JSONResponse(body, status_code=error.status)


async def _render_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return await _render_error(
        request, ModelRuntimeError("internal error in the runtime", code="runtime.internal")
    )
