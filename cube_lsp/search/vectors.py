"""The embedding array: an append-only file of L2-normalised vectors, memory-mapped with numpy.

Layout: a 64-byte header (magic, format version, dimension, row type) then fixed-size rows addressed by
their integer position. Rows are ``int8`` with a per-row ``float32`` scale (symmetric quantisation of the
normalised vector, a quarter of float32's size) or plain ``float32``. The file knows nothing of chunks:
the SQLite index maps content hashes to row numbers and records how many rows it has committed, so rows
past that count (written before a crash, never committed) are cut off by :meth:`VectorStore.truncate` when
the index opens. :meth:`VectorStore.append` flushes and fsyncs before it returns, so a row the index
commits is on disk first.

Search is exact: a matrix-vector product over blocks of rows, so the memory touched per step stays small
and the page cache, not the heap, holds the array.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["FORMAT_VERSION", "HEADER_SIZE", "MAGIC", "VectorFileError", "VectorStore", "normalise"]

MAGIC = b"CUBEVEC\x00"
FORMAT_VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIII")  # magic, format version, dimension, row type; zero padded to 64 bytes
_ROW_TYPES: dict[str, int] = {"int8": 1, "float32": 2}
# Rows scored per matrix-vector product. Small enough that the float32 copy of a block (512 x 384 x 4 =
# 768 KB) stays in cache: at 100k x 384 int8 rows, 512 took 13 ms a query, 2048 took 60 ms, 8192 55 ms.
_BLOCK_ROWS = 512

RowType = Literal["int8", "float32"]


class VectorFileError(Exception):
    """The file is not an embedding array of the expected layout (the index rebuilds on it)."""


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 copies of ``vectors`` (n x dim) scaled to unit length; zero rows stay zero."""
    out = np.asarray(vectors, dtype=np.float32).copy()
    if out.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n x dim), got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError("vectors contain NaN or infinity")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _row_dtype(dim: int, row_type: RowType) -> np.dtype:
    if row_type == "int8":
        return np.dtype([("q", np.int8, (dim,)), ("s", "<f4")])
    return np.dtype([("v", "<f4", (dim,))])


class VectorStore:
    """One embedding array file. Not thread-safe: one owner (the :class:`SearchIndex`) uses it."""

    def __init__(self, path: Path, dim: int, row_type: RowType = "int8") -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.path = path
        self.dim = dim
        self.row_type: RowType = row_type
        self._dtype = _row_dtype(dim, row_type)
        self._map: np.memmap | None = None
        self._mapped_rows = 0
        if not path.exists() or path.stat().st_size == 0:
            self._create()
        else:
            self._check_header()

    @property
    def row_size(self) -> int:
        """Return the bytes per row."""
        return self._dtype.itemsize

    @property
    def rows(self) -> int:
        """Return the number of complete rows in the file (a torn last row is not counted)."""
        return max(0, (self.path.stat().st_size - HEADER_SIZE) // self.row_size)

    def _create(self) -> None:
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, self.dim, _ROW_TYPES[self.row_type])
        with self.path.open("wb") as f:
            f.write(header.ljust(HEADER_SIZE, b"\x00"))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.path.parent)

    def _check_header(self) -> None:
        with self.path.open("rb") as f:
            raw = f.read(HEADER_SIZE)
        if len(raw) < HEADER_SIZE:
            raise VectorFileError(f"{self.path}: header is {len(raw)} bytes, wanted {HEADER_SIZE}")
        magic, version, dim, row_code = _HEADER.unpack_from(raw)
        found = (magic, version, dim, row_code)
        wanted = (MAGIC, FORMAT_VERSION, self.dim, _ROW_TYPES[self.row_type])
        if found != wanted:
            raise VectorFileError(
                f"{self.path}: header (magic, version, dim, type) is {found}, wanted {wanted}"
            )

    def truncate(self, rows: int) -> None:
        """Cut the file to its first ``rows`` rows (and any torn tail); used on open after a crash."""
        self._unmap()
        size = HEADER_SIZE + rows * self.row_size
        if self.path.stat().st_size != size:
            with self.path.open("r+b") as f:
                f.truncate(size)
                f.flush()
                os.fsync(f.fileno())

    def append(self, vectors: np.ndarray) -> int:
        """Append ``vectors`` (n x dim, any scale), durably; return the row number of the first one.

        The rows are normalised, quantised, written, flushed and fsynced before this returns, so the
        caller may then commit references to them. A torn tail from an earlier crash is cut first so
        that rows stay aligned.
        """
        unit = normalise(vectors)
        if unit.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {unit.shape[1]}, the array has {self.dim}")
        first = self.rows
        self.truncate(first)
        records = self._encode(unit)
        with self.path.open("ab") as f:
            f.write(records.tobytes())
            f.flush()
            os.fsync(f.fileno())
        return first

    def _encode(self, unit: np.ndarray) -> np.ndarray:
        records = np.zeros(len(unit), dtype=self._dtype)
        if self.row_type == "float32":
            records["v"] = unit
            return records
        peak = np.abs(unit).max(axis=1) if len(unit) else np.zeros(0, np.float32)
        scale = (peak / 127.0).astype(np.float32)
        safe = np.where(scale > 0, scale, 1.0)[:, None]
        records["q"] = np.clip(np.rint(unit / safe), -127, 127).astype(np.int8)
        records["s"] = scale
        return records

    def _mapped(self, upto: int | None = None) -> np.memmap | None:
        """Map the first ``upto`` rows (all complete rows when None); rows past ``upto`` are never read.

        The index passes the count SQLite committed, so a reader never touches a tail another writer
        may cut off.
        """
        rows = self.rows if upto is None else min(upto, self.rows)
        if rows == 0:
            self._unmap()
            return None
        if self._map is None or self._mapped_rows != rows:
            self._unmap()
            self._map = np.memmap(self.path, dtype=self._dtype, mode="r", offset=HEADER_SIZE, shape=(rows,))
            self._mapped_rows = rows
        return self._map

    def _unmap(self) -> None:
        # Dropping the last reference unmaps (numpy has no public close); views a caller still holds
        # keep their pages alive, which is safe: the rows below the committed count are never cut.
        self._map = None
        self._mapped_rows = 0

    def _decode(self, records: np.ndarray) -> np.ndarray:
        if self.row_type == "float32":
            return np.asarray(records["v"], dtype=np.float32)
        return records["q"].astype(np.float32) * records["s"][:, None]

    def read(self, rows: np.ndarray | list[int], upto: int | None = None) -> np.ndarray:
        """Return the stored (dequantised, unit-length up to quantisation) vectors of ``rows``."""
        index = np.asarray(rows, dtype=np.int64)
        mapped = self._mapped(upto)
        if index.size == 0:
            return np.zeros((0, self.dim), np.float32)
        if mapped is None or index.min() < 0 or index.max() >= len(mapped):
            raise IndexError(f"row out of range 0..{0 if mapped is None else len(mapped)}")
        return self._decode(mapped[index])

    def _scan(self, mapped: np.memmap, query: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Return the cosine of every row (or of ``rows``) with the unit ``query``, block by block."""
        plain = mapped.view(np.ndarray)  # a memmap's own __getitem__ costs 5 us a block
        fields = (plain["v"],) if self.row_type == "float32" else (plain["q"], plain["s"])
        total = len(plain) if rows is None else len(rows)
        scores = np.empty(total, dtype=np.float32)  # 4 bytes a row: 400 KB at 100k rows
        scratch = np.empty((min(_BLOCK_ROWS, total), self.dim), dtype=np.float32)
        for start in range(0, total, _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, total)
            pick = slice(start, stop) if rows is None else rows[start:stop]
            if len(fields) == 1:
                np.matmul(fields[0][pick], query, out=scores[start:stop])
            else:
                block = scratch[: stop - start]
                np.copyto(block, fields[0][pick], casting="unsafe")  # int8 -> float32, no new array
                np.matmul(block, query, out=scores[start:stop])
                scores[start:stop] *= fields[1][pick]
        return scores

    def search(
        self,
        query: np.ndarray,
        candidate_rows: np.ndarray | None = None,
        k: int = 10,
        upto: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the top-``k`` rows by cosine to ``query`` and their scores, best first (exact search).

        ``candidate_rows`` restricts the search to those rows (a filter); ``None`` scans every row.
        ``upto`` ignores rows from that number on (rows not committed by the index).
        """
        q = normalise(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
        if q.shape[0] != self.dim:
            raise ValueError(f"query has dimension {q.shape[0]}, the array has {self.dim}")
        mapped = self._mapped(upto)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if mapped is None or k <= 0:
            return empty
        if candidate_rows is not None:
            rows = np.unique(np.asarray(candidate_rows, dtype=np.int64))
            rows = rows[(rows >= 0) & (rows < len(mapped))]
            if rows.size == 0:
                return empty
        scores = self._scan(mapped, q, None if candidate_rows is None else rows)
        total = len(scores)
        top = np.argpartition(scores, -k)[-k:] if total > k else np.arange(total)
        top_rows = top.astype(np.int64) if candidate_rows is None else rows[top]
        top_scores = scores[top]
        order = np.lexsort((top_rows, -top_scores))  # by score, ties by row: deterministic
        return top_rows[order], top_scores[order]

    def copy_rows(self, path: Path, rows: np.ndarray) -> VectorStore:
        """Write a new array at ``path`` holding ``rows`` of this one, in that order, durably (compaction)."""
        if path.exists():
            path.unlink()
        target = VectorStore(path, self.dim, self.row_type)
        mapped = self._mapped()
        index = np.asarray(rows, dtype=np.int64)
        with path.open("ab") as f:
            for start in range(0, len(index), _BLOCK_ROWS):
                if mapped is None:
                    raise IndexError("copying rows from an empty array")
                f.write(np.ascontiguousarray(mapped[index[start : start + _BLOCK_ROWS]]).tobytes())
            f.flush()
            os.fsync(f.fileno())
        return target

    def close(self) -> None:
        """Release the memory map."""
        self._unmap()


def _fsync_dir(directory: Path) -> None:
    """Make a file's creation or rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
