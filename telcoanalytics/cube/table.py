"""CellTable: the compact cell store behind every cuboid (dense or hashed index over packed keys).

Cells live in insertion order in preallocated arrays that double when full; an index maps packed
keys to cells: a dense ``int32`` array over the key space when it is small (``dense=True``),
otherwise an open-addressing hash table (linear probing, load <= 1/2, capacity a power of two).
Both layouts answer every query identically (tests check it); the kernels are in
``kernels/cube.py``.

:class:`PositionalCellTable` adds a *positional* store for the accumulation of a large cuboid:
the count / sum / min / max of key ``k`` live at row ``k`` of key-space sized arrays, so an event
costs no index lookup; the compact cell arrays are gathered from it when something reads them.
"""

from __future__ import annotations

import numpy as np

from kernels.cube import (
    POS_CNT_MASK,
    cube_accumulate,
    cube_accumulate_pos,
    cube_clear,
    cube_count_new,
    cube_gather_pos,
    cube_key_pos,
    cube_merge_cells,
    cube_reindex,
)

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

    def __init__(
        self,
        keyspace: int,
        dense: bool,
        n_fields: int,
        n_hll: int,
        hll_p: int,
        n_q: int,
        q_buckets: int,
        capacity: int = _MIN_CAP,
    ):
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

    def reserve(self, n_total: int, exact: bool = False):
        """Make room for ``n_total`` cells without growing inside a kernel (at least doubling the
        cells and the hash table when they grow; ``exact``: cells for ``n_total`` and the smallest
        hash table holding them, for a caller that sized ``n_total`` itself)."""
        if self.dense:
            n_total = min(n_total, self.keyspace)
        if n_total > self.cap:
            self._alloc_cells(n_total if exact else max(n_total, 2 * self.cap))
        if not self.dense and 2 * n_total > self.tab_keys.shape[0]:
            grow = 2 * n_total if exact else max(2 * n_total, 2 * self.tab_keys.shape[0])
            self._alloc_table(_pow2_at_least(grow))
            cube_reindex(self.cell_key, self.n_cells, self.dense, self.index, self.tab_keys, self.tab_cell)

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
    def _index(self) -> tuple:
        """The index arrays as the kernels take them: a plain tuple laid out as ``CellIndex`` (the
        current arrays; plain tuples take Numba's fast dispatch path, see ``kernels.cube``)."""
        return (self.dense, self.index, self.tab_keys, self.tab_cell, self.cell_key, self.counters)

    def _measures(self) -> tuple:
        """The measure arrays as the kernels take them: a plain tuple laid out as ``CellMeasures``."""
        return (self.cnt, self.fmiss, self.fsum, self.fmin, self.fmax, self.fmean, self.fm2, self.hll, self.qs)

    def accumulate(self, keys, b, vrows, mom, hrows, qrows, q_min, q_inv_log_gamma):
        """Add the events of ``BatchArrays`` ``b`` with packed ``keys``; returns the rejected count."""
        before = int(self.counters[1])
        start = 0
        while True:
            start = cube_accumulate(
                self._index(),
                self._measures(),
                (vrows, mom, hrows, self.shape[2], qrows, q_min, q_inv_log_gamma),  # AccumParams
                (keys, b.vals, b.hashes),  # EventBatch
                start,
                self.limit(),
            )
            if start >= b.n:
                return int(self.counters[1]) - before
            self._grow()

    def merge_cells(self, src_keys: np.ndarray, src: CellTable, mom: np.ndarray, n_src: int | None = None):
        """Merge ``src``'s cells into this table, cell ``s`` under key ``src_keys[s]`` (-1 skip)."""
        n_src = src.n_cells if n_src is None else n_src
        start = 0
        while True:
            start = cube_merge_cells(
                self._index(), self._measures(), mom, src._measures(), src_keys, n_src, start, self.limit()
            )
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
            arr[: len(idx)] = arr[idx]
        self._reset_cells(len(idx), n)
        self.counters[0] = len(idx)
        cube_reindex(self.cell_key, len(idx), self.dense, self.index, self.tab_keys, self.tab_cell)

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
                raise ValueError(
                    f"state array {prefix}{name} has shape {src.shape}, expected "
                    f"(n, {', '.join(map(str, dst.shape[1:]))}) for this cube spec"
                )
            dst[:n] = src
        self.counters[0] = n
        self.counters[1] = int(d[f"{prefix}n_rejected"])
        cube_reindex(self.cell_key, n, self.dense, self.index, self.tab_keys, self.tab_cell)


P_ARRAYS = ("cnt", "fmiss", "fsum", "fmin", "fmax")
_EPOCH_MAX = 1 << 21  # epoch tags stay below 2**62 with POS_TAG_SHIFT = 40


def _p_property(name: str):
    def get(self):
        self._current()
        return self._c[name]

    def put(self, value):
        self._c[name] = value

    return property(get, put)


class PositionalCellTable(CellTable):
    """A dense CellTable whose events accumulate into key-indexed (positional) measure arrays.

    Accumulating an event reads and writes the row of its key in ``cnt, fmiss, fsum, fmin,
    fmax`` directly (``cube_accumulate_pos``) instead of looking its cell up in the index first;
    the row is the mixed-radix number of the key's codes over the dimension cardinalities
    (``cube_key_pos``: no rows for the power-of-two padding of the keys). The
    compact cell arrays every other operation uses (queries, merges, checkpoints, retention)
    are refreshed from the rows touched since the last read (``_sync``: O(touched cells), the
    kernel lists them through an epoch tag in the count word); operations writing the compact
    arrays scatter them back (``_scatter``). Both stores hold the same cells in the same order,
    so results are identical to a :class:`CellTable`'s.

    Only for at most one value field without moments or sketches (the fast accumulation case).
    Positional rows are initialised when their key is first seen, so key-space memory is only
    touched for keys that occur.

    Parameters
    ----------
    keyspace, n_fields, capacity : as :class:`CellTable` (the index is dense).
    shifts, radix : int arrays
        Key layout (``KeySpace.shifts`` / ``KeySpace.radix``) of the stored dimensions.
    cards : int array
        Their cardinalities (every code is below its cardinality).

    Raises
    ------
    ValueError
        If ``n_fields`` > 1.
    """

    def __init__(self, keyspace: int, n_fields: int, shifts, radix, cards, capacity: int = _MIN_CAP):
        if int(n_fields) > 1:
            raise ValueError(f"a positional table holds at most one value field, got {n_fields}")
        self._c: dict = {}
        # [epoch, touched rows listed, cells at the start of the epoch]
        self._pstate = np.array([1, 0, 0], dtype=np.int64)
        self._dirty_pos = np.empty(0, dtype=np.int64)
        self._dirty_key = np.empty(0, dtype=np.int64)
        cards = np.asarray(cards, dtype=np.int64)
        self._shift = np.asarray(shifts, dtype=np.int64)
        self._mask = np.asarray(radix, dtype=np.int64) - 1
        self._mstride = np.ones(len(cards), dtype=np.int64)
        for j in range(len(cards) - 2, -1, -1):
            self._mstride[j] = self._mstride[j + 1] * cards[j + 1]
        self.n_rows = int(np.prod(cards))
        k, f = self.n_rows, int(n_fields)
        # zeros / empty are lazily mapped: pages of keys never seen are never touched
        self._p = {
            "cnt": np.zeros(k, dtype=np.int64),
            "fmiss": np.empty((k, f), dtype=np.int64),
            "fsum": np.empty((k, f)),
            "fmin": np.empty((k, f)),
            "fmax": np.empty((k, f)),
        }
        super().__init__(keyspace, True, n_fields, 0, 4, 0, 0, capacity)

    cnt = _p_property("cnt")
    fmiss = _p_property("fmiss")
    fsum = _p_property("fsum")
    fmin = _p_property("fmin")
    fmax = _p_property("fmax")

    def _alloc_cells(self, cap: int):
        if self._c:
            super()._alloc_cells(cap)  # reads the arrays first: nothing is listed after
        else:
            # the compact measure arrays do not exist before the first read (_materialise):
            # a build that is not read meanwhile touches no memory for them
            F, H, p, Q, nb = self.shape
            old = self.cell_key[: self.n_cells] if self.cap else None
            self.cell_key = np.empty(cap, dtype=np.int64)
            if old is not None:
                self.cell_key[: len(old)] = old
            self.fmean = np.zeros((cap, F))  # never written before _materialise
            self.fm2 = np.zeros((cap, F))
            self.hll = np.zeros((cap, 0, 0), dtype=np.uint8)
            self.qs = np.zeros((cap, 0, 0), dtype=np.int64)
            self.cap = cap
        self._dirty_pos = np.empty(cap, dtype=np.int64)  # at most one entry per cell
        self._dirty_key = np.empty(cap, dtype=np.int64)

    def _current(self):
        """Bring the compact cells up to date with the positional rows."""
        if not self._c:
            self._materialise()
        elif self._pstate[1] or self._pstate[2] < self.counters[0]:
            self._sync()

    def _materialise(self):
        """Allocate the compact measure arrays (empty state) and gather every cell."""
        cap, F = self.cap, self.shape[0]
        self._c = {
            "cnt": np.zeros(cap, dtype=np.int64),
            "fmiss": np.zeros((cap, F), dtype=np.int64),
            "fsum": np.zeros((cap, F)),
            "fmin": np.full((cap, F), np.inf),
            "fmax": np.full((cap, F), -np.inf),
        }
        self._pstate[1] = 0
        self._pstate[2] = 0
        self._sync()

    def _pos_of(self, keys: np.ndarray) -> np.ndarray:
        """Rows of packed keys (``-1`` stays ``-1``)."""
        out = np.empty(len(keys), dtype=np.int64)
        cube_key_pos(keys, self._shift, self._mask, self._mstride, out)
        return out

    def _sync(self):
        """Refresh the compact cells touched since the last read from their positional rows."""
        p, c, st = self._p, self._c, self._pstate
        n = self.n_cells
        cube_gather_pos(
            (c["cnt"], c["fmiss"], c["fsum"], c["fmin"], c["fmax"]),  # PosRows (compact cells)
            (p["cnt"], p["fmiss"], p["fsum"], p["fmin"], p["fmax"]),  # PosRows (positional rows)
            (self._dirty_pos, self._dirty_key, st),  # PosDirty
            (self._shift, self._mask, self._mstride),  # PosLayout
            self._index(),
            int(st[1]),
            int(st[2]),
            n,
        )
        st[1] = 0
        st[2] = n
        st[0] += 1
        if st[0] >= _EPOCH_MAX:  # wrap: clear every tag (O(cells), once in 2**21 reads)
            rows = self._pos_of(self.cell_key[: self.n_cells])
            p["cnt"][rows] &= POS_CNT_MASK
            st[0] = 1

    def _scatter(self):
        """Write the compact cells back to their positional rows (after a compact-path write)."""
        rows = self._pos_of(self.cell_key[: self.n_cells])
        for name in P_ARRAYS:
            self._p[name][rows] = self._c[name][: len(rows)]  # counts untagged: not listed
        self._pstate[2] = len(rows)

    def _forget(self):
        """Mark the rows of the current cells unseen (they are re-initialised when seen)."""
        self._p["cnt"][self._pos_of(self.cell_key[: self.n_cells])] = 0
        self._pstate[1] = 0
        self._pstate[2] = self.counters[0]  # nothing to gather until the caller's op ends

    def accumulate(self, keys, b, vrows, mom, hrows, qrows, q_min, q_inv_log_gamma):
        """As :meth:`CellTable.accumulate`, into the positional rows."""
        before = int(self.counters[1])
        has_v = len(vrows) == 1
        v = b.vals[vrows[0]] if has_v else np.zeros(0)
        p = self._p
        rows = (p["cnt"], p["fmiss"], p["fsum"], p["fmin"], p["fmax"])  # PosRows
        pos = self._pos_of(keys)
        start = 0
        while True:
            dirty = (self._dirty_pos, self._dirty_key, self._pstate)  # PosDirty (reallocated by _grow)
            start = cube_accumulate_pos(self._index(), rows, dirty, pos, keys, v, has_v, start, self.limit())
            if start >= b.n:
                return int(self.counters[1]) - before
            self._grow()

    def merge_cells(self, src_keys, src, mom, n_src=None):
        super().merge_cells(src_keys, src, mom, n_src)
        self._scatter()

    def clear(self):
        self._forget()  # the cells go: nothing to gather
        super().clear()
        self._pstate[2] = 0

    def compact(self, keep):
        self._current()  # gather first: CellTable.compact moves cell_key, clears the index
        self._forget()
        super().compact(keep)
        self._scatter()

    def load_state(self, d, prefix):
        self._current()  # compact arrays up to date (cells beyond the loaded stay empty)
        self._forget()  # the loaded cells replace the compact arrays
        super().load_state(d, prefix)
        self._scatter()

    @property
    def nbytes(self) -> int:
        arrays = list(self._c.values()) + list(self._p.values())
        arrays += [
            self.cell_key,
            self._dirty_pos,
            self._dirty_key,
            self.fmean,
            self.fm2,
            self.hll,
            self.qs,
            self.index,
            self.tab_keys,
            self.tab_cell,
        ]
        return int(sum(a.nbytes for a in arrays))
