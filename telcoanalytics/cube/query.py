"""Queries of a :class:`~telcoanalytics.cube.cube.Cube`: group-by from the smallest covering
cuboid, slices / dices / ranges on labels, top-k, with a per-version result cache.
"""

from __future__ import annotations

import numpy as np

from kernels.cube import cube_decode
from kernels.hll import hll_estimate
from kernels.qsketch import qs_quantiles
from telcoanalytics.cube.spec import DerivePlan, KeySpace, Measure, covers
from telcoanalytics.cube.table import CellTable
from telcoanalytics.cube.views import CubeView, _best, _freeze

_OUT_DENSE_MAX = 1 << 20
_RESULT_CACHE_SIZE = 256


class _CubeQueries:
    """Mixin of :class:`~telcoanalytics.cube.cube.Cube`: queries answered from its materialised cuboids."""

    def view(self) -> CubeView:
        """An empty query (grand total) to refine with group_by / slice / dice / drill_down."""
        return CubeView(self)

    def group_by(self, *dims: str) -> CubeView:
        return CubeView(self, by=tuple(dims))

    def _check_dims(self, names, what):
        bad = [n for n in names if n not in self.all_dims]
        if bad:
            raise ValueError(f"{what} names unknown dimensions {bad}; the cube has {sorted(self.all_dims)}")

    def answering_cuboid(self, needed) -> int:
        """Index of the smallest materialised cuboid that can answer a group-by over ``needed``.

        Raises
        ------
        ValueError
            If no materialised cuboid covers the dimensions.
        """
        best = None
        for i, cb in enumerate(self.cuboids):
            if covers(cb.keys.dims, needed, self.all_dims):
                if best is None or cb.table.n_cells < self.cuboids[best].table.n_cells:
                    best = i
        if best is None:
            raise ValueError(
                f"no materialised cuboid can answer a group-by over {tuple(needed)}; "
                f"materialised: {[c.dims for c in self.cuboids]}. Add a cuboid "
                "containing these dimensions (or finer ones) to the spec"
            )
        return best

    def _codes(self, ci: int, name: str) -> np.ndarray:
        key = (ci, name)
        hit = self._decode_cache.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        cb = self.cuboids[ci]
        n = cb.table.n_cells
        plan = DerivePlan.build(cb.keys, [name], self.all_dims)
        out = np.empty((1, n), dtype=np.int64)
        cube_decode(cb.table.cell_key, n, plan.args(), out)
        codes = out[0]
        canon = self.all_dims[name].canon
        if canon is not None:  # versioned topology codes: group by the node, not the slot
            codes = canon[codes]
        self._decode_cache[key] = (self.version, codes)
        return codes

    def query(self, by=(), where: dict | None = None, measures=None, *, _shared=False) -> np.ndarray:
        """Group-by ``by`` over the rows matching ``where``, from the smallest covering cuboid.

        Parameters
        ----------
        by : sequence of str
            Dimensions to group by (any dimension of the cube or derivable from one).
        where : dict name -> value, list/set/array of values, or (lo, hi) tuple
            Slice (one value), dice (several values) or range ``lo <= label < hi`` (either
            bound None) on dimension *labels* (external ids, names, bucket start ms).
        measures : sequence of measure names, optional (default all)

        Returns
        -------
        numpy structured array
            One row per group (sorted by the group codes): a column per dimension (labels) and
            per measure.

        Notes
        -----
        Results are cached per cube version: a repeated query between two batches costs a copy;
        every batch (or merge, roll, topology change) invalidates the cache, so a result never
        mixes batches.

        Raises
        ------
        ValueError
            For unknown dimensions or measures, or unknown filter values.
        """
        by = (by,) if isinstance(by, str) else tuple(by)
        where = dict(where or {})
        if len(set(by)) != len(by):
            raise ValueError(f"by repeats a dimension: {by}")
        self._check_dims(by, "by")
        self._check_dims(list(where), "where")
        ms = self._select_measures(measures)
        needed = list(dict.fromkeys(list(by) + list(where)))
        ckey = (by, _freeze(where), tuple(m.name for m in ms))
        with self._lock:
            hit = self._cached(ckey)
            if hit is None:
                hit = self._query(by, where, ms, needed)
                self._store(ckey, hit)
            return hit if _shared else hit.copy()

    def _cached(self, ckey):
        """A cached result of this version, or None (caller holds the lock)."""
        if self._cache_version != self.version:
            self._result_cache.clear()
            self._decode_cache.clear()
            self._cache_version = self.version
        return self._result_cache.get(ckey)

    def _store(self, ckey, res: np.ndarray):
        if len(self._result_cache) >= _RESULT_CACHE_SIZE:
            self._result_cache.pop(next(iter(self._result_cache)))
        self._result_cache[ckey] = res

    def _query(self, by, where, ms, needed) -> np.ndarray:
        """The group-by itself (caller holds the lock; ``query`` caches the result)."""
        ci = self.answering_cuboid(needed)
        src = self.cuboids[ci].table
        n = src.n_cells
        mask = None
        for nm, cond in where.items():
            m = self._filter(nm, self._codes(ci, nm), cond)
            mask = m if mask is None else mask & m
        ks = KeySpace.of(by, self.all_dims)
        if not where and by == self.cuboids[ci].keys.dims:
            return self._finalize(src, ks, by, ms)  # the cuboid itself: no roll-up
        keys = np.zeros(n, dtype=np.int64)
        for j, nm in enumerate(by):
            keys += self._codes(ci, nm) * ks.strides[j]
        if mask is not None:
            keys[~mask] = -1
        dense = ks.size <= max(_OUT_DENSE_MAX // 16, 4 * n)
        out = CellTable(ks.size, dense, *self._tshape, capacity=min(n, ks.size) if n else 1)
        out.merge_cells(keys, src, self.mom, n)
        return self._finalize(out, ks, by, ms)

    def _top_k_cells(self, by, where, measure, k, ascending):
        """Top-k straight from a cuboid's cells (see ``CubeView.top_k``), or None."""
        if where:
            return None
        m = next((x for x in self.measures if measure in (x.name, _measure_str(x))), None)
        if m is None or m.kind not in ("count", "sum", "min", "max", "mean"):
            return None
        with self._lock:
            ci = self.answering_cuboid(by)
            cb = self.cuboids[ci]
            if tuple(by) != cb.keys.dims:
                return None
            t = cb.table
            n = t.n_cells
            ck = t.cell_key[:n]
            if m.kind == "count":
                v = t.cnt[:n].astype(np.float64)
            else:
                f = self.value_names.index(m.field)
                nv = t.cnt[:n] - t.fmiss[:n, f]
                with np.errstate(invalid="ignore", divide="ignore"):
                    col = {"sum": t.fsum, "min": t.fmin, "max": t.fmax, "mean": t.fsum}[m.kind][:n, f]
                    v = np.where(nv > 0, col / nv if m.kind == "mean" else col, np.nan)
            sel = _best(v, ck, k, ascending)
            sel = sel[np.argsort(ck[sel])]  # the selected cells in group order
            sub = _CellsView(len(sel), ck[sel], t, sel)
            res = self._finalize(sub, cb.keys, tuple(by), self.measures)
        return res[_best(res[m.name], np.arange(len(res)), k, ascending)]

    def _filter(self, name: str, codes: np.ndarray, cond) -> np.ndarray:
        dim = self.all_dims[name]
        if isinstance(cond, tuple):
            if len(cond) != 2:
                raise ValueError(f"where[{name!r}] range must be (lo, hi), got {cond!r}")
            lab = dim.label_of(codes)
            m = np.ones(len(codes), dtype=bool)
            if cond[0] is not None:
                m &= lab >= cond[0]
            if cond[1] is not None:
                m &= lab < cond[1]
            return m
        if isinstance(cond, (list, set, frozenset, np.ndarray)):
            want = dim.encode(list(cond) if isinstance(cond, (set, frozenset)) else cond)
        else:
            want = dim.encode([cond])
        if len(want) == 1:
            return codes == want[0]
        return np.isin(codes, want)

    def _select_measures(self, measures):
        if measures is None:
            return list(self.measures)
        names = {m.name: m for m in self.measures}
        out = []
        for x in [measures] if isinstance(measures, str) else measures:
            nm = x if x in names else Measure.parse(x).name
            if nm not in names:
                raise ValueError(f"unknown measure {x!r}; the cube has {list(names)}")
            out.append(names[nm])
        return out

    def _finalize(self, t: CellTable, ks: KeySpace, by, ms) -> np.ndarray:
        k = t.n_cells
        ck = t.cell_key[:k]
        if ks.size <= 8 * k + 4096:  # keys are distinct: a scatter over the key space sorts
            pos = np.full(ks.size, -1, dtype=np.int64)
            pos[ck] = np.arange(k)
            order = pos[pos >= 0]
        else:
            order = np.argsort(ck)
        keys = ck[order]
        cols, dtypes = [], []
        for j, nm in enumerate(by):
            code = (keys // ks.strides[j]) % ks.radix[j]
            dim = self.all_dims[nm]
            cols.append(dim.label_of(code))
            dtypes.append((nm, dim.label_dtype))
        fidx = {nm: i for i, nm in enumerate(self.value_names)}
        for m in ms:
            if m.kind == "count":
                cols.append(t.cnt[:k][order])
                dtypes.append((m.name, np.int64))
                continue
            if m.kind == "distinct":
                h = self.hash_names.index(m.field)
                est = np.empty(k)
                hll_estimate(np.ascontiguousarray(t.hll[:k, h]), k, est)
                col = est[order]
            elif m.kind == "quantile":
                qi = self.q_names.index(m.field)
                res = np.empty((k, 1))
                qs_quantiles(
                    np.ascontiguousarray(t.qs[:k, qi]), k, np.array([m.q]), self._q_min, self.spec.quantile_gamma, res
                )
                col = res[order, 0]
            else:
                f = fidx[m.field]
                nv = (t.cnt[:k] - t.fmiss[:k, f])[order]
                with np.errstate(invalid="ignore", divide="ignore"):
                    if m.kind == "sum":
                        col = t.fsum[:k, f][order]
                    elif m.kind == "min":
                        col = t.fmin[:k, f][order]
                    elif m.kind == "max":
                        col = t.fmax[:k, f][order]
                    elif m.kind == "mean":
                        col = t.fsum[:k, f][order] / nv
                    else:
                        var = t.fm2[:k, f][order] / (nv - 1)
                        var = np.where(nv >= 2, np.maximum(var, 0.0), np.nan)
                        col = np.sqrt(var) if m.kind == "std" else var
                col = np.where(nv > 0, col, np.nan)
            cols.append(col)
            dtypes.append((m.name, np.float64))
        out = np.empty(k, dtype=dtypes)
        for (nm, _), c in zip(dtypes, cols):
            out[nm] = c
        return out


class _CellsView:
    """Some cells of a CellTable, with the attributes ``Cube._finalize`` reads."""

    def __init__(self, n: int, cell_key: np.ndarray, t: CellTable, sel: np.ndarray):
        self.n_cells = n
        self.cell_key = cell_key
        for name in ("cnt", "fmiss", "fsum", "fmin", "fmax", "fmean", "fm2", "hll", "qs"):
            setattr(self, name, getattr(t, name)[sel])


def _measure_str(m: Measure) -> str:
    if m.kind == "count":
        return "count"
    if m.kind == "quantile":
        return f"p{m.q * 100!r}:{m.field}"
    return f"{m.kind}:{m.field}"
