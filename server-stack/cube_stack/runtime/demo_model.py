"""A tiny GGUF model with RANDOM WEIGHTS, generated on demand, to prove the built-in runtime's path.

``cube-demo:random`` is what the embedded default (``cube-stack up`` without Ollama) and the tests
serve when no real model is configured. It has **random weights**: its output is gibberish. It proves
the path — GGUF loading in llama.cpp, tokenisation, FIM prompts built from token ids, the chat template,
streaming, stop sequences, cancellation — never completion quality. The file (under 1 MB) is
written at run time into a data/cache directory and is never committed or downloaded.

Layout (all float32, llama architecture, which every llama.cpp build loads):

- vocabulary, GPT-2 byte-level BPE (``tokenizer.ggml.model = "gpt2"``, pre-tokenizer ``default``):
  ids 0-255 are the 256 byte tokens in byte order, then one token per merge in :data:`MERGES`
  (llama.cpp refuses a BPE vocabulary without merges), then the control tokens ``<|endoftext|>``
  (EOS/EOT), ``<|fim_prefix|>``, ``<|fim_suffix|>``, ``<|fim_middle|>``, ``<|im_start|>``,
  ``<|im_end|>``; the FIM ids are in ``tokenizer.ggml.fim_{pre,suf,mid}_token_id``;
- a ChatML chat template in ``tokenizer.chat_template``;
- 2 blocks, 64-wide embeddings, 4 heads, 128-wide feed-forward, 4096 tokens of context.

The weights are random but shaped: every token embedding carries a large constant in channel 0, and
the output rows of control tokens and of non-printable bytes weigh that channel negatively, so the
model only ever emits printable ASCII, newlines and merged tokens — valid UTF-8 — and never its own
end-of-text token: each generation runs until ``num_predict`` or a stop sequence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEMO_MODEL_NAME = "cube-demo:random"
"""The demo model's name. RANDOM WEIGHTS: it proves the serving path, not completion quality."""

# Versioned: bump it when the layout changes, since data directories keep the file they generated.
DEMO_MODEL_FILE = "cube-demo-random-v1.gguf"

DEMO_MODEL_DESCRIPTION = (
    "RANDOM WEIGHTS: cube-demo is generated from a seed with random weights by "
    "cube_stack.runtime.demo_model. It proves the serving path (GGUF loading, tokenisation, FIM, "
    "chat template, streaming, cancellation), not completion quality: its output is gibberish."
)

MERGES = (
    ("Ġ", "Ġ"),
    ("ĠĠ", "ĠĠ"),
    ("d", "e"),
    ("de", "f"),
    ("r", "e"),
    ("re", "t"),
    ("u", "r"),
    ("ret", "ur"),
    ("retur", "n"),
    ("i", "n"),
    ("Ġ", "="),
    ("(", ")"),
)

EOS_TEXT = "<|endoftext|>"
FIM_TEXTS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
CHAT_TEXTS = ("<|im_start|>", "<|im_end|>")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

N_EMBD = 64
N_HEAD = 4
N_FF = 128
N_LAYER = 2
N_CTX = 4096

_TOKEN_NORMAL = 1
_TOKEN_CONTROL = 3
_STEER = 1.0  # channel 0 of every token embedding
_BAN = -4.0  # channel 0 of the output rows that must never be sampled


@dataclass(frozen=True)
class DemoVocabulary:
    """The demo model's token strings, token types and the ids of its special tokens."""

    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    merges: tuple[str, ...]
    eos: int
    fim_prefix: int | None
    fim_suffix: int | None
    fim_middle: int | None
    allowed: tuple[bool, ...]  # may the model emit this token?


def byte_to_unicode() -> dict[int, str]:
    """Return GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def demo_vocabulary(*, fim: bool = True) -> DemoVocabulary:
    """Build the demo vocabulary; ``fim=False`` leaves the FIM tokens out entirely."""
    table = byte_to_unicode()
    tokens = [table[b] for b in range(256)]
    allowed = [b == 0x0A or 0x20 <= b <= 0x7E for b in range(256)]
    for left, right in MERGES:
        tokens.append(left + right)
        allowed.append(True)
    specials = [EOS_TEXT, *(FIM_TEXTS if fim else ()), *CHAT_TEXTS]
    first_special = len(tokens)
    tokens.extend(specials)
    allowed.extend(False for _ in specials)
    types = [_TOKEN_NORMAL] * first_special + [_TOKEN_CONTROL] * len(specials)
    ids = {text: first_special + i for i, text in enumerate(specials)}
    return DemoVocabulary(
        tokens=tuple(tokens),
        token_types=tuple(types),
        merges=tuple(f"{left} {right}" for left, right in MERGES),
        eos=ids[EOS_TEXT],
        fim_prefix=ids.get(FIM_TEXTS[0]),
        fim_suffix=ids.get(FIM_TEXTS[1]),
        fim_middle=ids.get(FIM_TEXTS[2]),
        allowed=tuple(allowed),
    )


def write_demo_model(path: Path | str, *, seed: int = 0, fim: bool = True) -> Path:
    """Write the RANDOM-WEIGHTS demo GGUF to ``path`` (byte-identical for a seed); return the path."""
    import gguf  # imported here: only the built-in runtime and its tests need it

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    vocab = demo_vocabulary(fim=fim)
    rng = np.random.default_rng(seed)
    n_vocab = len(vocab.tokens)

    # Write next to the target and rename, so a half-written file is never loaded.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(str(partial), "llama")
    writer.add_name("cube-demo")
    writer.add_description(DEMO_MODEL_DESCRIPTION)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.token_types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.eos)  # GPT-2 style: one <|endoftext|> for both; never prepended
    writer.add_eos_token_id(vocab.eos)
    writer.add_eot_token_id(vocab.eos)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if vocab.fim_prefix is not None and vocab.fim_suffix is not None and vocab.fim_middle is not None:
        writer.add_uint32("tokenizer.ggml.fim_pre_token_id", vocab.fim_prefix)
        writer.add_uint32("tokenizer.ggml.fim_suf_token_id", vocab.fim_suffix)
        writer.add_uint32("tokenizer.ggml.fim_mid_token_id", vocab.fim_middle)
    writer.add_chat_template(CHAT_TEMPLATE)

    for name, tensor in _weights(rng, vocab, n_vocab):
        writer.add_tensor(name, tensor)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    partial.replace(target)
    return target


def _weights(rng: np.random.Generator, vocab: DemoVocabulary, n_vocab: int) -> list[tuple[str, np.ndarray]]:
    """Random float32 tensors in GGUF (numpy row-major, output dimension first) shapes."""

    def normal(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    embeddings = normal(n_vocab, N_EMBD)
    embeddings[:, 0] = _STEER
    output = normal(n_vocab, N_EMBD, std=1.0)
    output[:, 0] = [0.0 if ok else _BAN for ok in vocab.allowed]
    ones = np.ones(N_EMBD, dtype=np.float32)
    tensors = [("token_embd.weight", embeddings), ("output_norm.weight", ones), ("output.weight", output)]
    for block in range(N_LAYER):
        prefix = f"blk.{block}"
        tensors += [
            (f"{prefix}.attn_norm.weight", ones.copy()),
            (f"{prefix}.attn_q.weight", normal(N_EMBD, N_EMBD)),
            (f"{prefix}.attn_k.weight", normal(N_EMBD, N_EMBD)),
            (f"{prefix}.attn_v.weight", normal(N_EMBD, N_EMBD)),
            (f"{prefix}.attn_output.weight", normal(N_EMBD, N_EMBD)),
            (f"{prefix}.ffn_norm.weight", ones.copy()),
            (f"{prefix}.ffn_gate.weight", normal(N_FF, N_EMBD)),
            (f"{prefix}.ffn_up.weight", normal(N_FF, N_EMBD)),
            (f"{prefix}.ffn_down.weight", normal(N_EMBD, N_FF)),
        ]
    return tensors
