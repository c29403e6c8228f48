"""A compact history: hourly and daily roll-ups written as Parquet partitioned by day, read back
to compare behaviour over weeks and months.

Layout (Hive partitioning, so DuckDB, polars, pandas and Spark read it as is)::

    <root>/<name>/resolution=hour/day=2026-03-02/part-<n>.parquet
    <root>/<name>/resolution=day/day=2026-03-02/part-<n>.parquet

A *series table* has a ``bucket_ms`` column (start of the hour or day, ms UTC), key columns
(``element_id``, ``metric_id``, ``region``, ``service`` ...) and, per value, the mergeable
statistics ``<v>_count``, ``<v>_sum``, ``<v>_min``, ``<v>_max`` (so hours roll up to days and
repeated writes of a day combine exactly; the mean is ``sum / count``). :func:`rollup` computes
them from raw rows (windows, KPI series, metrics); :meth:`History.write_cube` stores a cube's
group-by per hour. Files are zstd-compressed with dictionary encoding; ``bytes_per_element_day``
reports the footprint.

Writing and reading need pyarrow (``pip install telcoanalytics[io]``); without it every call
raises an ImportError that says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["History", "rollup", "STATS", "MS_HOUR", "MS_DAY"]

MS_HOUR = 3_600_000
MS_DAY = 86_400_000
STATS = ("count", "sum", "min", "max")
_RES = {"hour": MS_HOUR, "day": MS_DAY}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is installed in the test environment
        raise ImportError(
            "the history is stored as Parquet and needs pyarrow; install it with `pip install "
            "telcoanalytics[io]` (or `pip install pyarrow`)"
        ) from exc
    return pa, pq


def rollup(ts_ms, keys: dict, values: dict, bin_ms: int = MS_HOUR) -> dict:
    """Count, sum, min and max of every value per (time bucket, keys).

    Parameters
    ----------
    ts_ms : int64 (n,)
        Event times, ms UTC.
    keys : dict name -> integer array (n,)
        Grouping columns (element ids, metric ids, codes).
    values : dict name -> float array (n,)
        Values; NaN is missing (not counted).
    bin_ms : int
        Bucket width (``MS_HOUR``, ``MS_DAY`` or any positive width); buckets start at multiples
        of it (UTC).

    Returns
    -------
    dict of arrays
        ``bucket_ms``, the keys, and ``<v>_count`` (int64), ``<v>_sum``, ``<v>_min``,
        ``<v>_max`` (float64; NaN where a group has no valid value), one row per group, sorted by
        bucket then keys.

    Raises
    ------
    ValueError
        For lengths that differ, non-integer keys or a bad ``bin_ms``.

    Examples
    --------
    >>> r = rollup(np.array([0, 10, 3_600_000]), {"element_id": np.array([7, 7, 7])}, {"x": np.array([1.0, 3.0, 5.0])})
    >>> r["bucket_ms"].tolist(), r["x_sum"].tolist(), r["x_count"].tolist()
    ([0, 3600000], [4.0, 5.0], [2, 1])
    """
    t = np.asarray(ts_ms, dtype=np.int64)
    n = len(t)
    if int(bin_ms) <= 0:
        raise ValueError(f"bin_ms must be a positive number of milliseconds, got {bin_ms!r}")
    cols = [t // int(bin_ms)]
    for k, a in keys.items():
        a = np.asarray(a)
        if a.shape != (n,) or a.dtype.kind not in "iu":
            raise ValueError(f"key {k!r} must be an integer array of shape ({n},), got {a.dtype} {a.shape}")
        cols.append(a.astype(np.int64))
    vals = {}
    for k, a in values.items():
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"value {k!r} must have shape ({n},) like ts_ms, got {a.shape}")
        vals[k] = a
    if n:
        order = _order(cols)
        sc = [c[order] for c in cols]
        brk = np.zeros(n, dtype=bool)
        brk[0] = True
        for c in sc:
            brk[1:] |= c[1:] != c[:-1]
        starts = np.flatnonzero(brk)
        g = np.cumsum(brk) - 1
    else:
        order, sc, starts, g = np.zeros(0, np.int64), cols, np.zeros(0, np.int64), np.zeros(0, np.int64)
    ng = len(starts)
    out = {"bucket_ms": sc[0][starts] * int(bin_ms)}
    for k, c in zip(keys, sc[1:]):
        out[k] = c[starts]
    for k, a in vals.items():
        v = a[order]
        ok = ~np.isnan(v)
        cnt = np.bincount(g[ok], minlength=ng)
        out[f"{k}_count"] = cnt.astype(np.int64)
        out[f"{k}_sum"] = np.bincount(g[ok], v[ok], ng)
        if ng:  # rows are sorted by group: one reduceat per statistic (fmin/fmax skip NaN)
            out[f"{k}_min"] = np.fmin.reduceat(v, starts)
            out[f"{k}_max"] = np.fmax.reduceat(v, starts)
        else:
            out[f"{k}_min"] = out[f"{k}_max"] = np.zeros(0)
    return out


def _order(cols: list) -> np.ndarray:
    """Stable sort order by the columns (first most significant): one packed int64 key when the
    columns' ranges fit in 62 bits, else a lexsort."""
    lo = [int(c.min()) for c in cols]
    span = [int(c.max()) - a + 1 for c, a in zip(cols, lo)]
    if float(np.prod([float(x) for x in span])) < 2.0**62:
        key = np.zeros(len(cols[0]), dtype=np.int64)
        for c, a, w in zip(cols, lo, span):
            key = key * w + (c - a)
        return np.argsort(key, kind="stable")
    return np.lexsort(cols[::-1])


def _combine(table: dict, keys: list, value_names: list, bin_ms: int | None = None) -> dict:
    """Merge rows with equal (bucket, keys) (or re-bucket to ``bin_ms``) combining the statistics."""
    t = table["bucket_ms"] if bin_ms is None else table["bucket_ms"] // bin_ms * bin_ms
    n = len(t)
    cols = [t] + [np.asarray(table[k], dtype=np.int64) for k in keys]
    order = _order(cols) if n else np.zeros(0, np.int64)
    sc = [c[order] for c in cols]
    brk = np.ones(n, dtype=bool)
    if n:
        brk[1:] = False
        for c in sc:
            brk[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(brk)
    g = np.cumsum(brk) - 1
    ng = len(starts)
    out = {"bucket_ms": sc[0][starts]}
    for k, c in zip(keys, sc[1:]):
        out[k] = c[starts]
    for v in value_names:
        cnt = np.asarray(table[f"{v}_count"])[order]
        out[f"{v}_count"] = np.bincount(g, cnt, ng).astype(np.int64)
        out[f"{v}_sum"] = np.bincount(g, np.nan_to_num(np.asarray(table[f"{v}_sum"])[order]), ng)
        if ng:
            out[f"{v}_min"] = np.fmin.reduceat(np.asarray(table[f"{v}_min"], dtype=np.float64)[order], starts)
            out[f"{v}_max"] = np.fmax.reduceat(np.asarray(table[f"{v}_max"], dtype=np.float64)[order], starts)
        else:
            out[f"{v}_min"] = out[f"{v}_max"] = np.zeros(0)
    return out


def _day_str(ms: int) -> str:
    return str(np.datetime64(int(ms) // MS_DAY, "D"))


def _ms(x) -> int:
    if isinstance(x, (int, np.integer)):
        return int(x)
    return int(np.datetime64(x, "ms").astype(np.int64))


class History:
    """Parquet history under ``root`` (see the module docstring).

    Parameters
    ----------
    root : str or Path
        Directory of the history (created on first write).
    compression : str
        Parquet codec (``zstd`` default; ``snappy``, ``gzip``, ``none``).

    Examples
    --------
    >>> import tempfile
    >>> h = History(tempfile.mkdtemp())
    >>> t = np.array([0, 60_000, 90_000_000])
    >>> h.write_series("kpi", t, {"element_id": np.array([1, 1, 1])}, {"drop_rate": np.array([0.1, 0.3, 0.2])})
    4
    >>> h.read("kpi", "day")["drop_rate_sum"].tolist()
    [0.4, 0.2]
    """

    def __init__(self, root, compression: str = "zstd"):
        self.root = Path(root)
        self.compression = compression

    def _dir(self, name: str, resolution: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"history table name must be letters, digits, '_', '.', '-', got {name!r}")
        if resolution not in _RES:
            raise ValueError(f"resolution must be 'hour' or 'day', got {resolution!r}")
        return self.root / name / f"resolution={resolution}"

    def _write_table(self, name: str, resolution: str, table: dict) -> int:
        pa, pq = _pa()
        base = self._dir(name, resolution)
        day = table["bucket_ms"] // MS_DAY
        files = 0
        for d in np.unique(day):
            sel = day == d
            part = base / f"day={_day_str(int(d) * MS_DAY)}"
            part.mkdir(parents=True, exist_ok=True)
            k = len(list(part.glob("part-*.parquet")))
            arrow = pa.table({c: np.asarray(v)[sel] for c, v in table.items()})
            pq.write_table(arrow, part / f"part-{k:05d}.parquet", compression=self.compression, use_dictionary=True)
            files += 1
        return files

    def write_series(self, name: str, ts_ms, keys: dict, values: dict) -> int:
        """Roll raw rows up to hours and days and append them to table ``name``.

        Parameters
        ----------
        name : str
        ts_ms, keys, values
            As :func:`rollup` (e.g. KPI or window values per element and 5-minute bucket).

        Returns
        -------
        int
            Files written (one per day partition and resolution).
        """
        hourly = rollup(ts_ms, keys, values, MS_HOUR)
        daily = _combine(hourly, list(keys), list(values), MS_DAY)
        return self._write_table(name, "hour", hourly) + self._write_table(name, "day", daily)

    def write_cube(self, name: str, cube, by, measures, time_dim: str = "hour", where=None) -> int:
        """Store a cube's group-by ``by`` x ``time_dim`` (hourly; days rolled up) as table ``name``.

        Parameters
        ----------
        cube : telcoanalytics.cube.Cube
        by : sequence of str
            Dimensions whose labels are integers (regions, sites, elements, codes).
        measures : sequence of str
            Additive measures (``count``, ``sum:<field>``); each becomes a value whose ``_sum``
            is the measure and ``_count`` the number of hours it covers.
        time_dim : str
            An hour (or finer) time-bucket dimension of the cube.

        Raises
        ------
        ValueError
            For a non-additive measure or a non-integer dimension.
        """
        for m in measures:
            if not (m == "count" or str(m).startswith("sum:")):
                raise ValueError(f"write_cube stores additive measures ('count', 'sum:<field>'), got {m!r}")
        res = cube.query(tuple(by) + (time_dim,), where=where, measures=list(measures))
        keys = {}
        for d in by:
            col = res[d]
            if col.dtype.kind not in "iu":
                raise ValueError(
                    f"dimension {d!r} has {col.dtype} labels; write_cube stores integer-labelled dimensions"
                )
            keys[d] = col.astype(np.int64)
        names = res.dtype.names[len(by) + 1 :]
        values = {nm: np.asarray(res[nm], dtype=np.float64) for nm in names}
        return self.write_series(name, res[time_dim].astype(np.int64), keys, values)

    def tables(self) -> list[str]:
        """Names of the tables in the history."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.exists() else []

    def read(self, name: str, resolution: str = "hour", start=None, end=None, where: dict | None = None) -> dict:
        """Rows of table ``name`` with ``start <= bucket_ms < end`` (days pruned by directory).

        Rows written several times for the same bucket and keys are combined (counts and sums
        added, min of mins, max of maxes).

        Parameters
        ----------
        start, end : int ms, datetime64 or ISO str, optional
        where : dict key -> value or list of values, optional

        Returns
        -------
        dict of arrays (empty arrays when nothing matches)

        Raises
        ------
        ValueError
            For an unknown table, resolution or key.
        """
        pa, pq = _pa()
        base = self._dir(name, resolution)
        if not base.exists():
            raise ValueError(
                f"no history table {name!r} at {resolution} resolution under {self.root}; tables: {self.tables()}"
            )
        lo = None if start is None else _ms(start)
        hi = None if end is None else _ms(end)
        parts = []
        for d in sorted(base.glob("day=*")):
            day_ms = int(np.datetime64(d.name[4:], "ms").astype(np.int64))
            if (lo is not None and day_ms + MS_DAY <= lo) or (hi is not None and day_ms >= hi):
                continue
            parts.extend(sorted(d.glob("part-*.parquet")))
        if not parts:
            schema = pq.read_schema(next(base.glob("day=*/part-*.parquet")))
            return {c: np.zeros(0, dtype=schema.field(c).type.to_pandas_dtype()) for c in schema.names}
        tab = pa.concat_tables([pq.read_table(p) for p in parts])
        out = {c: tab.column(c).to_numpy() for c in tab.column_names}
        m = np.ones(len(out["bucket_ms"]), dtype=bool)
        if lo is not None:
            m &= out["bucket_ms"] >= lo
        if hi is not None:
            m &= out["bucket_ms"] < hi
        for k, v in (where or {}).items():
            if k not in out:
                raise ValueError(f"table {name!r} has no key {k!r}; columns: {list(out)}")
            m &= np.isin(out[k], np.atleast_1d(v))
        out = {c: a[m] for c, a in out.items()}
        value_names = [c[: -len("_count")] for c in out if c.endswith("_count")]
        keys = [c for c in out if c != "bucket_ms" and not any(c.startswith(v + "_") for v in value_names)]
        return _combine(out, keys, value_names) if len(parts) > 1 else out

    def compare(self, name: str, value: str, key: str, period_a, period_b, resolution: str = "hour") -> dict:
        """Mean of ``value`` per ``key`` in two periods (e.g. this week against the last).

        Parameters
        ----------
        period_a, period_b : (start, end)
            Spans as in :meth:`read`.

        Returns
        -------
        dict with ``key`` (ids present in both), ``mean_a``, ``mean_b``, ``change`` (b / a - 1) and
        ``n_a``, ``n_b`` (the values behind each mean).
        """
        a = self.read(name, resolution, *period_a)
        b = self.read(name, resolution, *period_b)

        def means(t):
            ids, inv = np.unique(t[key], return_inverse=True)
            s = np.bincount(inv, t[f"{value}_sum"], len(ids))
            c = np.bincount(inv, t[f"{value}_count"], len(ids))
            return ids, s, c

        ia, sa, ca = means(a)
        ib, sb, cb = means(b)
        common, pa_, pb_ = np.intersect1d(ia, ib, return_indices=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            ma = sa[pa_] / ca[pa_]
            mb = sb[pb_] / cb[pb_]
            change = mb / ma - 1.0
        return {key: common, "mean_a": ma, "mean_b": mb, "change": change, "n_a": ca[pa_], "n_b": cb[pb_]}

    def nbytes(self, name: str | None = None) -> int:
        """Bytes on disk of one table (or all)."""
        base = self.root if name is None else self.root / name
        return sum(p.stat().st_size for p in base.rglob("*.parquet")) if base.exists() else 0

    def bytes_per_element_day(self, name: str | None = None, key: str = "element_id") -> float:
        """Bytes on disk per (distinct ``key`` value x day) over one table (or all tables keyed by it)."""
        names = [name] if name is not None else self.tables()
        elements, days = set(), set()
        for nm in names:
            base = self._dir(nm, "day")
            if not base.exists():
                continue
            t = self.read(nm, "day")
            if key in t:
                elements.update(np.unique(t[key]).tolist())
                days.update(np.unique(t["bucket_ms"] // MS_DAY).tolist())
        n = len(elements) * len(days)
        return sum(self.nbytes(nm) for nm in names) / n if n else float("nan")
