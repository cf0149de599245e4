"""Embeddings from the GGUF conversion of all-MiniLM-L6-v2, served by llama.cpp, against today's vectors.

The conversion is real (llama.cpp's ``convert_hf_to_gguf.py`` from llama-cpp-python's sources, which
``hal/scripts/fetch-llama-cpp-src.sh`` fetches; without them these tests fail and say so), done once per
session and once more to check it is deterministic. Vectors are compared with sentence-transformers'
on the same texts; the standalone runtime is a real subprocess on a Unix socket with a model hash list.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from cube_stack.hal.embedding_model import (
    FETCH_SCRIPT,
    MAX_INPUT_TOKENS_KEY,
    LlamaCppSourcesMissingError,
    convert_minilm,
    find_converter,
    main,
)
from cube_stack.runtime.builtin import BuiltinSettings
from cube_stack.runtime.demo_model import write_demo_model
from cube_stack.runtime.embeddings import SentenceEmbedder, load_minilm, minilm_model_dir
from cube_stack.runtime.errors import BadRequestError, RuntimeSettingsError
from cube_stack.runtime.gguf_embeddings import LlamaEmbedder

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
# 1 - cosine measured at most 3e-6 (f16 weights, llama.cpp on CPU); 1e-4 leaves a 30x margin.
MIN_COSINE = 0.9999


@pytest.fixture(scope="session")
def converter() -> Path:
    try:
        return find_converter()
    except LlamaCppSourcesMissingError as exc:
        pytest.fail(exc.message)  # a missing prerequisite is a failure here, never a skip


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory, converter: Path) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("gguf") / "all-minilm-l6-v2.gguf"
    return path, convert_minilm(path, converter=converter)


@pytest.fixture(scope="module")
def sentence() -> Iterator[SentenceEmbedder]:
    embedder = load_minilm(threads=1)
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def llama(minilm_gguf: tuple[Path, str]) -> Iterator[LlamaEmbedder]:
    embedder = LlamaEmbedder("all-minilm-gguf:l6-v2", minilm_gguf[0], threads=1)
    yield embedder
    embedder.close()


def varied_texts() -> list[str]:
    """At least 60 distinct texts: code from this repository, prose, identifiers, non-ASCII, long inputs."""
    sources = sorted((REPO / "server-stack" / "cube_stack" / "runtime").glob("*.py"))
    sources += sorted((REPO / "cube_wire").glob("*.py"))
    chunks: list[str] = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for start in (len(text) // 3, 2 * len(text) // 3):
            if len(text) > start + 1500 and len(chunks) < 30:
                chunks.append(text[start : start + 1500])  # ~400 tokens: cut at 256 by both
    prose = [
        "The proxy checks every request against the rate limit before it reaches the model.",
        "Embeddings place similar sentences near each other in a vector space.",
        "A confidential VM keeps its memory encrypted from the host that runs it.",
        "The quick brown fox jumps over the lazy dog.",
        "Rain is expected in the north this afternoon, clearing by the evening.",
        "She opened the window and listened to the harbour wake up.",
        "How do I reverse a linked list in place?",
        "What is the capital of Australia?",
        "Measure twice, cut once.",
        "The committee postponed its decision until the next quarterly meeting.",
        "Café au lait, naïve façade, Ærøskøbing and São Paulo.",
        "日本語の文章も埋め込みに変換できます。",
        "Здравствуйте, как у вас дела сегодня?",
        "emoji in text 🚀 should not break the tokenizer ✨",
    ]
    identifiers = [
        "normalize_model_name",
        "BuiltinSettings",
        "pin_model",
        "x",
        "__init__",
        "HTTP_404_NOT_FOUND",
        "getElementById",
        "snake_case_vs_camelCase",
        "sha256",
        "EmbeddingResult.truncated",
        "",
    ]
    snippets = [
        "def add(a, b):\n    return a + b",
        "for (let i = 0; i < items.length; i++) { total += items[i]; }",
        "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1;",
        'fn main() { println!("hello"); }',
        "#include <stdio.h>\nint main(void) { return 0; }",
        "[SEP] [CLS] typed as text",
    ]
    long_text = " ".join(f"paragraph {i} repeats the word embedding and adds token{i}" for i in range(60))
    texts = chunks + prose + identifiers + snippets + [long_text]
    assert len(texts) == len(set(texts)) >= 60
    return texts


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def nearest(vectors: np.ndarray) -> np.ndarray:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def test_missing_sources_fail_naming_the_fetch_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LlamaCppSourcesMissingError, match=FETCH_SCRIPT) as caught:
        find_converter(tmp_path / "no-sources", environ={})
    assert caught.value.code == "hal.llama_cpp_sources_missing"
    assert (REPO / FETCH_SCRIPT).is_file()
    out = tmp_path / "out.gguf"
    assert main(["-o", str(out), "--llama-cpp-src", str(tmp_path / "no-sources")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hal.llama_cpp_sources_missing" in err and FETCH_SCRIPT in err
    assert not out.exists()


def test_conversion_is_deterministic(minilm_gguf: tuple[Path, str], converter: Path, tmp_path: Path) -> None:
    path, digest = minilm_gguf
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    # Another output path, and the model read from a copy elsewhere with fresh mtimes.
    copy = shutil.copytree(minilm_model_dir(), tmp_path / "elsewhere" / "minilm")
    for file in copy.rglob("*"):
        os.utime(file)
    again = convert_minilm(tmp_path / "out" / "second.gguf", converter=converter, model_dir=copy)
    assert again == digest


def test_the_file_states_the_input_limit_sentence_transformers_uses(
    minilm_gguf: tuple[Path, str], sentence: SentenceEmbedder, llama: LlamaEmbedder
) -> None:
    from gguf import GGUFReader

    fields = GGUFReader(minilm_gguf[0]).fields
    assert fields[MAX_INPUT_TOKENS_KEY].contents() == sentence.max_tokens == 256
    assert fields["bert.context_length"].contents() == 512  # the position table, unchanged
    assert fields["general.file_type"].contents() == 1  # F16
    assert (llama.max_tokens, llama.dimensions) == (sentence.max_tokens, sentence.dimensions)
    assert llama.facts.quantization == "F16" and llama.facts.architecture == "bert"
    assert llama.facts.digest == f"sha256:{minilm_gguf[1]}"


def test_vectors_match_sentence_transformers(sentence: SentenceEmbedder, llama: LlamaEmbedder) -> None:
    texts = varied_texts()
    assert llama.count_tokens(texts) == sentence.count_tokens(texts)
    expected = sentence.embed(texts)
    got = llama.embed(texts)
    assert got.truncated == expected.truncated and len(got.truncated) >= 25  # the chunks, the long text
    assert (got.token_count, got.max_tokens) == (expected.token_count, expected.max_tokens)
    ours, theirs = np.array(got.vectors), np.array(expected.vectors)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    similarity = cosines(ours, theirs)
    assert similarity.min() >= MIN_COSINE, (similarity.min(), texts[int(similarity.argmin())][:80])
    agreeing = (nearest(ours) == nearest(theirs)).mean()
    assert agreeing >= 0.95


def test_order_and_batching_do_not_change_a_vector(llama: LlamaEmbedder) -> None:
    texts = varied_texts()[::4]  # chunks cut at 256 tokens, prose, identifiers, code
    together = np.array(llama.embed(texts).vectors)
    alone = np.array([llama.embed([text]).vectors[0] for text in texts[::-1]])[::-1]
    assert cosines(together, alone).min() >= 0.99999


def test_an_over_long_input_without_truncation_is_refused_like_today(
    sentence: SentenceEmbedder, llama: LlamaEmbedder
) -> None:
    long_text = varied_texts()[0]
    for embedder in (sentence, llama):
        with pytest.raises(BadRequestError, match="reads at most 256") as caught:
            embedder.embed(["short", long_text], truncate=False)
        assert caught.value.code == "runtime.bad_request"


def test_a_hash_list_refuses_an_embedder_directory_it_cannot_cover(tmp_path: Path) -> None:
    with pytest.raises(RuntimeSettingsError, match="sentence-transformers directories"):
        BuiltinSettings(
            models={"demo": tmp_path / "demo.gguf"},
            embedders={"minilm": minilm_model_dir()},
            model_hashes=frozenset({"0" * 64}),
        )


def _serve(demo: Path, gguf: Path, hashes: Path, socket: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUBE_RUNTIME_")}
    argv = [sys.executable, "-m", "cube_stack.runtime", "--model", f"demo={demo}"]
    argv += ["--embedder", f"all-minilm-gguf:l6-v2={gguf}", "--model-hashes", str(hashes)]
    argv += ["--socket", str(socket), "--no-minilm", "--threads", "1", "--embed-threads", "1"]
    return subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)


def _wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("runtime ready: "):
            return
    raise AssertionError(f"the runtime exited {process.wait()} before it was ready")


def _floats(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def test_the_standalone_runtime_serves_the_listed_gguf_and_refuses_a_changed_byte(
    minilm_gguf: tuple[Path, str], sentence: SentenceEmbedder, tmp_path: Path
) -> None:
    gguf = tmp_path / "models" / "all-minilm-l6-v2.gguf"
    gguf.parent.mkdir()
    shutil.copyfile(minilm_gguf[0], gguf)
    demo = write_demo_model(tmp_path / "models" / "demo.gguf", seed=0)
    demo_digest = hashlib.sha256(demo.read_bytes()).hexdigest()
    hashes = tmp_path / "model-hashes.sha256"
    hashes.write_text(f"{minilm_gguf[1]}  all-minilm-l6-v2.gguf\n{demo_digest}  demo.gguf\n")
    texts = ["def add(a, b): return a + b", "function that sums two numbers", varied_texts()[0]]
    expected = np.array(sentence.embed(texts).vectors)

    socket = tmp_path / "run" / "runtime.sock"
    runtime = _serve(demo, gguf, hashes, socket)
    try:
        _wait_ready(runtime)
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://runtime", timeout=120) as client:
            tags = client.get("/api/tags").json()
            listed = {model["name"]: model for model in tags["models"]}
            assert listed["all-minilm-gguf:l6-v2"]["digest"] == minilm_gguf[1]
            show = client.post("/api/show", json={"model": "all-minilm-gguf:l6-v2"}).json()
            assert show["capabilities"] == ["embedding"]
            assert show["model_info"]["bert.embedding_length"] == 384

            ollama = client.post("/api/embed", json={"model": "all-minilm-gguf:l6-v2", "input": texts}).json()
            assert ollama["truncated_inputs"] == [2] and ollama["max_input_tokens"] == 256
            assert cosines(np.array(ollama["embeddings"]), expected).min() >= MIN_COSINE

            body = {"model": "all-minilm-gguf:l6-v2", "input": texts}
            openai = client.post("/v1/embeddings", json=body).json()
            encoded = client.post("/v1/embeddings", json=body | {"encoding_format": "base64"}).json()
            floats = [item["embedding"] for item in openai["data"]]
            assert cosines(np.array(floats), expected).min() >= MIN_COSINE
            assert [_floats(item["embedding"]) for item in encoded["data"]] == floats  # bit for bit
            assert openai["usage"]["prompt_tokens"] == ollama["prompt_eval_count"]
    finally:
        runtime.terminate()
        runtime.communicate(timeout=30)
    assert runtime.returncode == 0

    data = bytearray(gguf.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte, in the middle of the weights
    gguf.write_bytes(bytes(data))
    changed = _serve(demo, gguf, hashes, tmp_path / "run2" / "runtime.sock")
    _, err = changed.communicate(timeout=120)
    assert changed.returncode == 1, err
    assert "runtime.model_not_allowed" in err and str(gguf) in err
    assert hashlib.sha256(bytes(data)).hexdigest() in err and "runtime ready" not in err


def test_the_image_allows_exactly_this_conversion(minilm_gguf: tuple[Path, str]) -> None:
    """hal/model-hashes.txt (what the CVM image serves) lists the hash today's conversion gives."""
    listed = (Path(__file__).resolve().parents[3] / "hal" / "model-hashes.txt").read_text()
    _, digest = minilm_gguf
    assert f"{digest}  all-minilm:l6-v2.embedding.gguf" in listed.splitlines()
