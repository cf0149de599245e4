"""Index synthetic chunks in a loop until killed: the subject of the kill test in test_index.py.

Usage: ``python index_killer.py INDEX_DIR MODE`` with MODE ``index`` (replace files, embed half of what
is pending) or ``compact`` (the same, plus removing files and forcing compaction every few rounds).
After each round it prints ``progress N`` and flushes, so the test knows work is under way and kills
it with SIGKILL while the next round runs. Vectors are a function of the content hash
(:func:`vector_for`), so the test can check that every stored row holds the right vector.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from cube_lsp.search.index import SearchIndex
from cube_lsp.search.types import Chunk, SourceFile

MODEL = "killer-model"
DIM = 24
FILES = 40
CHUNKS_PER_FILE = 25


def vector_for(content_hash: str) -> np.ndarray:
    """Return the made-up embedding of a content hash (deterministic)."""
    return np.random.default_rng(int(content_hash[:16], 16)).standard_normal(DIM).astype(np.float32)


def chunks_for(path: str, round_no: int) -> list[Chunk]:
    """Return a file's chunks for a round: most stay the same between rounds, a few change."""
    chunks = []
    for j in range(CHUNKS_PER_FILE):
        version = round_no if j % 5 == 0 else 0  # every fifth chunk changes each round
        text = f"def handler_{j}(request):\n    return process(request, {j}, {version})\n"
        chunks.append(Chunk(path, f"handler_{j}", "function", 1 + 3 * j, 2 + 3 * j, f"# {path}", text))
    return chunks


def run(directory: Path, mode: str) -> None:
    index = SearchIndex(directory, MODEL, DIM)
    for round_no in itertools.count(1):
        for n in range(FILES):
            path = f"src/module_{n}.py"
            source = SourceFile(path, 100 + round_no, round_no, "python")
            index.replace_file(source, f"{path}@{round_no}", chunks_for(path, round_no))
            pending = index.pending(CHUNKS_PER_FILE)
            half = pending[: max(1, len(pending) // 2)] if pending else []
            if half:
                hashes = [h for h, _ in half]
                index.store_embeddings(hashes, np.stack([vector_for(h) for h in hashes]))
        if mode == "compact" and round_no % 2 == 0:
            index.remove_files([f"src/module_{n}.py" for n in range(0, FILES, 3)])
            index.compact(force=True)
        print(f"progress {round_no}", flush=True)


if __name__ == "__main__":
    run(Path(sys.argv[1]), sys.argv[2])
