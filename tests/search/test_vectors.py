"""The embedding array: round trip, quantisation error, exact search, torn-file recovery."""

import numpy as np
import pytest

from cube_lsp.search.vectors import HEADER_SIZE, VectorFileError, VectorStore, normalise

DIM = 32


def unit_rows(n, dim=DIM, seed=0):
    return normalise(np.random.default_rng(seed).standard_normal((n, dim)))


@pytest.mark.parametrize("row_type", ["int8", "float32"])
def test_append_then_read_round_trips(tmp_path, row_type):
    store = VectorStore(tmp_path / "v.bin", DIM, row_type)
    first = store.append(unit_rows(5))
    second = store.append(unit_rows(3, seed=1))
    assert (first, second, store.rows) == (0, 5, 8)
    tolerance = 0 if row_type == "float32" else 0.02
    np.testing.assert_allclose(store.read([5, 6, 7]), unit_rows(3, seed=1), atol=tolerance + 1e-6)


def test_append_normalises_any_scale(tmp_path):
    store = VectorStore(tmp_path / "v.bin", DIM, "float32")
    store.append(unit_rows(2) * 7.5)
    np.testing.assert_allclose(np.linalg.norm(store.read([0, 1]), axis=1), 1.0, rtol=1e-5)


def test_int8_cosine_error_stays_within_the_quantisation_bound(tmp_path):
    # Symmetric per-row quantisation rounds each component by at most scale/2 = max|v|/254, so the
    # cosine with a unit query moves by at most sqrt(dim) * max|v| / 254.
    dim = 384
    rows = unit_rows(2000, dim, seed=3)
    store = VectorStore(tmp_path / "v.bin", dim, "int8")
    store.append(rows)
    query = unit_rows(1, dim, seed=4)[0]
    exact = rows @ query
    approx = store.read(np.arange(2000)) @ query
    bound = np.sqrt(dim) * np.abs(rows).max(axis=1) / 254
    assert np.all(np.abs(approx - exact) <= bound + 1e-6)
    assert np.abs(approx - exact).max() < 0.02


@pytest.mark.parametrize("row_type", ["int8", "float32"])
def test_search_returns_the_exact_top_k_best_first(tmp_path, row_type):
    rows = unit_rows(3000, seed=5)
    store = VectorStore(tmp_path / "v.bin", DIM, row_type)
    store.append(rows)
    query = rows[1234] + 0.01 * unit_rows(1, seed=6)[0]
    found, scores = store.search(query, k=10)
    assert found[0] == 1234
    assert list(scores) == sorted(scores, reverse=True)
    expected = np.argsort(-(rows @ normalise(query[None])[0]))[:10]
    if row_type == "float32":
        assert list(found) == list(expected)
    else:
        assert len(set(found) & set(expected)) >= 8


def test_search_over_candidate_rows_only(tmp_path):
    rows = unit_rows(100, seed=7)
    store = VectorStore(tmp_path / "v.bin", DIM)
    store.append(rows)
    found, _ = store.search(rows[10], candidate_rows=np.array([3, 50, 99, 500]), k=10)
    assert sorted(found) == [3, 50, 99]  # 500 is past the end: ignored


def test_search_ignores_rows_past_upto(tmp_path):
    rows = unit_rows(10, seed=8)
    store = VectorStore(tmp_path / "v.bin", DIM)
    store.append(rows)
    found, _ = store.search(rows[9], k=10, upto=5)
    assert sorted(found) == [0, 1, 2, 3, 4]


def test_empty_array_searches_to_nothing(tmp_path):
    store = VectorStore(tmp_path / "v.bin", DIM)
    found, scores = store.search(unit_rows(1)[0], k=3)
    assert found.size == 0 and scores.size == 0


def test_torn_tail_is_not_a_row_and_is_cut_by_truncate(tmp_path):
    path = tmp_path / "v.bin"
    store = VectorStore(path, DIM)
    store.append(unit_rows(4))
    with path.open("ab") as f:
        f.write(b"\x01" * (store.row_size // 2))  # a kill in the middle of a write
    reopened = VectorStore(path, DIM)
    assert reopened.rows == 4
    reopened.truncate(3)  # the index committed 3 rows
    assert path.stat().st_size == HEADER_SIZE + 3 * reopened.row_size
    assert reopened.append(unit_rows(1, seed=9)) == 3


@pytest.mark.parametrize(
    ("dim", "row_type"),
    [(DIM + 1, "int8"), (DIM, "float32")],
)
def test_another_layout_is_refused(tmp_path, dim, row_type):
    VectorStore(tmp_path / "v.bin", DIM, "int8")
    with pytest.raises(VectorFileError):
        VectorStore(tmp_path / "v.bin", dim, row_type)


def test_garbage_header_is_refused(tmp_path):
    (tmp_path / "v.bin").write_bytes(b"not a vector file at all" * 4)
    with pytest.raises(VectorFileError):
        VectorStore(tmp_path / "v.bin", DIM)


def test_non_finite_vectors_are_refused(tmp_path):
    store = VectorStore(tmp_path / "v.bin", DIM)
    bad = unit_rows(2)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError):
        store.append(bad)
    assert store.rows == 0


def test_copy_rows_writes_the_chosen_rows_in_order(tmp_path):
    rows = unit_rows(6, seed=10)
    store = VectorStore(tmp_path / "v.bin", DIM, "float32")
    store.append(rows)
    copy = store.copy_rows(tmp_path / "w.bin", np.array([4, 1]))
    np.testing.assert_allclose(copy.read([0, 1]), rows[[4, 1]], atol=1e-6)
