"""Search quality on the standard library: MRR@10, Recall@1 and Recall@5 for lexical, vector and hybrid.

The query set: for each documented public function or method of a deterministic subset of the
interpreter's standard library (modules in a seeded order, up to a line budget so the copy embeds in
a few minutes on a small CPU: 42k lines are about 4k chunks), the query is the first sentence of its
docstring and the target is that function. The indexed copy has every docstring removed, so no
query is found verbatim. The copy is indexed once with :class:`WorkspaceSearch`, embedding through a
real ``cube-stack up`` (attested client, SIMULATED attestation on loopback), then every query runs in
the three ranking modes.

    python bench/search_quality.py [--max-lines 42000] [--modules N] [--max-queries N] [--seed 10]
                                   [--keep DIR] [--also-batch-cli]

``--also-batch-cli`` then runs ``cube search --batch FILE --json`` on the same copy (reusing the index
through the same cache directory) and checks its hybrid hits equal the in-process ones. It sends the
first ``--cli-queries`` (50) only: the CLI embeds one query per request and the stack's proxy allows
a user a burst of 60 requests (600 a minute), beyond which ``cube search`` fails with HTTP 429.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from _search_corpus import (
    Target,
    docstring_queries,
    drop_ambiguous,
    load_average,
    running_stack,
    stdlib_dir,
    stdlib_units,
    strip_docstrings,
    table,
)

from cube_lsp.cube.attested import AttestationStatus, make_client_transport
from cube_lsp.cube.client import CubeClient
from cube_lsp.search.chunker import ChunkOptions, chunk_source
from cube_lsp.search.engine import IndexProgress, WorkspaceSearch
from cube_lsp.search.files import WalkOptions, walk_workspace
from cube_lsp.search.index import index_dir_for
from cube_lsp.search.rank import RankOptions
from cube_lsp.search.types import Hit
from cube_lsp.settings import Settings

MODES = ("lexical", "vector", "hybrid")
LIMIT = 10
SINGLE_EMBEDS = 20  # single-query embedding requests timed (well under the proxy's burst of 60)
CLI_QUERIES = 50  # `cube search --batch` embeds one query per request: stay under the burst of 60
RULE = (
    "a hit is correct when its path equals the target's path and its line range contains the "
    "target function's `def` line (in the docstring-free copy)"
)


@dataclass
class Corpus:
    """The docstring-free copy and its queries."""

    root: Path
    modules: list[str]
    files: int
    chunks: int
    lines: int
    targets: list[Target]
    candidates: int  # queries before the ambiguity filter and the --max-queries sample


@dataclass
class ModeResult:
    """The ranks found for one mode (None: not in the top 10) and the query latencies."""

    ranks: list[int | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    hits: list[list[Hit]] = field(default_factory=list)


def build_corpus(
    root: Path, *, seed: int, max_lines: int, modules: int | None, max_queries: int | None
) -> Corpus:
    """Copy a seeded subset of the standard library into ``root`` without docstrings; collect the queries.

    Modules are taken in a seeded shuffle of their sorted names; a module that would take the copy over
    ``max_lines`` is passed over (``--modules N`` stops after N modules instead of at the budget). The
    budget is in lines, not chunks, so the query set depends on the interpreter and the seed only, not
    on the chunker's version.
    """
    stdlib = stdlib_dir()
    units = stdlib_units(stdlib)
    random.Random(seed).shuffle(units)
    chosen: list[str] = []
    targets: list[Target] = []
    chunks = lines = 0
    options = ChunkOptions()
    for name, paths in units:
        if modules is not None and len(chosen) >= modules:
            break
        copies: list[tuple[str, str, str]] = []
        unit_chunks = unit_lines = 0
        for path in paths:
            try:
                original = path.read_text("utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            stripped = strip_docstrings(original)
            if stripped is None:
                continue
            rel = path.relative_to(stdlib).as_posix()
            copies.append((rel, original, stripped))
            unit_lines += stripped.count("\n")
            unit_chunks += len(chunk_source(rel, stripped, "python", options))
        if not copies or (modules is None and lines + unit_lines > max_lines):
            continue
        chosen.append(name)
        chunks += unit_chunks
        lines += unit_lines
        for rel, original, stripped in copies:
            destination = root / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(stripped, "utf-8")
            targets += docstring_queries(original, stripped, rel)
    walked = walk_workspace(root, WalkOptions())  # only what the indexer admits can be a target
    admitted = {file.path for file in walked.files}
    candidates = len(targets)
    targets = drop_ambiguous([target for target in targets if target.path in admitted])
    if max_queries is not None and len(targets) > max_queries:
        keep = sorted(random.Random(seed).sample(range(len(targets)), max_queries))
        targets = [targets[i] for i in keep]
    return Corpus(root, sorted(chosen), len(admitted), chunks, lines, targets, candidates)


def rank_of(hits: Sequence[Hit], target: Target) -> int | None:
    """Return the 1-based rank of the first correct hit (see RULE), or None."""
    for rank, hit in enumerate(hits, start=1):
        if hit.path == target.path and hit.start_line <= target.def_line <= hit.end_line:
            return rank
    return None


def metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """MRR@10, Recall@1 and Recall@5 of a list of ranks."""
    n = len(ranks) or 1
    return {
        "mrr10": sum(1 / r for r in ranks if r is not None and r <= 10) / n,
        "r1": sum(1 for r in ranks if r is not None and r <= 1) / n,
        "r5": sum(1 for r in ranks if r is not None and r <= 5) / n,
    }


class _EmbedProgress:
    """Prints embedding progress on stderr about every 10%."""

    def __init__(self) -> None:
        self._next = 0.0
        self.started = time.perf_counter()

    def __call__(self, progress: IndexProgress) -> None:
        if progress.phase != "embedding" or not progress.chunks_to_embed:
            return
        share = progress.chunks_embedded / progress.chunks_to_embed
        if share >= self._next:
            rate = progress.chunks_embedded / max(time.perf_counter() - self.started, 1e-9)
            print(
                f"  embedded {progress.chunks_embedded}/{progress.chunks_to_embed} ({rate:.1f} chunks/s)",
                file=sys.stderr,
                flush=True,
            )
            self._next = share + 0.1


class _PrefilledEmbed:
    """The embed callable given to the engine: query vectors fetched beforehand in batches, else the stack.

    The stack's proxy allows a user 600 requests a minute (burst 60), and the engine embeds one query per
    request; fetching the queries' vectors 32 to a request first (same model, same attested client)
    keeps the bench under that limit. Chunks are embedded by the engine itself, through ``embed``.
    """

    def __init__(self, embed: Callable[[Sequence[str]], Awaitable[list[list[float]]]]) -> None:
        self._embed = embed
        self._known: dict[str, list[float]] = {}

    async def prefill(self, texts: Sequence[str], batch: int = 32) -> None:
        todo = list(dict.fromkeys(texts))
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            self._known.update(zip(part, await self._embed(part), strict=True))

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        if texts and all(text in self._known for text in texts):
            return [self._known[text] for text in texts]
        return await self._embed(texts)


async def evaluate(
    corpus: Corpus, settings: Settings, index_dir: Path
) -> tuple[dict[str, ModeResult], dict[str, float], list[AttestationStatus]]:
    """Index the copy through the stack, then run every query in the three modes."""
    statuses: list[AttestationStatus] = []
    factory = partial(make_client_transport, on_status=statuses.append)
    model = settings.models.embedding
    assert model
    results = {mode: ModeResult() for mode in MODES}
    figures: dict[str, float] = {}
    async with CubeClient(settings, transport_factory=factory) as client:
        raw = partial(client.embed, model=model)
        embed = _PrefilledEmbed(raw)
        search = WorkspaceSearch(corpus.root, embed=embed, model=model, index_dir=index_dir)
        try:
            started = time.perf_counter()
            report = await search.update(_EmbedProgress())
            figures["index_s"] = time.perf_counter() - started
            figures["chunks_embedded"] = report.chunks_embedded
            stats = search.stats
            figures["index_chunks"] = stats.chunks if stats else 0
            single = []
            for target in corpus.targets[:SINGLE_EMBEDS]:  # one query per request, as an editor sends it
                started = time.perf_counter()
                await raw([target.query])
                single.append(time.perf_counter() - started)
            figures["query_embed_p50_ms"] = 1000 * float(np.percentile(single, 50))
            started = time.perf_counter()
            await embed.prefill([target.query for target in corpus.targets])
            figures["prefill_s"] = time.perf_counter() - started
            for target in corpus.targets:
                # The first search fetches the query's vector (then cached by the engine): not timed.
                await search.search(target.query, limit=1, rank=RankOptions(mode="vector"))
                for mode in MODES:
                    started = time.perf_counter()
                    hits = await search.search(target.query, limit=LIMIT, rank=RankOptions(mode=mode))
                    results[mode].seconds.append(time.perf_counter() - started)
                    results[mode].ranks.append(rank_of(hits, target))
                    results[mode].hits.append(hits)
        finally:
            await search.aclose()
    return results, figures, statuses


def run_batch_cli(
    root: Path, settings_path: Path, cache_home: Path, queries: Path
) -> tuple[list[list[dict]], float]:
    """Run ``cube search --batch`` on the copy with the same cache directory; return its hits per query."""
    command = [sys.executable, "-m", "cube_lsp.cli", "search", "--root", str(root), "--settings"]
    command += [str(settings_path), "--batch", str(queries), "--json", "--limit", str(LIMIT)]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"cube search --batch exited {done.returncode}: {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines()], seconds


def compare_cli(
    targets: Sequence[Target], hybrid: ModeResult, cli_hits: list[list[dict]]
) -> tuple[int, dict[str, float], dict[str, float]]:
    """Return the count of queries with the same top-10 locations, the CLI's metrics and ours on them."""
    if len(cli_hits) != len(targets):
        raise RuntimeError(f"cube search --batch printed {len(cli_hits)} lines for {len(targets)} queries")
    same = 0
    ranks: list[int | None] = []
    for target, ours, theirs in zip(targets, hybrid.hits[: len(targets)], cli_hits, strict=True):
        same += [(h.path, h.start_line, h.end_line) for h in ours] == [
            (h["path"], h["start_line"], h["end_line"]) for h in theirs
        ]
        found = [Hit(h["path"], h["start_line"], h["end_line"], h["symbol"], h["score"], "") for h in theirs]
        ranks.append(rank_of(found, target))
    return same, metrics(ranks), metrics(hybrid.ranks[: len(targets)])


def _print_corpus(corpus: Corpus, args: argparse.Namespace, seconds: float) -> None:
    print(
        f"corpus: {len(corpus.modules)} modules, {corpus.files} files, {corpus.lines:,} lines, "
        f"{corpus.chunks} chunks (seed {args.seed}, budget {args.max_lines:,} lines); "
        f"built in {seconds:.1f} s"
    )
    print(f"modules: {' '.join(corpus.modules)}")
    print(
        f"queries: {len(corpus.targets)} (of {corpus.candidates} documented public functions with a "
        "first sentence of 4+ words, not generic; sentences documenting 2+ functions dropped)"
    )
    if len(corpus.targets) < 500:
        print(f"WARNING: only {len(corpus.targets)} queries (< 500): raise --max-lines or --modules")
    print(f"rule: {RULE}")


def _print_results(corpus: Corpus, results: dict[str, ModeResult], figures: dict[str, float]) -> None:
    embedded = figures["chunks_embedded"]
    print(
        f"index + embed: {figures['index_s']:.1f} s for {int(embedded)} chunks embedded "
        f"({embedded / figures['index_s']:.1f} chunks/s; {int(figures['index_chunks'])} chunks in the index)"
    )
    print(
        f"query embedding: p50 {figures['query_embed_p50_ms']:.1f} ms for one query per request "
        f"({SINGLE_EMBEDS} timed); all {len(corpus.targets)} queries fetched 32 per request in "
        f"{figures['prefill_s']:.1f} s; the timed searches below use the engine's cached vectors"
    )
    rows = []
    for mode in MODES:
        found = metrics(results[mode].ranks)
        p50 = 1000 * float(np.percentile(results[mode].seconds, 50))
        rows.append([mode, found["mrr10"], found["r1"], found["r5"], p50])
    print()
    print(table(["mode", "MRR@10", "R@1", "R@5", "p50 query ms"], rows))
    print()
    hybrid = metrics(results["hybrid"].ranks)["mrr10"]
    best = max(metrics(results[mode].ranks)["mrr10"] for mode in ("lexical", "vector"))
    verdict = "yes" if hybrid > best else "NO"
    print(f"hybrid beats both on MRR@10: {verdict} ({hybrid:.3f} vs the better single list {best:.3f})")
    pairs = zip(corpus.targets, results["hybrid"].hits, results["hybrid"].ranks, strict=True)
    itself = sum(1 for target, hits, rank in pairs if rank == 1 and hits[0].symbol == target.qualname)
    top1 = sum(1 for rank in results["hybrid"].ranks if rank == 1)
    print(
        f"hybrid top-1 correct hits whose symbol is the target itself (not an enclosing chunk): "
        f"{itself}/{top1}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=10, help="order of the modules (default 10)")
    parser.add_argument("--max-lines", type=int, default=42_000, help="line budget (default 42000)")
    parser.add_argument("--modules", type=int, help="take N modules in seeded order (no budget)")
    parser.add_argument("--max-queries", type=int, help="a seeded sample of at most N queries")
    parser.add_argument("--keep", type=Path, help="keep the copy, queries and targets in DIR")
    parser.add_argument("--also-batch-cli", action="store_true", help="check `cube search --batch` agrees")
    parser.add_argument("--cli-queries", type=int, default=CLI_QUERIES, help="queries sent to the CLI")
    args = parser.parse_args()
    bench_started = time.perf_counter()
    print(f"search_quality: python {sys.version.split()[0]}, stdlib {stdlib_dir()}")
    print(f"load average at start: {load_average()}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: not empty")
    work = Path(tempfile.mkdtemp(prefix="cube-search-quality-"))
    try:
        base = args.keep.resolve() if args.keep else work
        root, cache_home = base / "corpus", work / "cache"
        root.mkdir()
        started = time.perf_counter()
        corpus = build_corpus(
            root,
            seed=args.seed,
            max_lines=args.max_lines,
            modules=args.modules,
            max_queries=args.max_queries,
        )
        _print_corpus(corpus, args, time.perf_counter() - started)
        (base / "queries.txt").write_text("".join(t.query + "\n" for t in corpus.targets), "utf-8")
        (base / "targets.jsonl").write_text("".join(json.dumps(t.__dict__) + "\n" for t in corpus.targets))
        with running_stack() as (_stack, settings, settings_path):
            print(f"stack: cube-stack up, embedding model {settings.models.embedding!r} ({settings.api} API)")
            index_dir = index_dir_for(root, cache_home / "cube-lsp")  # where `cube search` finds it too
            results, figures, statuses = asyncio.run(evaluate(corpus, settings, index_dir))
            verdicts = sorted({f"mode {s.mode}: {s.state}" for s in statuses})
            print(f"attestation: {', '.join(verdicts) or 'no status reported'}")
            _print_results(corpus, results, figures)
            if args.also_batch_cli:
                subset = corpus.targets[: args.cli_queries]
                batch = work / "cli_queries.txt"
                batch.write_text("".join(t.query + "\n" for t in subset), "utf-8")
                cli_hits, seconds = run_batch_cli(root, settings_path, cache_home, batch)
                same, cli, ours = compare_cli(subset, results["hybrid"], cli_hits)
                print(
                    f"cube search --batch on the first {len(subset)} queries ({seconds:.1f} s): MRR@10 "
                    f"{cli['mrr10']:.3f} R@1 {cli['r1']:.3f} R@5 {cli['r5']:.3f} (in-process hybrid on them: "
                    f"{ours['mrr10']:.3f} {ours['r1']:.3f} {ours['r5']:.3f}); same top-10 locations for "
                    f"{same}/{len(subset)} -> {'AGREES' if cli == ours else 'DIFFERS'}"
                )
        print(f"load average at end: {load_average()}")
        print(f"bench took {time.perf_counter() - bench_started:.0f} s")
        if args.keep:
            print(f"kept corpus/, queries.txt and targets.jsonl in {args.keep}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
