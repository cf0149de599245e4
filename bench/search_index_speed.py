"""Speed of the search index and ranking engine on synthetic chunks (no embedding model involved).

Prints: bookkeeping throughput (replace_file: chunking excluded, FTS terms and SQLite included) in
chunks/s and lines/s, vector storage throughput, query latency p50/p99 for hybrid, lexical-only and
vector-only search, the RSS of a fresh process that opens the index and answers the queries, and the
ranking agreement of int8 against float32 storage (top-10 overlap with exact float32 cosine).

    python bench/search_index_speed.py [--chunks 100000] [--dim 384] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from cube_lsp.search.index import SearchIndex
from cube_lsp.search.rank import RankOptions, hybrid_search
from cube_lsp.search.types import Chunk, SourceFile
from cube_lsp.search.vectors import VectorStore, normalise

# Query words: names that occur in code.
_WORD_TEXT = (
    "access account action adapter address agent alias alloc apply archive array async attach audit "
    "auth backend balance batch before binary bind block body bucket buffer build bundle cache call "
    "cancel cert channel check chunk claim class clean client clock close cluster codec column "
    "commit config connect context cookie copy count create cursor data decode default delete delta "
    "digest dispatch domain driver edge email encode engine entry error event expire export factory "
    "fetch field file filter flush format frame graph group handle hash header index input insert "
    "item join key label limit line link list load lock log lookup manager map match merge message "
    "meta module name node open option order output owner packet page parse patch path pending "
    "policy pool port prefix process proxy query queue range rate reader record refresh register "
    "release render request reset resolve response retry route rule scan schema scope score secret "
    "select send session signal size socket source split state status store stream sync table task "
    "text thread token trace transform tree type update user validate value version view wait watch "
    "window worker write "
)
WORDS = _WORD_TEXT.split()
WINDOW = 12  # lines per chunk: about what the chunker makes of a function
BATCH_FILES = 100  # files per transaction, as an indexer would group them with SearchIndex.batch()


def source_windows(limit: int) -> list[tuple[SourceFile, list[Chunk]]]:
    """Cut the interpreter's standard library into files of 12-line chunks (real code, real term mix).

    A second pass with windows shifted by half a window gives new content when one pass is not enough.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(stdlib.rglob("*.py")):
        try:
            texts.append((path.relative_to(stdlib).as_posix(), path.read_text("utf-8").splitlines()))
        except (UnicodeDecodeError, OSError):
            continue
    files: list[tuple[SourceFile, list[Chunk]]] = []
    total = 0
    for shift in (0, WINDOW // 2, WINDOW // 3, WINDOW // 4):
        for rel, lines in texts:
            path = f"pass{shift}/{rel}"
            chunks = []
            for start in range(shift, len(lines), WINDOW):
                body = "\n".join(lines[start : start + WINDOW])
                if body.strip():
                    first = lines[start].strip()[:60]
                    chunks.append(
                        Chunk(path, first or None, "lines", start + 1, start + WINDOW, f"# {path}", body)
                    )
            chunks = chunks[: limit - total]
            if chunks:
                files.append((SourceFile(path, 1000, 1, "python"), chunks))
                total += len(chunks)
            if total >= limit:
                return files
    return files


def build(directory: Path, chunks: int, dim: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    index = SearchIndex(directory, "bench", dim)
    all_files = source_windows(chunks)
    count = sum(len(cs) for _, cs in all_files)
    lines = sum(c.text.count("\n") + 1 for _, cs in all_files for c in cs)
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(all_files), BATCH_FILES):
        with index.batch():
            for source, file_chunks in all_files[start : start + BATCH_FILES]:
                index.replace_file(source, f"h{source.path}", file_chunks)
    bookkeeping, bookkeeping_cpu = time.perf_counter() - t0, time.process_time() - c0
    centres = normalise(rng.standard_normal((500, dim)))
    t0 = time.perf_counter()
    while batch := index.pending(1024):
        hashes = [h for h, _ in batch]
        picks = centres[rng.integers(0, len(centres), len(hashes))]
        vectors = picks + 0.6 * rng.standard_normal((len(hashes), dim)).astype(np.float32) / np.sqrt(dim)
        index.store_embeddings(hashes, vectors)
    storing = time.perf_counter() - t0
    stats = index.stats()
    index.close()
    return {
        "files": len(all_files),
        "chunks": count,
        "distinct_embedded": stats.vector_rows,
        "lines": lines,
        "bookkeeping_s": bookkeeping,
        "chunks_per_s": count / bookkeeping,
        "lines_per_s": lines / bookkeeping,
        "lines_per_cpu_s": lines / bookkeeping_cpu,
        "store_vectors_per_s": stats.vector_rows / storing,
    }


def rss_mb() -> tuple[float, float]:
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def query_phase(directory: Path, dim: int, queries: int) -> dict[str, float]:
    """Open the index in this (fresh) process and time the queries; report RSS."""
    rng = np.random.default_rng(1)
    index = SearchIndex(directory, "bench", dim)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 7)))) for _ in range(queries)]
    vectors = rng.standard_normal((queries, dim)).astype(np.float32)
    result: dict[str, float] = {}
    for mode in ("hybrid", "lexical", "vector"):
        options = RankOptions(mode=mode)  # type: ignore[arg-type]
        hybrid_search(index, texts[0], vectors[0], 10, options=options)  # warm the page cache
        times, cpu = [], []
        for text, vector in zip(texts, vectors, strict=True):
            t0, c0 = time.perf_counter(), time.process_time()
            hybrid_search(index, text, vector, 10, options=options)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        result[f"{mode}_p50_ms"] = 1000 * float(np.percentile(times, 50))
        result[f"{mode}_p99_ms"] = 1000 * float(np.percentile(times, 99))
        result[f"{mode}_cpu_p50_ms"] = 1000 * float(np.percentile(cpu, 50))
    result["rss_mb"], result["peak_rss_mb"] = rss_mb()
    index.close()
    return result


def quantisation_agreement(dim: int, rows: int = 20_000, queries: int = 100) -> dict[str, float]:
    """Top-10 overlap of int8 storage with exact float32 cosine, on random and on clustered data."""
    rng = np.random.default_rng(2)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("random", "clustered"):
            if kind == "random":
                data = normalise(rng.standard_normal((rows, dim)))
            else:  # near-duplicates, as code embeddings are: the hard case for quantisation
                centres = rng.standard_normal((200, dim))
                data = normalise(centres[rng.integers(0, 200, rows)] + 0.3 * rng.standard_normal((rows, dim)))
            store = VectorStore(Path(tmp) / f"{kind}.bin", dim, "int8")
            store.append(data)
            overlap = []
            for q in data[rng.integers(0, rows, queries)] + 0.2 * rng.standard_normal((queries, dim)):
                exact = set(np.argsort(-(data @ normalise(q[None])[0]))[:10])
                found = set(store.search(q, k=10)[0].tolist())
                overlap.append(len(exact & found) / 10)
            out[f"int8_top10_overlap_{kind}"] = float(np.mean(overlap))
            store.close()
    return out


def exact_scan_ms(dim: int, rows: int = 100_000, repeats: int = 30) -> dict[str, float]:
    """Time one exact scan of the array alone, per storage type, to extrapolate where ANN pays."""
    rng = np.random.default_rng(3)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = rng.standard_normal((rows, dim)).astype(np.float32)
        for row_type in ("int8", "float32"):
            store = VectorStore(Path(tmp) / f"{row_type}.bin", dim, row_type)  # type: ignore[arg-type]
            store.append(data)
            store.search(data[0], k=80)
            times = []
            for q in data[:repeats]:
                t0 = time.perf_counter()
                store.search(q, k=80)
                times.append(time.perf_counter() - t0)
            out[f"{row_type}_scan_ms_per_100k"] = 1000 * float(np.median(times)) * 100_000 / rows
            store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--query-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.query_only:
        print(json.dumps(query_phase(args.query_only, args.dim, args.queries)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "index"
        figures = build(directory, args.chunks, args.dim)
        figures["build_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures["db_mb"] = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--query-only",
                str(directory),
                "--dim",
                str(args.dim),
                "--queries",
                str(args.queries),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ,
        )
        figures.update(json.loads(child.stdout.strip().splitlines()[-1]))
    figures.update(quantisation_agreement(args.dim))
    figures.update(exact_scan_ms(args.dim))
    figures["load_average_1m"] = os.getloadavg()[0]  # other work on the machine inflates wall times
    for key, value in figures.items():
        print(f"{key:32} {value:12.1f}" if isinstance(value, float) else f"{key:32} {value:12}")


if __name__ == "__main__":
    main()
