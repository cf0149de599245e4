"""One GGUF model in llama.cpp (through llama-cpp-python): load, tokenise, build prompts, generate.

Bridges :mod:`cube_stack.runtime.prompts` (what to say) and llama.cpp (blocking C code). Everything
here is synchronous and runs in the model's worker thread (see :mod:`cube_stack.runtime.registry`);
:meth:`LlamaModel.generate` hands each piece of text to an ``emit`` callback as soon as its token is
sampled and checks a :class:`threading.Event` between tokens, so a client that goes away stops the
generation after at most one more token.

FIM prompts are built from the FIM token ids llama.cpp read from the GGUF metadata
(``tokenizer.ggml.fim_{pre,suf,mid}_token_id``; llama.cpp also recognises well-known token texts);
a model without them refuses ``suffix`` with a :class:`CapabilityError`.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cube_stack.runtime.errors import CapabilityError, ModelLoadError, PromptTooLongError
from cube_stack.runtime.prompts import (
    ChatPrompt,
    ChatTemplate,
    FimPrompt,
    FimTokens,
    Prompt,
    TextPrompt,
    assemble_fim_tokens,
    render_fallback_chat,
)
from cube_stack.runtime.requests import SamplingOptions
from cube_stack.runtime.stops import StopMatcher

logger = logging.getLogger(__name__)

FILE_TYPES = {  # general.file_type -> the quantization name Ollama shows
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 12: "Q3_K_M",
    14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}  # fmt: skip
_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp's "pick a random seed"


@dataclass(frozen=True)
class GenerationReport:
    """What one generation did: counts, timings (nanoseconds) and why it ended.

    ``prompt_tokens`` is the exact token sequence evaluated, so tests and audits can check how a
    prompt was built (e.g. that a FIM prompt starts with the FIM prefix token id).
    """

    model: str
    prompt_tokens: tuple[int, ...]
    eval_count: int
    done_reason: str  # "stop" (end token or stop sequence), "length" (num_predict/context) or "cancelled"
    prompt_eval_duration: int
    eval_duration: int
    total_duration: int
    text: str = field(repr=False, default="")

    @property
    def cancelled(self) -> bool:
        """Whether the client went away (or the runtime stopped) before the generation ended."""
        return self.done_reason == "cancelled"


@dataclass(frozen=True)
class ModelFacts:
    """What ``/api/tags`` and ``/api/show`` say about a loaded GGUF model."""

    path: Path
    size: int
    digest: str
    modified_at: float
    architecture: str
    parameter_count: int
    quantization: str
    context_length: int
    metadata: dict[str, str]
    chat_template: str | None
    fim: FimTokens | None


class LlamaModel:
    """A loaded GGUF model; every method blocks and must run on the model's worker thread."""

    def __init__(self, name: str, path: Path, *, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        import llama_cpp  # imported here: loading the shared library costs ~0.1 s

        self.name = name
        self._llama_cpp = llama_cpp
        if not path.is_file():
            raise ModelLoadError(f"model {name!r}: file {str(path)!r} does not exist")
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"model {name!r}: llama.cpp could not load {str(path)!r}: {exc}") from exc
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.n_ctx = self._llm.n_ctx()
        metadata = {str(k): str(v) for k, v in self._llm.metadata.items()}
        eos_text = self._piece(self._llm.token_eos())
        template_source = metadata.get("tokenizer.chat_template")
        self._template = ChatTemplate(template_source, eos_token=eos_text) if template_source else None
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._bos = self._llm.token_bos()
        stat = path.stat()
        self.facts = ModelFacts(
            path=path,
            size=stat.st_size,
            digest=file_digest(path),
            modified_at=stat.st_mtime,
            architecture=metadata.get("general.architecture", "unknown"),
            parameter_count=int(llama_cpp.llama_model_n_params(self._llm.model)),
            quantization=FILE_TYPES.get(_int(metadata.get("general.file_type")), "unknown"),
            context_length=self.n_ctx,
            metadata=metadata,
            chat_template=template_source,
            fim=self._fim_tokens(),
        )

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokenise ``text``; ``special`` lets control-token texts become control tokens."""
        if not text:
            return [self._bos] if add_bos and self._add_bos else []
        return list(
            self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos and self._add_bos, special=special)
        )

    def detokenize(self, tokens: list[int]) -> str:
        """Return the text of ``tokens`` (control tokens render as nothing)."""
        return bytes(self._llm.detokenize(tokens)).decode("utf-8", errors="replace")

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        """Build the exact token sequence to evaluate for ``prompt``."""
        if isinstance(prompt, FimPrompt):
            fim = self.facts.fim
            if fim is None:
                raise CapabilityError(
                    f"model {self.name!r} has no fill-in-the-middle tokens (tokenizer.ggml.fim_*_token_id); "
                    "'suffix' needs a FIM-trained code model"
                )
            bos = self._bos if self._add_bos else None
            return assemble_fim_tokens(
                self.tokenize(prompt.prefix), self.tokenize(prompt.suffix), fim, bos=bos
            )
        if isinstance(prompt, TextPrompt):
            return self.tokenize(prompt.text, special=prompt.parse_special, add_bos=True)
        return self.tokenize(self.render_chat(prompt), special=True, add_bos=True)

    def render_chat(self, prompt: ChatPrompt) -> str:
        """Render a conversation with the model's chat template, or the fallback layout."""
        if self._template is not None:
            return self._template.render(prompt.messages)
        if prompt.bare_without_template:
            return "\n\n".join(message.content for message in prompt.messages if message.content)
        return render_fallback_chat(prompt.messages)

    def generate(
        self,
        prompt: Prompt,
        options: SamplingOptions,
        *,
        emit: Callable[[str], None],
        started: Callable[[tuple[int, ...]], None],
        cancel: threading.Event,
    ) -> GenerationReport:
        """Generate, handing text to ``emit`` token by token, until EOG, a stop, the limit or ``cancel``."""
        t0 = time.perf_counter_ns()
        tokens = self.prompt_tokens(prompt)
        room = self.n_ctx - len(tokens)
        if room <= 0:
            raise PromptTooLongError(
                f"the prompt is {len(tokens)} tokens; model {self.name!r} has a context of {self.n_ctx}"
            )
        limit = room if options.num_predict is None else min(options.num_predict, room)
        started(tuple(tokens))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(options.stop)
        pieces: list[str] = []
        count, reason, first_token_at = 0, "length", 0

        def send(text: str) -> None:
            if text:
                pieces.append(text)
                emit(text)

        self._llm.set_seed(_DEFAULT_SEED if options.seed is None else options.seed & 0xFFFFFFFF)
        stream = None
        if limit > 0 and not cancel.is_set():
            stream = self._llm.generate(
                tokens,
                top_k=options.top_k,
                top_p=options.top_p,
                min_p=options.min_p,
                temp=options.temperature,
                repeat_penalty=options.repeat_penalty,
            )
        try:
            for token in stream or ():
                if not first_token_at:
                    first_token_at = time.perf_counter_ns()
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    reason = "stop"
                    break
                count += 1
                send(stops.feed(decoder.decode(self._llm.detokenize([token]))))
                if stops.stopped:
                    reason = "stop"
                    break
                if count >= limit:
                    break
        finally:
            if stream is not None:
                stream.close()
        if cancel.is_set():
            reason = "cancelled"
        elif not stops.stopped:
            send(stops.feed(decoder.decode(b"", final=True)) + stops.flush())
        end = time.perf_counter_ns()
        first_token_at = first_token_at or end
        return GenerationReport(
            model=self.name,
            prompt_tokens=tuple(tokens),
            eval_count=count,
            done_reason=reason,
            prompt_eval_duration=first_token_at - t0,
            eval_duration=end - first_token_at,
            total_duration=end - t0,
            text="".join(pieces),
        )

    def close(self) -> None:
        """Free the model and its context."""
        self._llm.close()

    def _fim_tokens(self) -> FimTokens | None:
        ids = (
            self._llama_cpp.llama_vocab_fim_pre(self._vocab),
            self._llama_cpp.llama_vocab_fim_suf(self._vocab),
            self._llama_cpp.llama_vocab_fim_mid(self._vocab),
        )
        if any(token < 0 for token in ids):  # LLAMA_TOKEN_NULL is -1
            return None
        return FimTokens(*ids)

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._llm.detokenize([token], special=True)).decode("utf-8", errors="replace")


def file_digest(path: Path) -> str:
    """Return ``sha256:HEX`` of the file at ``path`` (Ollama's digest form), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
