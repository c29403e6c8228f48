"""Per-element KPI series on a regular grid, kept from the stream for the statistical analyses.

:class:`SeriesKeeper` folds equipment metrics and QoS latency into per-element means per bin
(5 minutes by default) and counts complaints per region and bin, keeping the last ``max_bins``
bins (a week of 5-minute bins by default: bounded memory for months of running). The
statistics of :mod:`telcoanalytics.analysis` (trend, forecast, correlation, before/after) read
these series; :func:`statistics_report_lines` is the replay's section for them.
"""

from __future__ import annotations

import numpy as np

from kernels.fold import add_cells, empty_slots, rehash_pairs, stage_cells, stage_rows, sum_rows_by_group
from telcoanalytics.records import METRIC_CODE

SERIES = ("prb_util_pct", "latency_ms")
"""The series kept per element: equipment PRB utilisation and QoS latency."""


class SeriesKeeper:
    """Per-element mean per bin of :data:`SERIES`, and complaints per region and bin.

    Parameters
    ----------
    topology : Topology
    bin_ms : int
        Bin width (default 5 minutes).
    max_bins : int
        Bins kept (default a week of 5-minute bins); older bins are dropped as newer arrive.

    Examples
    --------
    >>> from telcoanalytics.topology import Topology
    >>> topo = Topology.from_columns([10, 11], {"region": [1, 1], "site": [5, 6]})
    >>> k = SeriesKeeper(topo, bin_ms=60_000)
    >>> k.add("latency_ms", np.array([0, 30_000, 60_000]), np.array([0, 0, 1]), np.array([10.0, 20.0, 7.0]))
    >>> times, x = k.series("latency_ms")
    >>> times.tolist(), x.tolist()
    ([0, 60000], [[15.0, nan], [nan, 7.0]])
    """

    def __init__(self, topology, bin_ms: int = 300_000, max_bins: int = 2016):
        if int(bin_ms) <= 0 or int(max_bins) <= 0:
            raise ValueError(f"bin_ms and max_bins must be positive, got {bin_ms!r}, {max_bins!r}")
        self.topology = topology
        self.bin_ms = int(bin_ms)
        self.max_bins = int(max_bins)
        self.first_bin = None  # absolute bin number of column 0
        self.n_compactions = 0  # times the kept columns were moved to the buffers' start (see _resize)
        n = topology.n_elements
        # backing buffers of a fixed width (max_bins plus a slack, allocated and committed at the first
        # bin: memory does not grow while the week fills): the kept bins are the view
        # [:, off:off + width], the spare columns right of it stay zero, so a new bin re-slices
        # instead of copying the history
        self._buf = {("sums", s): np.zeros((n, 0)) for s in SERIES}
        self._buf.update({("counts", s): np.zeros((n, 0), np.int32) for s in SERIES})
        self._buf[("complaints",)] = np.zeros((topology.n_nodes("region"), 0), np.int32)
        self._off = 0
        self._width = 0
        self._views()
        self._staged: dict = {}  # series -> _Staged: rows staged since the last flush
        self._order: dict = {}  # series in the order first staged since the last flush (dict as ordered set)

    @property
    def capacity(self) -> int:
        """Columns of the backing buffers once allocated: ``max_bins`` plus a slack of an eighth of
        it (at least 64 columns)."""
        return self.max_bins + max(64, self.max_bins // 8)

    def _views(self) -> None:
        """Point ``sums``, ``counts`` and ``complaints`` at the kept columns of the buffers."""
        cols = slice(self._off, self._off + self._width)
        self.sums = {s: self._buf[("sums", s)][:, cols] for s in SERIES}
        self.counts = {s: self._buf[("counts", s)][:, cols] for s in SERIES}
        self.complaints = self._buf[("complaints",)][:, cols]

    def _resize(self, need: int, drop: int) -> None:
        """Keep logical columns ``[drop, need)`` (relative to ``first_bin``): drop the oldest ones and
        open new zero columns; when the spare columns run out, the kept ones move to the start of
        the buffers (in place: at most once per slack of new bins, amortised O(1) per bin)."""
        off, width = self._off + drop, need - drop
        keep = max(0, self._off + self._width - off)  # kept columns that hold data
        cap = next(iter(self._buf.values())).shape[1]
        if cap < self.capacity:  # the first bin (or an older checkpoint's state): fixed-size buffers
            for key, old in self._buf.items():
                buf = _committed_zeros((old.shape[0], self.capacity), old.dtype)
                buf[:, :keep] = old[:, off : off + keep]
                self._buf[key] = buf
            off = 0
        elif off + width > cap:
            for buf in self._buf.values():
                buf[:, :keep] = buf[:, off : off + keep]
                buf[:, keep:] = 0
            off = 0
            self.n_compactions += 1
        self._off, self._width = off, width
        self.first_bin += drop
        self._views()

    # ---- folding ----------------------------------------------------------------------------
    def _columns(self, b: np.ndarray) -> np.ndarray:
        """Column of each absolute bin, growing (and dropping the oldest) as needed; -1: too old."""
        if not len(b):
            return b
        if self.first_bin is None:
            self.first_bin = int(b.min())
        need = int(b.max()) - self.first_bin + 1
        if need > self._width:
            self._resize(need, max(need - self.max_bins, 0))
        col = b - self.first_bin
        return np.where(col >= 0, col, -1)

    def add(self, name: str, ts_ms, element_index, values) -> None:
        """Fold values of series ``name`` (finite values only; they were validated at ingest): one
        bincount over the cells of the call (a large one-off batch, such as a day of history)."""
        if name not in SERIES:
            raise ValueError(f"unknown series {name!r}; the kept series are {', '.join(SERIES)}")
        ts_ms = np.asarray(ts_ms, np.int64)
        col = self._columns(ts_ms // self.bin_ms)
        ok = col >= 0
        e, c, v = np.asarray(element_index)[ok], col[ok], np.asarray(values, np.float64)[ok]
        _fold_cells(self.sums[name], self.counts[name], e, c, v)

    def add_batch(self, batch) -> None:
        """Fold a pipeline's routed batch (equipment PRB utilisation, QoS latency, complaints)."""
        rows, idx = batch.rows, batch.element_index
        if batch.source == "equip":
            m = rows["metric_id"] == METRIC_CODE["prb_util_pct"]
            self.add("prb_util_pct", rows["ts_ms"][m], idx[m], rows["value"][m])
        elif batch.source == "qos":
            self.add("latency_ms", rows["ts_ms"], idx, rows["latency_ms"])
        elif batch.source == "complaint":
            self.add_complaints(rows["ts_ms"], idx)

    def add_complaints(self, ts_ms, element_index) -> None:
        """Count complaints (times, dense element index; -1: unknown element, its bin still moves the
        columns) per region and bin."""
        col = self._columns(np.asarray(ts_ms, np.int64) // self.bin_ms)
        idx = np.asarray(element_index)
        ok = (col >= 0) & (idx >= 0)
        region = self.topology.element_to("region")[idx[ok]]
        _fold_cells(None, self.complaints, region, col[ok], None)

    def stage_batch(self, batch) -> None:
        """Stage a routed batch: its rows are summed per cell now and added to the series at the next
        :meth:`flush` (every staged batch of a series between two flushes adds one partial sum per
        cell, as one :meth:`add_batch` of their concatenation would)."""
        rows, idx = batch.rows, batch.element_index
        if batch.source == "equip":
            self._order.setdefault("prb_util_pct", None)
            self._stage_rows("prb_util_pct", rows["ts_ms"], idx, rows["value"], rows["metric_id"], _PRB_UTIL)
        elif batch.source == "qos":
            self._order.setdefault("latency_ms", None)
            self._stage_rows("latency_ms", rows["ts_ms"], idx, rows["latency_ms"], _EVERY_ROW, 0)
        elif batch.source == "complaint":
            self._order.setdefault("complaints", None)
            b = rows["ts_ms"] // self.bin_ms
            ok = idx >= 0
            region = self.topology.element_to("region")[idx[ok]]  # every element has a region
            self._stage("complaints", b, region, None, b_ok=b[ok])

    def _stage(self, name, b, rows, values, b_ok=None) -> None:
        """Partial sums per (row, absolute bin) of ``name`` (bins ``b``; ``b_ok`` the bins of the
        ``rows``, when some of ``b`` have no row: they still move the columns)."""
        if not len(b):
            return
        self._order.setdefault(name, None)
        st = self._staged.get(name)
        if st is None:
            st = self._staged[name] = _Staged()  # kept between flushes, at the size the largest needed
        st.add(np.asarray(rows, np.int64), b if b_ok is None else b_ok, values)
        st.bmin = min(st.bmin, int(b.min()))
        st.bmax = max(st.bmax, int(b.max()))

    def _stage_rows(self, name, ts_ms, elem, values, codes, code) -> None:
        """:meth:`_stage` of the rows whose ``codes`` equal ``code`` (every row: ``codes`` empty),
        selected and binned in the staging pass (``kernels.fold.stage_rows``)."""
        if not len(ts_ms):
            return
        st = self._staged.get(name)
        if st is None:
            st = self._staged[name] = _Staged()
        st.add_rows(ts_ms, elem, values, codes, code, self.bin_ms)

    def flush(self) -> None:
        """Add the staged partial sums to the kept series (series in the order first staged, so the
        columns grow and drop as they would have, batch by batch)."""
        for name in self._order:
            st = self._staged.get(name)
            if st is None or st.bmin > st.bmax:
                continue
            self._columns(np.array([st.bmin, st.bmax], np.int64))
            if name == "complaints":
                add_cells(_NO_SUMS, self.complaints, *st.entries(), self.first_bin, False)
            else:
                add_cells(self.sums[name], self.counts[name], *st.entries(), self.first_bin, True)
            st.clear()
        self._order = {}

    def topology_changed(self, topology) -> None:
        """Elements added get empty rows (dense indices of existing elements are stable)."""
        grow = topology.n_elements - self.sums[SERIES[0]].shape[0]
        if grow > 0:
            for key in [k for k in self._buf if k[0] != "complaints"]:
                self._buf[key] = np.pad(self._buf[key], ((0, grow), (0, 0)))
            self._views()
        self.topology = topology

    # ---- reading ----------------------------------------------------------------------------
    def times(self) -> np.ndarray:
        """Start of each kept bin (int64 ms)."""
        if self.first_bin is None:
            return np.zeros(0, np.int64)
        return (self.first_bin + np.arange(self.sums[SERIES[0]].shape[1], dtype=np.int64)) * self.bin_ms

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(times, values)``: per-element mean per bin, NaN where no value arrived."""
        with np.errstate(invalid="ignore", divide="ignore"):
            x = self.sums[name] / self.counts[name]
        return self.times(), x

    def region_series(self, name: str) -> np.ndarray:
        """Per-region mean per bin of series ``name`` (regions x bins, NaN where none)."""
        region = self.topology.element_to("region")
        n_r = self.topology.n_nodes("region")
        s = np.zeros((n_r, self.sums[name].shape[1]))
        c = np.zeros_like(s)
        sum_rows_by_group(self.sums[name], region, s)  # element by element, as np.add.at (bit-identical)
        sum_rows_by_group(self.counts[name], region, c)
        with np.errstate(invalid="ignore", divide="ignore"):
            return s / c

    # ---- state ------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """The state at a fixed size: the whole backing buffers (``max_bins`` plus the slack
        columns, see :attr:`capacity`) with the kept columns' offset and width, so a checkpoint
        does not grow while the week of bins fills (the buffers are not copied)."""
        return {
            "bin_ms": self.bin_ms,
            "max_bins": self.max_bins,
            "first_bin": -1 if self.first_bin is None else self.first_bin,
            "off": self._off,
            "width": self._width,
            **{f"sums_{s}": self._buf[("sums", s)] for s in SERIES},
            **{f"counts_{s}": self._buf[("counts", s)] for s in SERIES},
            "complaints": self._buf[("complaints",)],
        }

    @classmethod
    def from_state(cls, d: dict, topology) -> SeriesKeeper:
        """Restore :meth:`to_state` (also the kept columns alone, as checkpoints before the fixed-size
        buffers stored them)."""
        k = cls(topology, int(d["bin_ms"]), int(d["max_bins"]))
        k.first_bin = None if int(d["first_bin"]) < 0 else int(d["first_bin"])
        for s in SERIES:
            k._buf[("sums", s)] = np.array(d[f"sums_{s}"], dtype=np.float64)
            k._buf[("counts", s)] = np.array(d[f"counts_{s}"], dtype=np.int32)
        k._buf[("complaints",)] = np.array(d["complaints"], dtype=np.int32)
        k._off = int(d.get("off", 0))
        k._width = int(d["width"]) if "width" in d else k._buf[("sums", SERIES[0])].shape[1]
        k._views()
        return k


def _committed_zeros(shape, dtype) -> np.ndarray:
    """A zero array whose pages are written now (``np.zeros`` of a large array maps pages lazily: the
    resident memory would then grow as bins fill, for a week)."""
    a = np.empty(shape, dtype)
    a.fill(0)
    return a


class _Staged:
    """Partial sums and counts per (row, absolute bin) of the rows staged since the last flush, in an
    open-addressing table (``kernels.fold.stage_cells``) that doubles when half full."""

    def __init__(self, n: int = 1 << 12):
        self.n = 0
        self.slots = empty_slots(n)
        self.key_a = np.zeros(n // 2, np.int64)
        self.key_b = np.zeros(n // 2, np.int64)
        self.part_sum = np.zeros(n // 2)
        self.part_cnt = np.zeros(n // 2, np.int64)
        self.clear()

    def clear(self) -> None:
        if self.n:
            self.slots.fill(-1)
        self.n = 0
        self.bmin, self.bmax = np.iinfo(np.int64).max, np.iinfo(np.int64).min

    def entries(self) -> tuple:
        """``(rows, bins, partial sums, counts, n)``: the entries (their first ``n``)."""
        return self.key_a, self.key_b, self.part_sum, self.part_cnt, self.n

    def add(self, a, b, v) -> None:
        v = _NO_VALUES if v is None else np.asarray(v, np.float64)
        start = 0
        while True:
            start, self.n = stage_cells(
                self.slots, self.key_a, self.key_b, self.part_sum, self.part_cnt, self.n, a, b, v, start
            )
            if start == len(a):
                return
            self._grow()

    def add_rows(self, ts_ms, elem, v, codes, code, bin_ms) -> None:
        """Stage the rows whose ``codes`` equal ``code`` (``codes`` empty: every row) at cells
        ``(elem, ts_ms // bin_ms)`` in one pass; the staged bin range widens to theirs."""
        bounds = np.array([self.bmin, self.bmax], np.int64)
        start = 0
        while True:
            start, self.n = stage_rows(
                self.slots, self.key_a, self.key_b, self.part_sum, self.part_cnt, self.n,
                ts_ms, elem, v, codes, code, bin_ms, start, bounds,
            )  # fmt: skip
            if start == len(ts_ms):
                break
            self._grow()
        self.bmin, self.bmax = int(bounds[0]), int(bounds[1])

    def _grow(self) -> None:
        """Double the table (the entries so far kept and rehashed)."""
        size = 2 * len(self.slots)
        for name in ("key_a", "key_b", "part_sum", "part_cnt"):
            old = getattr(self, name)
            new = np.zeros(size // 2, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)
        self.slots = empty_slots(size)
        rehash_pairs(self.slots, self.key_a, self.key_b, self.n)


_NO_VALUES = np.zeros(0)
_EVERY_ROW = np.zeros(0, np.int32)  # stage_rows: no selection by code
_PRB_UTIL = METRIC_CODE["prb_util_pct"]
_NO_SUMS = np.zeros((0, 0))


def _fold_cells(sums, counts, rows, cols, values) -> None:
    """``sums[r, c] += v`` and ``counts[r, c] += 1`` for every (row, column, value), by one
    ``bincount`` over the cells of the columns the batch touches, or over the distinct cells it
    touches when those columns hold many more cells than the batch has rows (``sums`` None:
    counts only)."""
    if not len(cols):
        return
    lo, hi = int(cols.min()), int(cols.max())
    span = hi - lo + 1
    n = counts.shape[0]
    key = np.asarray(rows, np.int64) * span + (cols - lo)
    if n * span <= max(1 << 20, 8 * len(key)):
        counts[:, lo : hi + 1] += np.bincount(key, minlength=n * span).reshape(n, span).astype(counts.dtype)
        if sums is not None:
            sums[:, lo : hi + 1] += np.bincount(key, values, minlength=n * span).reshape(n, span)
        return
    cells, inv = np.unique(key, return_inverse=True)  # distinct cells: the fancy-indexed adds do not collide
    r, c = cells // span, cells % span + lo
    counts[r, c] += np.bincount(inv, minlength=len(cells)).astype(counts.dtype)
    if sums is not None:
        sums[r, c] += np.bincount(inv, values, minlength=len(cells))


def _bin_mean(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where every value is NaN (no warning)."""
    ok = np.isfinite(x)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, x, 0.0).sum(axis=-1) / np.where(n > 0, n, np.nan)


def _hhmm(ms) -> str:
    return str(np.datetime64(int(ms), "ms"))[5:16].replace("T", " ")


def statistics_report_lines(keeper: SeriesKeeper, day=None, k: int = 3) -> list[str]:
    """The replay's statistics: top trends, one capacity forecast, complaint correlations and a
    before/after comparison around a recorded change (``day.changes`` of a synthetic day)."""
    from telcoanalytics.analysis.correlate import lagged_correlation
    from telcoanalytics.analysis.forecast import fit_holt_winters
    from telcoanalytics.analysis.trend import trend

    lines = []
    times, prb = keeper.series("prb_util_pct")
    if len(times) < 24:
        return ["  statistics: fewer than 24 bins of series so far"]
    eids = keeper.topology.ids[keeper.topology.element_level]
    per_bin = 3_600_000 // keeper.bin_ms
    # ---- trends (hourly means, so each point is one hour of the day)
    n_h = len(times) // per_bin
    hourly = _bin_mean(prb[:, : n_h * per_bin].reshape(len(prb), n_h, per_bin))
    have = np.isfinite(hourly).sum(axis=1) >= 8
    if have.any():
        tr = trend(hourly[have], times[: n_h * per_bin : per_bin])
        ix = np.flatnonzero(have)
        sig = np.flatnonzero(tr["p"] < 0.01)
        order = sig[np.argsort(-np.abs(tr["slope"][sig]), kind="stable")][:k]
        lines.append(
            f"  trends in PRB utilisation (Mann-Kendall, Theil-Sen per hour; {len(sig)} of {have.sum()} elements "
            f"with p < 0.01 over {n_h} h):"
        )
        for j in order:
            lines.append(
                f"    element {eids[ix[j]]}: {tr['slope'][j]:+.2f} %/h "
                f"[{tr['slope_lo'][j]:+.2f}, {tr['slope_hi'][j]:+.2f}], p {tr['p'][j]:.1e}"
            )
    # ---- one capacity forecast: the busiest element, when does it reach 80 %?
    recent = _bin_mean(prb[:, -per_bin:])
    if np.isfinite(recent).any():
        e = int(np.nanargmax(recent))
        y = prb[e]
        season = 24 * per_bin if np.isfinite(y).sum() >= 2 * 24 * per_bin else 0
        hw = fit_holt_winters(y, season or 1, times=times, seasonal=bool(season))
        cr = hw.crossing(80.0, horizon=24 * per_bin)[0]
        fc = hw.forecast(per_bin * 6)
        lines.append(
            f"  capacity: element {eids[e]} PRB utilisation {recent[e]:.1f} % in the last hour; Holt-Winters "
            f"({'daily season' if season else 'damped trend, no season yet'}) forecast in 6 h "
            f"{fc.mean[0, -1]:.1f} % [{fc.lower[0, -1]:.1f}, {fc.upper[0, -1]:.1f}]; P(reaches 80 % within 24 h) "
            f"{cr['p_cross']:.2f}" + (f", earliest {_hhmm(cr['t_earliest_ms'])} UTC" if cr["t_earliest_ms"] > 0 else "")
        )
    # ---- complaints against KPIs per region, by lag (hours)
    if keeper.complaints.sum() > 0:
        lat = keeper.region_series("latency_ms")
        reg_prb = keeper.region_series("prb_util_pct")
        r_worst = int(np.argmax(keeper.complaints.sum(axis=1)))
        n_h = keeper.complaints.shape[1] // per_bin
        target = keeper.complaints[r_worst, : n_h * per_bin].reshape(n_h, per_bin).sum(axis=1).astype(float)
        cands = np.stack([_bin_mean(x[r_worst, : n_h * per_bin].reshape(n_h, per_bin)) for x in (lat, reg_prb)])
        if n_h >= 8:
            lc = lagged_correlation(target, cands, lags=range(0, 4), method="spearman")
            best = lc.best()
            rid = keeper.topology.ids["region"][r_worst]
            lines.append(
                f"  complaints in region {rid} ({int(target.sum())} over {n_h} h) against its KPIs "
                "(Spearman, KPI leading by 0-3 h, Benjamini-Hochberg q):"
            )
            for b in best:
                name = ("QoS latency", "PRB utilisation")[int(b["series"])]
                lines.append(f"    {name}: r {b['r']:+.2f} at lag {int(b['lag'])} h, q {b['q']:.2g}")
    # ---- before/after around a recorded change
    changes = list(getattr(day, "changes", []) or [])
    if changes:
        from telcoanalytics.analysis.compare import difference_in_differences

        ch = changes[0]
        name = "latency_ms" if ch.kpi == "latency" else "prb_util_pct"
        t, x = keeper.series(name)
        up = keeper.topology.index_of(np.asarray(ch.element_ids, np.int64))
        ctl = keeper.topology.index_of(np.asarray(ch.control_ids, np.int64))
        up, ctl = up[up >= 0], ctl[ctl >= 0]
        if not (len(t) and t[0] < ch.at_ms < t[-1]):
            lines.append(f"  before/after: the recorded change at {_hhmm(ch.at_ms)} UTC is outside the kept series")
        elif len(up) and len(ctl):
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.log(_bin_mean(x[up].T))
                c = np.log(x[ctl])
            res = difference_in_differences(y, c, t, int(ch.at_ms), bucket_ms=3_600_000, season_ms=86_400_000)[0]
            lines.append(
                f"  before/after the change at {_hhmm(ch.at_ms)} UTC ({len(up)} upgraded cells, {len(ctl)} controls, "
                f"difference in differences of log {name}): effect {res['effect']:+.3f} "
                f"[{res['lo']:+.3f}, {res['hi']:+.3f}] (injected {ch.log_effect:+.3f})"
            )
    return lines
