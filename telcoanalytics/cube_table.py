"""CellTable: the compact cell store behind every cuboid (dense or hashed index over packed keys).

Cells live in insertion order in preallocated arrays that double when full; an index maps packed
keys to cells: a dense ``int32`` array over the key space when it is small (``dense=True``),
otherwise an open-addressing hash table (linear probing, load <= 1/2, capacity a power of two).
Both layouts answer every query identically (tests check it); the kernels are in
``kernels/cube.py``.
"""
from __future__ import annotations

import numpy as np

from kernels.cube import (cube_accumulate, cube_clear, cube_count_new, cube_merge_cells,
                          cube_reindex)

_MIN_CAP = 16
CELL_ARRAYS = ("cell_key", "cnt", "fmiss", "fsum", "fmin", "fmax", "fmean", "fm2", "hll", "qs")


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


class CellTable:
    """Cells of one key space with count / value / sketch measures.

    Parameters
    ----------
    keyspace : int
        Number of possible packed keys (product of the dimension radices).
    dense : bool
        Dense index (``keyspace`` int32 entries) or hashed index.
    n_fields, n_hll, hll_p, n_q, q_buckets : int
        Value fields (moments), distinct-count fields and precision, percentile fields and
        their bucket count.
    capacity : int
        Initial number of cells.
    """

    def __init__(self, keyspace: int, dense: bool, n_fields: int, n_hll: int, hll_p: int,
                 n_q: int, q_buckets: int, capacity: int = _MIN_CAP):
        self.keyspace = int(keyspace)
        self.dense = bool(dense)
        self.shape = (int(n_fields), int(n_hll), int(hll_p), int(n_q), int(q_buckets))
        self.counters = np.zeros(2, dtype=np.int64)
        self.cap = 0
        self._alloc_cells(max(_MIN_CAP, int(capacity)))
        if self.dense:
            self.index = np.full(self.keyspace, -1, dtype=np.int32)
            self.tab_keys = np.full(1, -1, dtype=np.int64)
            self.tab_cell = np.zeros(1, dtype=np.int32)
        else:
            self.index = np.full(1, -1, dtype=np.int32)
            self._alloc_table(_pow2_at_least(2 * self.cap))

    # ---- storage ---------------------------------------------------------------------------
    def _alloc_cells(self, cap: int):
        F, H, p, Q, nb = self.shape
        old = {name: getattr(self, name) for name in CELL_ARRAYS} if self.cap else None
        n = self.n_cells
        self.cell_key = np.empty(cap, dtype=np.int64)
        self.cnt = np.zeros(cap, dtype=np.int64)
        self.fmiss = np.zeros((cap, F), dtype=np.int64)
        self.fsum = np.zeros((cap, F))
        self.fmin = np.full((cap, F), np.inf)
        self.fmax = np.full((cap, F), -np.inf)
        self.fmean = np.zeros((cap, F))
        self.fm2 = np.zeros((cap, F))
        self.hll = np.zeros((cap, H, (1 << p) if H else 0), dtype=np.uint8)
        self.qs = np.zeros((cap, Q, nb if Q else 0), dtype=np.int64)
        if old is not None:
            for name, arr in old.items():
                getattr(self, name)[:n] = arr[:n]
        self.cap = cap

    def _alloc_table(self, tcap: int):
        self.tab_keys = np.full(tcap, -1, dtype=np.int64)
        self.tab_cell = np.zeros(tcap, dtype=np.int32)

    @property
    def n_cells(self) -> int:
        return int(self.counters[0])

    def limit(self) -> int:
        """Most cells the kernels may hold before the arrays or the table must grow."""
        if self.dense:
            return self.cap
        return min(self.cap, self.tab_keys.shape[0] // 2)

    def reserve(self, n_total: int):
        """Make room for ``n_total`` cells without growing inside a kernel."""
        if self.dense:
            n_total = min(n_total, self.keyspace)
        if n_total > self.cap:
            self._alloc_cells(max(n_total, 2 * self.cap))
        if not self.dense and 2 * n_total > self.tab_keys.shape[0]:
            self._alloc_table(_pow2_at_least(max(2 * n_total, 2 * self.tab_keys.shape[0])))
            cube_reindex(self.cell_key, self.n_cells, self.dense, self.index, self.tab_keys,
                         self.tab_cell)

    def _grow(self):
        self.reserve(max(self.n_cells + 1, 2 * self.limit()))

    def _reset_cells(self, lo: int, hi: int):
        """Put cells ``lo..hi-1`` back into the empty state (the kernels rely on it)."""
        if hi <= lo:
            return
        self.cnt[lo:hi] = 0
        self.fmiss[lo:hi] = 0
        self.fsum[lo:hi] = 0.0
        self.fmin[lo:hi] = np.inf
        self.fmax[lo:hi] = -np.inf
        self.fmean[lo:hi] = 0.0
        self.fm2[lo:hi] = 0.0
        self.hll[lo:hi] = 0
        self.qs[lo:hi] = 0

    def clear(self):
        """Remove every cell in O(cells) (reuse the buffers for the next batch)."""
        n = self.n_cells
        cube_clear(self.cell_key, n, self.dense, self.index, self.tab_keys)
        self._reset_cells(0, n)
        self.counters[:] = 0

    # ---- kernels ---------------------------------------------------------------------------
    def accumulate(self, keys, b, vrows, mom, hrows, qrows, q_min, q_inv_log_gamma):
        """Add the events of ``BatchArrays`` ``b`` with packed ``keys``; returns the rejected count."""
        before = int(self.counters[1])
        start = 0
        while True:
            start = cube_accumulate(
                keys, b.vals, vrows, mom, b.hashes, hrows, self.shape[2], qrows, q_min,
                q_inv_log_gamma, start, self.dense, self.index,
                self.tab_keys, self.tab_cell, self.cell_key, self.cnt, self.fmiss,
                self.fsum, self.fmin, self.fmax, self.fmean, self.fm2, self.hll, self.qs,
                self.counters, self.limit())
            if start >= b.n:
                return int(self.counters[1]) - before
            self._grow()

    def merge_cells(self, src_keys: np.ndarray, src: "CellTable", mom: np.ndarray, n_src: int | None = None):
        """Merge ``src``'s cells into this table, cell ``s`` under key ``src_keys[s]`` (-1 skip)."""
        n_src = src.n_cells if n_src is None else n_src
        start = 0
        while True:
            start = cube_merge_cells(
                src_keys, n_src, src.cnt, src.fmiss, src.fsum, src.fmin, src.fmax, src.fmean, src.fm2,
                src.hll, src.qs, mom, start, self.dense, self.index, self.tab_keys,
                self.tab_cell, self.cell_key, self.cnt, self.fmiss, self.fsum,
                self.fmin, self.fmax, self.fmean, self.fm2, self.hll, self.qs, self.counters,
                self.limit())
            if start >= n_src:
                return
            self._grow()

    def count_new(self, keys: np.ndarray, n: int) -> int:
        """How many of the distinct ``keys[:n]`` are not cells yet."""
        return int(cube_count_new(keys, n, self.dense, self.index, self.tab_keys, self.tab_cell))

    def compact(self, keep: np.ndarray):
        """Keep only the cells where ``keep`` (length ``n_cells``) is true; rebuild the index."""
        n = self.n_cells
        cube_clear(self.cell_key, n, self.dense, self.index, self.tab_keys)
        idx = np.flatnonzero(keep)
        for name in CELL_ARRAYS:
            arr = getattr(self, name)
            arr[:len(idx)] = arr[idx]
        self._reset_cells(len(idx), n)
        self.counters[0] = len(idx)
        cube_reindex(self.cell_key, len(idx), self.dense, self.index, self.tab_keys,
                     self.tab_cell)

    # ---- reporting and checkpoint ---------------------------------------------------------
    @property
    def nbytes(self) -> int:
        arrays = [getattr(self, name) for name in CELL_ARRAYS]
        arrays += [self.index, self.tab_keys, self.tab_cell]
        return int(sum(a.nbytes for a in arrays))

    def to_state(self, prefix: str) -> dict:
        n = self.n_cells
        d = {f"{prefix}{name}": getattr(self, name)[:n].copy() for name in CELL_ARRAYS}
        d[f"{prefix}n_rejected"] = int(self.counters[1])
        return d

    def load_state(self, d: dict, prefix: str):
        n = len(d[f"{prefix}cell_key"])
        self.reserve(n)
        for name in CELL_ARRAYS:
            src = np.asarray(d[f"{prefix}{name}"])
            dst = getattr(self, name)
            if src.shape[1:] != dst.shape[1:]:
                raise ValueError(f"state array {prefix}{name} has shape {src.shape}, expected "
                                 f"(n, {', '.join(map(str, dst.shape[1:]))}) for this cube spec")
            dst[:n] = src
        self.counters[0] = n
        self.counters[1] = int(d[f"{prefix}n_rejected"])
        cube_reindex(self.cell_key, n, self.dense, self.index, self.tab_keys, self.tab_cell)
