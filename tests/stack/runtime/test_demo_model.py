"""The RANDOM-WEIGHTS demo GGUF: deterministic, small, and loaded by the real llama.cpp."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cube_stack.runtime import CapabilityError, write_demo_model
from cube_stack.runtime.demo_model import CHAT_TEMPLATE, DEMO_MODEL_DESCRIPTION, demo_vocabulary
from cube_stack.runtime.llama import LlamaModel
from cube_stack.runtime.prompts import FimPrompt, FimTokens


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first = write_demo_model(tmp_path / "a.gguf", seed=7)
    again = write_demo_model(tmp_path / "b.gguf", seed=7)
    other = write_demo_model(tmp_path / "c.gguf", seed=8)
    assert _sha(first) == _sha(again) != _sha(other)
    assert first.stat().st_size < 1_000_000
    assert not list(tmp_path.glob(".*partial"))


def test_vocabulary_layout() -> None:
    vocab = demo_vocabulary()
    assert len(vocab.tokens) == 256 + len(vocab.merges) + 6
    assert vocab.tokens[ord("a")] == "a" and vocab.tokens[ord(" ")] == "Ġ" and vocab.tokens[10] == "Ċ"
    assert vocab.tokens[vocab.fim_prefix or 0] == "<|fim_prefix|>"
    assert vocab.tokens[vocab.eos] == "<|endoftext|>"
    assert not vocab.allowed[vocab.eos] and vocab.allowed[ord("x")] and not vocab.allowed[0xC3]
    assert demo_vocabulary(fim=False).fim_prefix is None


@pytest.fixture(scope="module")
def loaded(demo_model_path: Path) -> Iterator[LlamaModel]:
    model = LlamaModel("cube-demo:random", demo_model_path, n_ctx=512, n_threads=1)
    yield model
    model.close()


def test_llama_cpp_reads_the_metadata(loaded: LlamaModel) -> None:
    vocab = demo_vocabulary()
    facts = loaded.facts
    assert facts.fim == FimTokens(vocab.fim_prefix or -1, vocab.fim_suffix or -1, vocab.fim_middle or -1)
    assert facts.chat_template == CHAT_TEMPLATE
    assert facts.architecture == "llama" and facts.quantization == "F32"
    assert facts.metadata["general.description"] == DEMO_MODEL_DESCRIPTION
    assert "RANDOM WEIGHTS" in facts.metadata["general.description"]
    assert facts.parameter_count < 200_000 and facts.digest.startswith("sha256:")


def test_tokenise_round_trips_and_applies_merges(loaded: LlamaModel) -> None:
    text = "def add(a, b):\n    return a + b\n"
    tokens = loaded.tokenize(text)
    vocab = demo_vocabulary()
    assert vocab.tokens.index("def") in tokens and vocab.tokens.index("return") in tokens
    assert vocab.tokens.index("ĠĠ") in tokens  # the pre-tokenizer gives "   " + " return"
    assert loaded.detokenize(tokens) == text


def test_control_texts_are_tokens_only_when_asked(loaded: LlamaModel) -> None:
    vocab = demo_vocabulary()
    assert loaded.tokenize("<|fim_prefix|>", special=True) == [vocab.fim_prefix]
    assert vocab.fim_prefix not in loaded.tokenize("<|fim_prefix|>", special=False)


def test_fim_prompt_is_built_from_token_ids_and_user_text_cannot_spell_them(loaded: LlamaModel) -> None:
    vocab = demo_vocabulary()
    tokens = loaded.prompt_tokens(FimPrompt(prefix="x = <|fim_middle|>", suffix="\nprint(x)"))
    assert tokens[0] == vocab.fim_prefix and tokens[-1] == vocab.fim_middle
    assert tokens.count(vocab.fim_middle) == 1 and tokens.count(vocab.fim_suffix) == 1


def test_suffix_without_fim_tokens_is_a_capability_error(nofim_model_path: Path) -> None:
    model = LlamaModel("cube-demo:nofim", nofim_model_path, n_ctx=256, n_threads=1)
    try:
        assert model.facts.fim is None
        with pytest.raises(CapabilityError) as caught:
            model.prompt_tokens(FimPrompt("a", "b"))
        assert caught.value.code == "runtime.capability_missing"
    finally:
        model.close()


def test_a_missing_file_is_a_load_error(tmp_path: Path) -> None:
    from cube_stack.runtime import ModelLoadError

    with pytest.raises(ModelLoadError) as caught:
        LlamaModel("x", tmp_path / "missing.gguf")
    assert caught.value.code == "runtime.model_load_failed"


def test_a_corrupt_file_is_a_load_error(tmp_path: Path) -> None:
    from cube_stack.runtime import ModelLoadError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError):
        LlamaModel("x", bad)


def test_embedded_default_settings_generate_the_demo_model_once(tmp_path: Path) -> None:
    from cube_stack.runtime import DEMO_MODEL_NAME, MINILM_NAME, embedded_default_settings

    settings = embedded_default_settings(tmp_path)
    path = settings.models[DEMO_MODEL_NAME]
    assert path.parent == tmp_path / "models" and path.is_file() and settings.minilm
    assert settings.socket_path == (tmp_path / "runtime" / "runtime.sock").absolute()  # no TCP port
    assert settings.n_threads == 1
    stamp = path.stat().st_mtime_ns
    assert (
        embedded_default_settings(tmp_path, minilm=False).models[DEMO_MODEL_NAME].stat().st_mtime_ns == stamp
    )
    assert MINILM_NAME == "all-minilm:l6-v2"
