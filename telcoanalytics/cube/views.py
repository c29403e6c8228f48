"""OLAP views over a cube: :class:`CubeView` (group-by, slice, dice, drill-down, roll-up, top-k,
pivot) and :class:`Pivot` cross-tabs, and :func:`to_pandas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from telcoanalytics.cube.spec import Measure

if TYPE_CHECKING:
    from telcoanalytics.cube.cube import Cube


@dataclass
class Pivot:
    """A cross-tab: ``values[i, j]`` is the measure for ``rows[i]`` x ``columns[j]`` (NaN empty)."""

    row_dim: str
    col_dim: str
    measure: str
    rows: np.ndarray
    columns: np.ndarray
    values: np.ndarray


class CubeView:
    """An immutable OLAP query on a cube; every method returns a new view or a result.

    Examples
    --------
    >>> v = cube.view().group_by("region")                    # doctest: +SKIP
    >>> v.drill_down("site").slice(service="voice").top_k("count", 3)   # doctest: +SKIP
    """

    def __init__(self, cube: Cube, by=(), where=None):
        self.cube = cube
        self.by = tuple(by)
        self.where = dict(where or {})
        cube._check_dims(self.by, "group_by")
        cube._check_dims(list(self.where), "where")

    def group_by(self, *dims: str) -> CubeView:
        return CubeView(self.cube, dims, self.where)

    def slice(self, **fixed) -> CubeView:
        """Fix dimensions to one value each (they leave the group-by)."""
        where = dict(self.where)
        where.update(fixed)
        return CubeView(self.cube, [d for d in self.by if d not in fixed], where)

    def dice(self, **conds) -> CubeView:
        """Keep only values in sets (list/set) or ranges ((lo, hi) tuples) of dimensions."""
        where = dict(self.where)
        where.update(conds)
        return CubeView(self.cube, self.by, where)

    def drill_down(self, dim: str) -> CubeView:
        """Add a finer dimension to the group-by (e.g. region -> region, site)."""
        if dim in self.by:
            raise ValueError(f"already grouped by {dim!r}")
        return CubeView(self.cube, self.by + (dim,), self.where)

    def roll_up(self, dim: str, to: str | None = None) -> CubeView:
        """Remove ``dim`` from the group-by, or replace it by a coarser ``to`` (site -> region)."""
        if dim not in self.by:
            raise ValueError(f"not grouped by {dim!r}; grouped by {self.by}")
        if to is not None and to not in self.cube.all_dims[dim].derive:
            raise ValueError(
                f"{to!r} is not a roll-up of {dim!r}; roll-ups of {dim!r}: {sorted(self.cube.all_dims[dim].derive)}"
            )
        by = [to if d == dim else d for d in self.by] if to else [d for d in self.by if d != dim]
        return CubeView(self.cube, by, self.where)

    def result(self, measures=None) -> np.ndarray:
        return self.cube.query(self.by, self.where, measures)

    to_numpy = result

    def top_k(self, measure: str, k: int, ascending: bool = False) -> np.ndarray:
        """The ``k`` groups with the largest (or smallest) ``measure`` (NaN last), best first;
        ties in group order.

        When the group-by is a materialised cuboid itself (no filter) and the measure is a
        count, sum, min, max or mean, the ``k`` cells are selected on the cuboid's measure
        column first (``np.partition``) and only they are decoded.
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cube = self.cube
        ckey = ("top_k", self.by, _freeze(self.where), str(measure), int(k), bool(ascending))
        with cube._lock:
            hit = cube._cached(ckey)
            if hit is None:
                hit = cube._top_k_cells(self.by, self.where, measure, int(k), ascending)
                if hit is None:
                    res = cube.query(self.by, self.where, _shared=True)
                    name = measure if measure in (res.dtype.names or ()) else Measure.parse(measure).name
                    if name not in res.dtype.names:
                        raise ValueError(f"unknown measure {measure!r}; columns are {res.dtype.names}")
                    hit = res[_best(res[name], np.arange(len(res)), int(k), ascending)]
                cube._store(ckey, hit)
            return hit.copy()

    def pivot(self, rows: str, columns: str, measure: str = "count") -> Pivot:
        """Cross-tab of ``measure`` with ``rows`` x ``columns`` (other group-bys are summed out)."""
        res = self.cube.query((rows, columns), self.where)
        name = measure if measure in res.dtype.names else Measure.parse(measure).name
        if name not in res.dtype.names:
            raise ValueError(f"unknown measure {measure!r}; columns are {res.dtype.names}")
        r, ri = np.unique(res[rows], return_inverse=True)
        c, cj = np.unique(res[columns], return_inverse=True)
        vals = np.full((len(r), len(c)), np.nan)
        vals[ri, cj] = res[name]
        return Pivot(rows, columns, name, r, c, vals)

    def to_pandas(self):
        return to_pandas(self.result())


def to_pandas(arr: np.ndarray):
    """A pandas DataFrame of a result array (pandas is optional).

    Raises
    ------
    ImportError
        If pandas is not installed.
    """
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas is installed in the test environment
        raise ImportError("to_pandas needs pandas; pip install pandas, or use the NumPy result") from e
    return pd.DataFrame({n: arr[n] for n in arr.dtype.names})


def _freeze(where: dict):
    """A hashable, order-independent form of a ``where`` dict (the query cache key)."""
    out = []
    for k in sorted(where):
        v = where[k]
        if isinstance(v, tuple):
            out.append((k, "range", v))
        elif isinstance(v, (list, set, frozenset, np.ndarray)):
            vals = np.asarray(list(v) if isinstance(v, (set, frozenset)) else v)
            out.append((k, "in", tuple(sorted(set(vals.tolist()), key=repr))))
        else:
            out.append((k, "eq", v.item() if hasattr(v, "item") else v))
    return tuple(out)


def _best(values: np.ndarray, tie: np.ndarray, k: int, ascending: bool) -> np.ndarray:
    """Positions of the ``k`` best ``values`` (NaN last), ordered by value then ``tie``."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isnan(v), np.inf if ascending else -np.inf, v)
    v = v if ascending else -v
    k = min(k, len(v))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    cand = np.flatnonzero(v <= np.partition(v, k - 1)[k - 1]) if k < len(v) else np.arange(len(v))
    return cand[np.lexsort((tie[cand], v[cand]))[:k]]
