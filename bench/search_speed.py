"""Speed of workspace search, one run with its baselines: the figures of issue 10's Speed acceptance.

1. Index bookkeeping without embedding on a 300k-line tree (walk + read + chunk + index, ``embed=None``),
   against walking and reading the same tree only, and against reading every file raw (``wc -l``).
2. Embedding throughput through a real ``cube-stack up`` (attested client): the engine's ``update()``
   against the same chunk texts sent straight to ``CubeClient.embed`` in the same batches.
3. Re-index after editing one function of one file: the chunks re-embedded (checked against the file's
   changed chunks) and the time, against an update with nothing changed.
4. Query latency p50/p99 and RSS at 100k chunks, with the index and fresh-process query phase of
   ``bench/search_index_speed.py``, against one exact scan of the vector array and against the RSS of
   a process that only imports the search modules.

The 300k-line tree: the interpreter's standard library ``.py`` files in sorted path order (site-packages
and caches left out), copied until 300k lines. The embedding tree: the first of those files, in the
same order, until the embedding chunk count.

    python bench/search_speed.py [--lines 300000] [--embed-chunks 600] [--chunks 100000] [--queries 300]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import search_index_speed
from _search_corpus import load_average, running_stack, stdlib_dir, table

from cube_lsp.cube.client import CubeClient
from cube_lsp.search.chunker import ChunkOptions, chunk_source
from cube_lsp.search.engine import WorkspaceSearch
from cube_lsp.search.files import WalkOptions, read_source, walk_workspace
from cube_lsp.search.types import SkipReason
from cube_lsp.settings import Settings

EMBED_BATCH = 32  # the engine's default SearchOptions.embed_batch, used for the raw baseline too
DIM = 384  # all-MiniLM-L6-v2's width, for the synthetic 100k index
_T = TypeVar("_T")


@dataclass
class Row:
    """One line of the table."""

    figure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float | None
    target: str = ""

    def cells(self) -> list[object]:
        ratio = self.value / self.baseline_value if self.baseline_value else None
        return [
            self.figure,
            self.value,
            self.unit,
            self.baseline,
            "-" if self.baseline_value is None else self.baseline_value,
            "-" if ratio is None else f"{ratio:.2f}x",
            self.target,
        ]


def copy_tree(destination: Path, max_lines: int) -> tuple[int, int]:
    """Copy standard library files, sorted by path, until ``max_lines`` lines; return (files, lines)."""
    stdlib = stdlib_dir()
    files = lines = 0
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if lines >= max_lines:
            break
        if "site-packages" in rel.parts or "__pycache__" in rel.parts:
            continue
        data = path.read_bytes()
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files += 1
        lines += data.count(b"\n")
    return files, lines


def raw_read(root: Path) -> int:
    """Read every file under ``root`` and count its lines, as ``wc -l`` would."""
    return sum(path.read_bytes().count(b"\n") for path in root.rglob("*") if path.is_file())


def walk_and_read(root: Path) -> int:
    """Walk ``root`` as the indexer does and read (decode, check) every admitted file; return the lines."""
    options = WalkOptions()
    lines = 0
    for file in walk_workspace(root, options).files:
        text = read_source(root, file, options)
        if not isinstance(text, SkipReason):
            lines += text.count("\n")
    return lines


def walk_read_and_chunk(root: Path) -> int:
    """Walk, read and chunk every admitted file as the indexer does, without storing; return the lines."""
    options = WalkOptions()
    lines = 0
    for file in walk_workspace(root, options).files:
        text = read_source(root, file, options)
        if not isinstance(text, SkipReason):
            chunk_source(file.path, text, file.language, ChunkOptions())
            lines += text.count("\n")
    return lines


def timed(function: Callable[..., _T], *args: Any) -> tuple[_T, float, float]:
    """Return (result, wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bookkeeping(work: Path, max_lines: int) -> list[Row]:
    """Figure 1: lexical-only indexing of a 300k-line tree against walking and reading it."""
    tree = work / "tree"
    files, copied = copy_tree(tree, max_lines)
    print(f"tree: {files} standard library files, {copied:,} lines, copied to {tree}")
    raw_read(tree)  # warm the page cache so no row pays for the disk
    raw_lines, raw_s, _ = timed(raw_read, tree)
    lines, read_s, read_cpu = timed(walk_and_read, tree)
    _, chunk_s, _ = timed(walk_read_and_chunk, tree)

    async def index() -> tuple[int, int]:
        search = WorkspaceSearch(tree, embed=None, model=None, index_dir=work / "lexical-index")
        try:
            report = await search.update()
            stats = search.stats
            return report.files_seen, stats.chunks if stats else 0
        finally:
            await search.aclose()

    (indexed_files, chunks), index_s, index_cpu = timed(asyncio.run, index())
    print(
        f"indexed {indexed_files} files, {lines:,} admitted lines, {chunks:,} chunks in {index_s:.1f} s "
        f"({index_cpu:.1f} CPU s); walk + read alone {read_s:.2f} s; walk + read + chunk {chunk_s:.2f} s; "
        f"raw read {raw_s:.2f} s"
    )
    return [
        Row(
            "index bookkeeping (walk+read+chunk+index)",
            lines / index_s,
            "lines/s",
            "walk + read",
            lines / read_s,
            ">= 100k",
        ),
        Row("  same, per CPU second", lines / index_cpu, "lines/CPU s", "walk + read", lines / read_cpu),
        Row("  same, vs raw read (wc -l)", lines / index_s, "lines/s", "raw read", raw_lines / raw_s),
        Row(
            "  same, vs walk+read+chunk (no index)",
            lines / index_s,
            "lines/s",
            "walk+read+chunk",
            lines / chunk_s,
        ),
    ]


def embedding_tree(source: Path, destination: Path, chunks: int) -> tuple[int, list[str]]:
    """Copy the first files of ``source`` (sorted) until ``chunks`` chunks; return (files, chunk texts)."""
    texts: list[str] = []
    files = 0
    for path in sorted(source.rglob("*.py")):
        if len(texts) >= chunks:
            break
        rel = path.relative_to(source).as_posix()
        text = path.read_text("utf-8")
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, "utf-8")
        texts += [chunk.embed_text for chunk in chunk_source(rel, text, "python", ChunkOptions())]
        files += 1
    return files, texts


def _editable_function(text: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """Return the last module-level function with a body of 3+ statements, or None."""
    functions = [
        node
        for node in ast.parse(text).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and len(node.body) >= 3
    ]
    return functions[-1] if functions else None


def file_to_edit(root: Path) -> str:
    """Return the last file of the tree (sorted) that has a function :func:`edit_one_function` can edit."""
    for path in sorted(root.rglob("*.py"), reverse=True):
        if _editable_function(path.read_text("utf-8")) is not None:
            return path.relative_to(root).as_posix()
    raise RuntimeError(f"no editable function under {root}")


def edit_one_function(path: Path, marker: str) -> str:
    """Add a statement at the top of one function's body (see :func:`_editable_function`); return its name."""
    text = path.read_text("utf-8")
    function = _editable_function(text)
    assert function is not None
    first = function.body[0]
    lines = text.splitlines(keepends=True)
    lines.insert(
        first.lineno - 1, f"{' ' * first.col_offset}{marker} = None  # edited by bench/search_speed.py\n"
    )
    path.write_text("".join(lines), "utf-8")
    return function.name


class RecordingEmbed:
    """The engine's embed callable: the stack, plus a record of every text sent."""

    def __init__(self, client: CubeClient, model: str) -> None:
        self._embed = partial(client.embed, model=model)
        self.sent: list[str] = []

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.sent += texts
        return await self._embed(texts)


async def embedding_figures(work: Path, settings: Settings, chunks: int) -> list[Row]:
    """Figures 2 and 3, through the stack: embedding throughput and the re-index after one edit."""
    root = work / "embed-tree"
    files, texts = embedding_tree(work / "tree", root, chunks)
    print(f"embedding tree: the first {files} files of the tree, {len(texts)} chunks")
    model = settings.models.embedding
    assert model
    async with CubeClient(settings) as client:
        await client.embed(texts[:EMBED_BATCH], model=model)  # attest and warm the model up, untimed
        started = time.perf_counter()
        for start in range(0, len(texts), EMBED_BATCH):
            await client.embed(texts[start : start + EMBED_BATCH], model=model)
        raw_rate = len(texts) / (time.perf_counter() - started)
        embed = RecordingEmbed(client, model)
        search = WorkspaceSearch(root, embed=embed, model=model, index_dir=work / "embed-index")
        try:
            started = time.perf_counter()
            report = await search.update()
            engine_s = time.perf_counter() - started
            engine_rate = report.chunks_embedded / engine_s
            print(
                f"engine: {report.chunks_embedded} chunks embedded in {engine_s:.1f} s "
                "(walk and chunking included)"
            )

            started = time.perf_counter()
            noop = await search.update()
            noop_s = time.perf_counter() - started
            assert noop.chunks_embedded == 0, noop

            rows = [
                Row(
                    "embedding throughput (engine update)",
                    engine_rate,
                    "chunks/s",
                    "raw client.embed",
                    raw_rate,
                ),
            ]
            rel = file_to_edit(root)
            path = root / rel
            for how in ("update() rescan", "update_paths() (didSave)"):
                before = {c.content_hash for c in chunk_source(rel, path.read_text("utf-8"), "python")}
                name = edit_one_function(path, f"_bench_edit_{len(rows)}")
                after = chunk_source(rel, path.read_text("utf-8"), "python")
                changed = {c.content_hash for c in after} - before
                embed.sent.clear()
                started = time.perf_counter()
                if how.startswith("update()"):
                    embedded = (await search.update()).chunks_embedded
                else:
                    embedded = await search.update_paths([rel])
                seconds = time.perf_counter() - started
                sent = {hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in embed.sent}
                only_changed = sent == changed and len(embed.sent) == embedded
                print(
                    f"edit {rel}:{name} then {how}: {embedded} chunk(s) re-embedded of the file's "
                    f"{len(after)}; the file's changed chunks: {len(changed)}; texts sent: "
                    f"{len(embed.sent)}, exactly the changed chunks: {'yes' if only_changed else 'NO'}; "
                    f"{seconds * 1000:.0f} ms"
                )
                rows.append(
                    Row(
                        f"re-index after one edit, {how}",
                        seconds * 1000,
                        "ms",
                        "update(), no change",
                        noop_s * 1000,
                    )
                )
                rows.append(
                    Row(
                        "  chunks re-embedded",
                        float(embedded),
                        "chunks",
                        "file's changed chunks",
                        float(len(changed)),
                        "only those",
                    )
                )
            return rows
        finally:
            await search.aclose()


def import_rss_mb() -> float:
    """RSS of a fresh process that imports the search modules and numpy, and opens nothing."""
    code = (
        "import numpy, cube_lsp.search.index, cube_lsp.search.rank, pathlib\n"
        "s = pathlib.Path('/proc/self/status').read_text()\n"
        "print(int(s.split('VmRSS:')[1].split()[0]) / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def latency_figures(work: Path, chunks: int, queries: int) -> list[Row]:
    """Figure 4: query latency and RSS at ``chunks`` chunks, with bench/search_index_speed.py's approach."""
    directory = work / "index-100k"
    started = time.perf_counter()
    built = search_index_speed.build(directory, chunks, DIM)
    print(
        f"100k index (search_index_speed.build): {built['chunks']:,} synthetic-vector chunks of stdlib "
        f"windows in {time.perf_counter() - started:.1f} s"
    )
    command = [sys.executable, search_index_speed.__file__, "--query-only", str(directory)]
    command += ["--dim", str(DIM), "--queries", str(queries)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    scan = search_index_speed.exact_scan_ms(DIM, rows=chunks)["int8_scan_ms_per_100k"] * chunks / 100_000
    base_rss = import_rss_mb()
    label = f"{chunks // 1000}k chunks"
    rows = []
    for mode in ("hybrid", "lexical", "vector"):
        target = "p50 <= 30 ms" if mode == "hybrid" else ""
        rows.append(
            Row(f"query p50, {mode}, {label}", found[f"{mode}_p50_ms"], "ms", "one int8 scan", scan, target)
        )
        rows.append(Row(f"query p99, {mode}, {label}", found[f"{mode}_p99_ms"], "ms", "one int8 scan", scan))
    rows.append(
        Row(
            f"RSS after {queries}x3 queries, {label}",
            found["rss_mb"],
            "MB",
            "imports only",
            base_rss,
            "<= 300",
        )
    )
    rows.append(Row(f"peak RSS, {label}", found["peak_rss_mb"], "MB", "imports only", base_rss, "<= 300"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000, help="lines of the bookkeeping tree")
    parser.add_argument("--embed-chunks", type=int, default=600, help="chunks embedded through the stack")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks of the latency index")
    parser.add_argument("--queries", type=int, default=300, help="queries per mode at 100k chunks")
    args = parser.parse_args()
    bench_started = time.perf_counter()
    print(f"search_speed: python {sys.version.split()[0]}, tree from {stdlib_dir()}")
    print(f"load average at start: {load_average()}")
    work = Path(tempfile.mkdtemp(prefix="cube-search-speed-"))
    try:
        rows = bookkeeping(work, args.lines)
        print(f"load average: {load_average()}")
        with running_stack() as (_stack, settings, _path):
            print(f"stack: cube-stack up, embedding model {settings.models.embedding!r}")
            rows += asyncio.run(embedding_figures(work, settings, args.embed_chunks))
        print(f"load average: {load_average()}")
        rows += latency_figures(work, args.chunks, args.queries)
        print()
        headers = ["figure", "value", "unit", "baseline", "baseline value", "ratio", "target"]
        print(table(headers, [row.cells() for row in rows]))
        print()
        print(f"load average at end: {load_average()}")
        print(f"bench took {time.perf_counter() - bench_started:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
