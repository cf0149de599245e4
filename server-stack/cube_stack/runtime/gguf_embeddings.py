"""Text embeddings from a GGUF file with llama.cpp: the embedding path of a CVM image without torch.

Bridges a GGUF embedding model (all-MiniLM-L6-v2 as :mod:`cube_stack.hal.embedding_model` converts it)
and the runtime's ``embed`` routes. :class:`LlamaEmbedder` answers like
:class:`~cube_stack.runtime.embeddings.SentenceEmbedder` -- same facts, token counts, L2-normalised
vectors and truncation report -- so a client cannot tell which one served it, except by the numbers.

The registry and the routes take either (:data:`cube_stack.runtime.registry.Embedder`); this module
never imports torch.

How inputs are cut: llama.cpp's tokenizer gives the same word pieces as the Hugging Face one
(``[CLS] ... [SEP]``). An input over ``max_tokens`` keeps its first ``max_tokens - 1`` pieces and its
final ``[SEP]``, as the Hugging Face truncation does; llama-cpp-python's own ``Llama.embed`` would drop
the ``[SEP]`` instead, so the batches are built here. ``max_tokens`` is the file's
``cube.embedding.max_input_tokens`` (256 for MiniLM, what sentence-transformers cuts at), else the
batch size (``batch_tokens``, at most the trained context).

Batches: inputs sorted by length and packed into one ``llama_decode`` of at most ``batch_tokens``
(512: two full-length MiniLM inputs or dozens of short ones), each its own sequence, read back
pooled per sequence (mean for MiniLM: the pooling the file declares).
Flash attention is on: without it a 200-token input took 1.6x as long (104 ms against 66 ms, one thread).

Measured on the shared 2-core development machine, f16 all-MiniLM-L6-v2 (46 MB) against
sentence-transformers (torch 2.13 CPU, f32), each in its own process, interleaved runs:

- vectors: min cosine 0.999997, mean 0.999999 over 62 varied texts (code from this repository, prose,
  identifiers, non-ASCII, special-token text, inputs over 256 tokens); the same nearest neighbour for
  every text; token counts and the inputs cut are identical;
- 1500-character code chunks (cut to 256 tokens), machine busy with other work (load 4-5): one thread,
  llama.cpp 11-12 chunks/s, sentence-transformers 18; two threads, llama.cpp 3.5-5.4 (!), torch 14.
  Lightly loaded (load 1.5-2), two threads: llama.cpp ~21, torch ~35 (both swing 2x with the load).
  Short code lines (~17 tokens), one thread, load 4-5: llama.cpp ~150/s, torch ~190/s;
- load time 0.4 s (torch: 4.5 s warm); resident memory after loading and embedding ~200 MB for the
  whole process (~100 MB of it the model and its buffers), sentence-transformers ~600 MB (peak 850).

So llama.cpp is ~1.5x slower per thread than torch here, and one thread is its default
(:data:`DEFAULT_THREADS`): llama.cpp's threads meet at a spinning barrier after every operation, and on
a 2-core machine shared with other work a preempted thread stalls the other for a whole time slice
(a 3-token input took 0.5 s with two threads under load, 4 ms with one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cube_stack.runtime.embeddings import MAX_INPUTS, EmbedderFacts, EmbeddingResult, check_input_lengths
from cube_stack.runtime.errors import ModelLoadError, ModelRuntimeError
from cube_stack.runtime.llama import FILE_TYPES, file_digest

__all__ = ["DEFAULT_BATCH_TOKENS", "DEFAULT_THREADS", "MAX_INPUT_TOKENS_KEY", "LlamaEmbedder"]

MAX_INPUT_TOKENS_KEY = "cube.embedding.max_input_tokens"  # written by cube_stack.hal.embedding_model
DEFAULT_THREADS = 1  # llama.cpp's spinning thread barrier collapses on a shared 2-core machine
DEFAULT_BATCH_TOKENS = 512  # MiniLM's trained context: two full-length inputs or dozens of short ones

logger = logging.getLogger(__name__)


class LlamaEmbedder:
    """A GGUF embedding model in llama.cpp; :meth:`embed` blocks (run it on the model's worker)."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        description: str = "",
        threads: int | None = None,
        max_tokens: int | None = None,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        """Load ``path``; unset ``threads``: one (see the module docstring); ``max_tokens``: the file's."""
        import llama_cpp  # imported here: loading the shared library costs ~0.1 s

        self.name = name
        self._llama_cpp = llama_cpp
        if not path.is_file():
            raise ModelLoadError(f"model {name!r}: file {str(path)!r} does not exist")
        threads = DEFAULT_THREADS if threads is None else threads
        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,  # what the file declares
                # n_ctx 0: the trained context; llama-cpp-python caps n_batch and n_ubatch to it. One
                # micro-batch holds a whole batch: an encoder must see every token of an input at once.
                n_ctx=0,
                n_batch=batch_tokens,
                n_ubatch=batch_tokens,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=True,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"model {name!r}: llama.cpp could not load {str(path)!r}: {exc}") from exc
        metadata = {str(k): str(v) for k, v in self._llm.metadata.items()}
        self._n_batch = int(self._llm.n_batch)
        limit = max_tokens or _int(metadata.get(MAX_INPUT_TOKENS_KEY)) or self._n_batch
        if not 1 <= limit <= self._n_batch:
            self._llm.close()
            raise ModelLoadError(
                f"model {name!r}: max_tokens {limit} is outside 1..{self._n_batch} "
                "(the batch size, at most the trained context)"
            )
        ctx = self._llm.ctx
        pooling = llama_cpp.llama_pooling_type(ctx)
        if pooling not in (
            llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            llama_cpp.LLAMA_POOLING_TYPE_CLS,
            llama_cpp.LLAMA_POOLING_TYPE_LAST,
        ):
            self._llm.close()
            raise ModelLoadError(
                f"model {name!r}: {str(path)!r} declares no sentence pooling (type {pooling}); "
                "it is not a sentence-embedding model"
            )
        vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._keeps_last = bool(llama_cpp.llama_vocab_get_add_eos(vocab))  # the [SEP] a cut keeps
        self._n_seq_max = int(self._llm.context_params.n_seq_max)
        self.dimensions = int(self._llm.n_embd())
        self.max_tokens = limit
        stat = path.stat()
        self.facts = EmbedderFacts(
            path=path,
            size=stat.st_size,
            digest=file_digest(path),
            modified_at=stat.st_mtime,
            architecture=metadata.get("general.architecture", "unknown"),
            parameter_count=int(llama_cpp.llama_model_n_params(self._llm.model)),
            quantization=FILE_TYPES.get(_int(metadata.get("general.file_type")), "unknown"),
            dimensions=self.dimensions,
            max_tokens=self.max_tokens,
            description=description or metadata.get("general.description", ""),
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return each text's length in model tokens (special tokens included, before truncation)."""
        return [len(self._tokens(text)) for text in texts]

    def embed(self, texts: Sequence[str], *, truncate: bool = True) -> EmbeddingResult:
        """Embed ``texts`` as L2-normalised vectors; with ``truncate=False`` an over-long text is a 400."""
        pieces = [self._tokens(text) for text in texts] if len(texts) <= MAX_INPUTS else []
        counts = [len(tokens) for tokens in pieces]
        truncated = check_input_lengths(self.name, counts, len(texts), self.max_tokens, truncate)
        sequences = [self._cut(tokens) for tokens in pieces]
        return EmbeddingResult(
            vectors=self._encode(sequences),
            token_count=sum(len(tokens) for tokens in sequences),
            truncated=truncated,
            max_tokens=self.max_tokens,
        )

    def close(self) -> None:
        """Free the model and its context."""
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    def _tokens(self, text: str) -> list[int]:
        # add_bos: llama.cpp adds the special tokens the vocabulary asks for ([CLS] and [SEP] for BERT);
        # special=True: "[SEP]" typed in a text is a separator, as the Hugging Face tokenizer reads it.
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def _cut(self, tokens: list[int]) -> list[int]:
        if len(tokens) <= self.max_tokens:
            return tokens
        if self._keeps_last:
            return tokens[: self.max_tokens - 1] + tokens[-1:]
        return tokens[: self.max_tokens]

    def _encode(self, sequences: list[list[int]]) -> list[list[float]]:
        import numpy as np

        llama_cpp = self._llama_cpp
        ctx = self._llm.ctx
        vectors: list[Any] = [None] * len(sequences)
        batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        try:
            group: list[int] = []
            used = 0
            for index in sorted(range(len(sequences)), key=lambda i: len(sequences[i])):
                size = len(sequences[index])
                if group and (used + size > self._n_batch or len(group) >= self._n_seq_max):
                    self._decode(batch, [sequences[i] for i in group])
                    for seq, i in enumerate(group):
                        vectors[i] = self._pooled(ctx, seq, np)
                    group, used = [], 0
                group.append(index)
                used += size
            if group:
                self._decode(batch, [sequences[i] for i in group])
                for seq, i in enumerate(group):
                    vectors[i] = self._pooled(ctx, seq, np)
        finally:
            llama_cpp.llama_batch_free(batch)
        if not vectors:
            return []
        matrix = np.stack(vectors)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms == 0, 1, norms)
        return matrix.astype(np.float32).tolist()  # float32 -> Python float is exact (base64 round-trips)

    def _decode(self, batch: Any, sequences: list[list[int]]) -> None:
        n = 0
        for seq, tokens in enumerate(sequences):
            for position, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = position
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True  # every token is an output: pooling reads them all
                n += 1
        batch.n_tokens = n
        memory = self._llama_cpp.llama_get_memory(self._llm.ctx)
        if memory:  # an encoder keeps no cache; other embedding models may
            self._llama_cpp.llama_memory_clear(memory, True)
        status = self._llama_cpp.llama_decode(self._llm.ctx, batch)
        if status != 0:
            raise ModelRuntimeError(
                f"llama.cpp could not embed a batch of {len(sequences)} inputs ({n} tokens): status {status}",
                code="runtime.embedding_failed",
            )

    def _pooled(self, ctx: Any, seq: int, np: Any) -> Any:
        pointer = self._llama_cpp.llama_get_embeddings_seq(ctx, seq)
        if not pointer:
            raise ModelRuntimeError("llama.cpp returned no pooled embedding", code="runtime.embedding_failed")
        return np.ctypeslib.as_array(pointer, shape=(self.dimensions,)).copy()


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0
