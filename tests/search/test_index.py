"""The search index: incremental updates keyed by content hash, rebuilds, compaction, crash safety."""

import importlib.util
import logging
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cube_lsp.search import index as index_module
from cube_lsp.search.index import DB_NAME, SearchIndex, index_dir_for
from cube_lsp.search.types import Chunk, SkipReason, SourceFile

MODEL = "test-model"
DIM = 8
KILLER = Path(__file__).with_name("index_killer.py")


def chunk(path, symbol, body, start=1):
    lines = body.count("\n") + 1
    return Chunk(path, symbol, "function", start, start + lines - 1, f"# {path}", body)


def source(path, language="python", mtime=1):
    return SourceFile(path, 10, mtime, language)


def vec(seed):
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def embed_all(index):
    pending = index.pending(10_000)
    if pending:
        hashes = [h for h, _ in pending]
        index.store_embeddings(hashes, np.stack([vec(int(h[:8], 16)) for h in hashes]))
    return len(pending)


@pytest.fixture
def index(tmp_path):
    with SearchIndex(tmp_path / "idx", MODEL, DIM, clock=lambda: 1234.5) as idx:
        yield idx


def test_index_dir_is_keyed_by_the_resolved_root_and_outside_it(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    cache = tmp_path / "cache"
    first = index_dir_for(root, cache)
    assert first == index_dir_for(root / "." / "sub" / "..", cache)
    assert first.parent == cache.resolve() / "search" and len(first.name) == 16
    assert first != index_dir_for(tmp_path / "other", cache)
    with pytest.raises(ValueError):
        index_dir_for(root, root / ".cache")


def test_sqlite_runs_in_wal_mode(index):
    assert index._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_replace_file_records_state_and_chunks(index):
    index.replace_file(source("a.py"), "hash-a", [chunk("a.py", "f", "def f(): pass")])
    assert index.file_state() == {"a.py": (10, 1, "hash-a")}
    stats = index.stats()
    assert (stats.files, stats.chunks, stats.embedded, stats.pending) == (1, 1, 0, 1)
    assert stats.last_update == 1234.5


def test_unchanged_chunk_is_never_re_embedded(index):
    keep = chunk("a.py", "keep", "def keep():\n    return 1")
    index.replace_file(source("a.py"), "v1", [keep, chunk("a.py", "edit", "def edit(): return 1", 3)])
    assert embed_all(index) == 2
    index.replace_file(
        source("a.py", mtime=2), "v2", [keep, chunk("a.py", "edit", "def edit(): return 2", 3)]
    )
    pending = index.pending(100)
    assert [text for _, text in pending] == ["# a.py\ndef edit(): return 2"]
    assert index.stats().embedded == 1


def test_moved_chunk_keeps_its_embedding(index):
    body = "def helper():\n    return 42"
    index.replace_file(source("a.py"), "v1", [Chunk("a.py", "helper", "function", 1, 2, "", body)])
    embed_all(index)
    index.remove_files(["a.py"])
    # The same text at other lines of another file: same content hash, so no new embedding.
    index.replace_file(source("b.py"), "v1", [Chunk("b.py", "helper", "function", 30, 31, "", body)])
    assert index.pending(100) == []
    assert index.stats().embedded == 1


def test_pending_is_deduplicated_by_content_hash(index):
    same = "def twin(): pass"
    index.replace_file(source("a.py"), "a", [chunk("a.py", "twin", same)])
    index.replace_file(source("b.py"), "b", [Chunk("b.py", "twin", "function", 1, 1, "# a.py", same)])
    assert len(index.pending(100)) == 1
    assert index.stats().pending == 1


def test_store_embeddings_skips_known_repeated_and_unused_hashes(index):
    c = chunk("a.py", "f", "def f(): pass")
    index.replace_file(source("a.py"), "a", [c])
    h = c.content_hash
    assert index.store_embeddings([h, h, "unused"], np.stack([vec(1), vec(2), vec(3)])) == 1
    assert index.store_embeddings([h], vec(4)[None]) == 0
    assert index.stats().vector_rows == 1


def test_store_embeddings_checks_the_shape(index):
    with pytest.raises(ValueError):
        index.store_embeddings(["x"], np.zeros((1, DIM + 1), np.float32))


def test_remove_files_drops_chunks_and_search_terms(index):
    index.replace_file(source("a.py"), "a", [chunk("a.py", "refreshToken", "def refreshToken(): pass")])
    assert index.lexical('"refresh"', 10)
    index.remove_files(["a.py"])
    assert index.lexical('"refresh"', 10) == []
    assert index.file_state() == {}


def test_skipped_counts_round_trip(index):
    index.set_skipped(Counter({SkipReason.SECRET: 2, SkipReason.BINARY: 1}))
    assert index.stats().skipped == {"binary": 1, "secret": 2}


@pytest.mark.parametrize(
    ("change", "attribute"),
    [
        ({"model": "other-model"}, "model"),
        ({"dim": DIM * 2}, "dim"),
        ({"row_type": "float32"}, "row_type"),
    ],
)
def test_another_model_or_layout_rebuilds(tmp_path, caplog, change, attribute):
    directory = tmp_path / "idx"
    with SearchIndex(directory, MODEL, DIM) as first:
        first.replace_file(source("a.py"), "a", [chunk("a.py", "f", "def f(): pass")])
        embed_all(first)
    settings = {"model": MODEL, "dim": DIM, **change}
    row_type = settings.pop("row_type", "int8")
    with caplog.at_level(logging.WARNING), SearchIndex(directory, row_type=row_type, **settings) as second:
        assert second.file_state() == {}
        assert second.stats().vector_rows == 0
    assert any(
        attribute in record.getMessage() and "rebuild" in record.getMessage() for record in caplog.records
    )


def test_schema_change_rebuilds(tmp_path, monkeypatch, caplog):
    directory = tmp_path / "idx"
    with SearchIndex(directory, MODEL, DIM) as first:
        first.replace_file(source("a.py"), "a", [chunk("a.py", "f", "def f(): pass")])
    monkeypatch.setattr(index_module, "SCHEMA_VERSION", index_module.SCHEMA_VERSION + 1)
    with caplog.at_level(logging.WARNING), SearchIndex(directory, MODEL, DIM) as second:
        assert second.file_state() == {}
    assert any("schema_version" in record.getMessage() for record in caplog.records)


def test_a_corrupt_database_file_rebuilds(tmp_path):
    directory = tmp_path / "idx"
    directory.mkdir()
    (directory / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with SearchIndex(directory, MODEL, DIM) as idx:
        assert idx.stats().files == 0


def test_same_settings_reopen_keeps_everything(tmp_path):
    directory = tmp_path / "idx"
    with SearchIndex(directory, MODEL, DIM) as first:
        first.replace_file(source("a.py"), "a", [chunk("a.py", "f", "def f(): pass")])
        embed_all(first)
    with SearchIndex(directory, MODEL, DIM) as second:
        assert second.stats().embedded == 1 and second.pending(10) == []


def test_compact_reclaims_garbage_and_keeps_vectors_right(index):
    chunks = [chunk(f"f{i}.py", f"f{i}", f"def f{i}(): return {i}") for i in range(10)]
    for c in chunks:
        index.replace_file(source(c.path), c.path, [c])
    hashes = [c.content_hash for c in chunks]
    vectors = np.stack([vec(i) for i in range(10)])
    index.store_embeddings(hashes, vectors)
    assert index.compact() is False  # no garbage
    index.remove_files([f"f{i}.py" for i in range(2)])
    assert index.compact() is False  # 20 % garbage: under the threshold
    assert index.compact(force=True) is True
    assert index.stats().vector_rows == 8 and index.stats().garbage_rows == 0
    assert len(list(index.directory.glob("vectors-*.bin"))) == 1
    best = index.vector(vectors[7], 1)
    assert index.chunks([best[0][0]])[best[0][0]].symbol == "f7"


def test_compact_runs_by_itself_over_the_threshold(index):
    chunks = [chunk(f"f{i}.py", f"f{i}", f"def f{i}(): return {i}") for i in range(10)]
    for c in chunks:
        index.replace_file(source(c.path), c.path, [c])
    embed_all(index)
    index.remove_files([f"f{i}.py" for i in range(4)])
    assert index.compact() is True
    assert index.stats().vector_rows == 6


def test_uncommitted_vector_rows_are_cut_on_open(tmp_path):
    directory = tmp_path / "idx"
    with SearchIndex(directory, MODEL, DIM) as first:
        first.replace_file(source("a.py"), "a", [chunk("a.py", "f", "def f(): pass")])
        embed_all(first)
        store_path = first._store.path
        row_size = first._store.row_size
    with store_path.open("ab") as f:  # a row written, then killed before the commit
        f.write(b"\x07" * (row_size + 5))
    with SearchIndex(directory, MODEL, DIM) as second:
        assert second._store.rows == 1
        assert store_path.stat().st_size == index_module.VectorStore(store_path, DIM).rows * row_size + 64


def test_filters_by_language_and_path(index):
    index.replace_file(source("src/a.py"), "a", [chunk("src/a.py", "parse", "def parse(): pass")])
    index.replace_file(source("lib/b.go", "go"), "b", [chunk("lib/b.go", "parse", "func parse() {}")])
    ids = lambda hits: sorted(index.chunks([i for i, _ in hits])[i].path for i, _ in hits)  # noqa: E731
    assert ids(index.lexical('"parse"', 10)) == ["lib/b.go", "src/a.py"]
    assert ids(index.lexical('"parse"', 10, languages=["go"])) == ["lib/b.go"]
    assert ids(index.lexical('"parse"', 10, path_regex=r"src/.*")) == ["src/a.py"]
    assert index.lexical('"parse"', 10, languages=[]) == []


def load_killer():
    spec = importlib.util.spec_from_file_location("index_killer", KILLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_integrity(directory):
    """Reopen an index after a kill and check it from top to bottom; return its stats."""
    killer = load_killer()
    vector_for = killer.vector_for
    with SearchIndex(directory, killer.MODEL, killer.DIM) as idx:
        db = sqlite3.connect(directory / DB_NAME)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("INSERT INTO chunk_terms(chunk_terms) VALUES ('integrity-check')") is not None
        committed = int(db.execute("SELECT value FROM meta WHERE key = 'vector_rows'").fetchone()[0])
        assert idx._store.rows == committed
        rows = db.execute("SELECT content_hash, row FROM embeddings").fetchall()
        db.close()
        assert all(0 <= row < committed for _, row in rows)
        if rows:
            stored = idx._store.read([row for _, row in rows])
            wanted = np.stack([vector_for(h) for h, _ in rows])
            wanted /= np.linalg.norm(wanted, axis=1, keepdims=True)
            np.testing.assert_allclose(stored, wanted, atol=0.05)  # each row holds its hash's vector
        stats = idx.stats()
        pending = idx.pending(100_000)
        assert len(pending) == stats.pending
        assert stats.embedded <= stats.chunks
        # Finish the work: the index takes the rest and answers.
        if pending:
            hashes = [h for h, _ in pending]
            idx.store_embeddings(hashes, np.stack([vector_for(h) for h in hashes]))
        assert idx.stats().pending == 0
        assert idx.lexical('"handler"', 5)
        if rows:
            assert idx.vector(vector_for(rows[0][0]), 3)
        return stats


def kill_after_progress(directory, mode, rounds):
    process = subprocess.Popen(
        [sys.executable, str(KILLER), str(directory), mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        for line in process.stdout:
            if line.startswith("progress") and int(line.split()[1]) >= rounds:
                break
        else:
            pytest.fail(f"killer exited early with {process.wait()}")
        process.send_signal(signal.SIGKILL)
    finally:
        process.stdout.close()
        assert process.wait() == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["index", "compact"])
def test_kill_minus_nine_leaves_a_usable_index(tmp_path, mode):
    directory = tmp_path / "idx"
    for rounds in (1, 2, 3):  # kill, reopen and check, resume, kill again...
        kill_after_progress(directory, mode, rounds)
        stats = check_integrity(directory)
        assert stats.files > 0


def test_batch_commits_all_files_at_once_or_none(index):
    with index.batch():
        index.replace_file(source("a.py"), "a", [chunk("a.py", "f", "def f(): pass")])
        index.replace_file(source("b.py"), "b", [chunk("b.py", "g", "def g(): pass")])
        assert index.stats().files == 2  # reads inside the batch see its writes
    assert sorted(index.file_state()) == ["a.py", "b.py"]
    with pytest.raises(KeyError), index.batch():
        index.remove_files(["a.py"])
        raise KeyError("the walker failed")
    assert sorted(index.file_state()) == ["a.py", "b.py"]
    with pytest.raises(RuntimeError), index.batch():
        index.compact(force=True)


def test_rows_missing_from_the_array_become_pending_again(tmp_path):
    # A disk that lied about fsync: SQLite names rows the array lost. They are embedded again.
    directory = tmp_path / "idx"
    with SearchIndex(directory, MODEL, DIM) as first:
        for name in ("a", "b", "c"):
            first.replace_file(source(f"{name}.py"), name, [chunk(f"{name}.py", name, f"def {name}(): pass")])
        embed_all(first)
        store_path, row_size = first._store.path, first._store.row_size
    with store_path.open("r+b") as f:
        f.truncate(64 + row_size)
    with SearchIndex(directory, MODEL, DIM) as second:
        stats = second.stats()
        assert (stats.embedded, stats.pending, stats.vector_rows) == (1, 2, 1)
        assert embed_all(second) == 2


def test_vector_runs_alongside_once_on_the_calling_thread(index):
    import threading

    index.replace_file(source("a.py"), "a", [chunk("a.py", "f", "def f(): pass")])
    embed_all(index)
    calls = []

    def alongside():
        calls.append(threading.current_thread())
        index.lexical('"f"', 5)  # SQL on the index's own thread while the scan runs

    assert index.vector(vec(1), 5, alongside=alongside)
    assert index.vector(vec(1), 0, alongside=alongside) == []
    assert index.vector(vec(1), 5, languages=["go"], alongside=alongside) == []
    assert calls == [threading.current_thread()] * 3
    with pytest.raises(ZeroDivisionError):
        index.vector(vec(1), 5, alongside=lambda: 1 / 0)
    with pytest.raises(ValueError):  # a query of the wrong dimension fails in the scan thread, here
        index.vector(np.ones(DIM + 1, np.float32), 5)


def test_two_handles_on_one_index_survive_each_others_compaction(tmp_path):
    # The LSP and the CLI may open the same workspace's index at once.
    directory = tmp_path / "idx"
    with SearchIndex(directory, MODEL, DIM) as lsp, SearchIndex(directory, MODEL, DIM) as cli:
        for i in range(4):
            lsp.replace_file(source(f"f{i}.py"), "x", [chunk(f"f{i}.py", f"f{i}", f"def f{i}(): {i}")])
        embed_all(lsp)
        cli.remove_files(["f0.py", "f1.py"])
        assert cli.compact() is True  # lsp's array file is gone now
        lsp.replace_file(source("g.py"), "g", [chunk("g.py", "g", "def g(): pass")])
        assert embed_all(lsp) == 1
        assert len(lsp.vector(vec(7), 10)) == 3
        assert len(cli.vector(vec(7), 10)) == 3
