"""WorkspaceSearch on hostile workspaces: skipped and counted, never a crash, and the search still answers.

Embeddings come from the SCRIPTED BACKEND through the real CubeClient (HTTP on loopback).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from cube_lsp.cube.client import CubeClient
from cube_lsp.search.engine import IndexProgress, SearchOptions, WorkspaceSearch
from cube_lsp.settings import parse_settings
from tests.support.scripted_backend import Reply, ScriptedBackend

GOOD = 'def refresh_access_token(session):\n    """Ask for a new token."""\n    return session.refresh()\n'


def client_for(backend: ScriptedBackend) -> CubeClient:
    settings, errors = parse_settings(backend.settings_json())
    assert not errors
    return CubeClient(settings)


async def test_hostile_files_are_skipped_and_counted(tmp_path: Path, scripted_backend: ScriptedBackend):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "good.py").write_text(GOOD)
    with (root / "bundle.min.js").open("w") as f:  # 50 MB of one minified line
        f.write("var a=1;" * (50 * 2**20 // 8))
    with (root / "app.js").open("w") as f:  # under the size limit, one 500 KB line
        f.write("x=" + "1+" * 250_000 + "1;\n")
    (root / "image.py").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    (root / "latin1.py").write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    (root / "loop").mkdir()
    (root / "loop" / "again").symlink_to(root, target_is_directory=True)
    (root / "locked").mkdir()
    (root / "locked" / "inside.py").write_text(GOOD.replace("refresh", "locked"))
    os.chmod(root / "locked", 0)
    try:
        async with client_for(scripted_backend) as client:
            search = WorkspaceSearch(
                root, embed=partial(client.embed, model="e"), model="e", cache_dir=tmp_path / "cache"
            )
            report = await search.update()
            hits = await search.search("refresh access token")
            await search.aclose()
    finally:
        os.chmod(root / "locked", 0o700)
    assert hits and hits[0].path == "good.py"
    skipped = report.skipped
    assert skipped.get("generated", 0) + skipped.get("too_large", 0) >= 1  # the 50 MB bundle, unread
    assert skipped.get("long_lines") == 1 and skipped.get("binary") == 1 and skipped.get("not_utf8") == 1
    assert skipped.get("symlink") == 1
    sent = "".join(t for r in scripted_backend.requests if r.route == "embed" for t in r.json["input"])
    assert "var a=1" not in sent and "caf" not in sent and "PNG" not in sent


async def test_a_file_deleted_while_indexing_is_skipped(tmp_path: Path, scripted_backend: ScriptedBackend):
    root = tmp_path / "ws"
    root.mkdir()
    for i in range(450):  # three commits of 200 files: the last one is read after the first commit
        (root / f"m{i:03}.py").write_text(GOOD.replace("refresh_access_token", f"refresh_{i}"))
    victim = root / "m449.py"

    def delete_once(progress: IndexProgress) -> None:
        if progress.phase == "chunking" and victim.exists():
            victim.unlink()

    # On the index thread (no worker processes), so the third batch is read after the first is stored.
    options = SearchOptions(prepare_workers=0)
    async with client_for(scripted_backend) as client:
        embed = partial(client.embed, model="e")
        search = WorkspaceSearch(root, embed=embed, model="e", cache_dir=tmp_path, options=options)
        report = await search.update(delete_once)
        assert report.skipped.get("unreadable") == 1, report
        assert search.stats is not None and search.stats.files == 449
        assert [h.symbol for h in await search.search("refresh_448", limit=1)] == ["refresh_448"]
        await search.aclose()


async def test_empty_workspace_and_huge_query(tmp_path: Path, scripted_backend: ScriptedBackend):
    root = tmp_path / "empty"
    root.mkdir()
    async with client_for(scripted_backend) as client:
        search = WorkspaceSearch(root, embed=partial(client.embed, model="e"), model="e", cache_dir=tmp_path)
        report = await search.update()
        assert (report.files_seen, report.chunks_embedded) == (0, 0)
        assert await search.search("anything at all") == []
        (root / "a.py").write_text(GOOD)
        await search.update()
        hits = await search.search("token " * 17_000)  # 100 KB: cut to its first 2,000 characters
        assert [h.path for h in hits] == ["a.py"]
        query = [r for r in scripted_backend.requests if r.route == "embed"][-1].json["input"][0]
        assert len(query) == 2000
        await search.aclose()


async def test_rate_limited_embedding_waits_and_resumes(tmp_path: Path, scripted_backend: ScriptedBackend):
    """Indexing exceeds a per-user burst: it waits out 429 + Retry-After instead of failing."""
    root = tmp_path / "ws"
    root.mkdir()
    for i in range(130):
        (root / f"m{i:03}.py").write_text(GOOD.replace("refresh_access_token", f"refresh_{i}"))
    limited = Reply.failure(429, "slow down", headers={"Retry-After": "0"})
    scripted_backend.rule = lambda r: limited if r.route == "embed" and r.index in (2, 3, 5) else None
    async with client_for(scripted_backend) as client:
        search = WorkspaceSearch(root, embed=partial(client.embed, model="e"), model="e", cache_dir=tmp_path)
        report = await search.update()
        assert report.chunks_embedded == 130
        queries = ["refresh_7", "refresh_99", ""]
        before = scripted_backend.request_count
        results = await search.search_many(queries, limit=1)
        assert [[h.symbol for h in hits] for hits in results] == [["refresh_7"], ["refresh_99"], []]
        assert scripted_backend.request_count - before == 1  # the queries went out in one batch
        await search.aclose()


async def test_worker_processes_index_what_the_index_thread_would(
    tmp_path: Path, scripted_backend: ScriptedBackend
):
    root = tmp_path / "ws"
    root.mkdir()
    for i in range(650):  # four batches: three prepared by worker processes ahead of the writes
        (root / f"m{i:03}.py").write_text(GOOD.replace("refresh_access_token", f"refresh_{i}"))
    (root / "z_binary.py").write_bytes(b"\x00" * 64)
    stats = []
    for workers in (2, 0):
        async with client_for(scripted_backend) as client:
            embed = partial(client.embed, model="e")
            options = SearchOptions(prepare_workers=workers)
            cache = tmp_path / f"cache{workers}"
            search = WorkspaceSearch(root, embed=embed, model="e", cache_dir=cache, options=options)
            report = await search.update()
            assert report.skipped == {"binary": 1}
            assert [h.symbol for h in await search.search("refresh_640", limit=1)] == ["refresh_640"]
            stats.append((search.stats.files, search.stats.chunks))  # type: ignore[union-attr]
            await search.aclose()
    assert stats[0] == stats[1] == (650, 650)
