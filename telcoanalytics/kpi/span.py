"""Late-data re-evaluation spans of a :class:`~telcoanalytics.kpi.calculator.KpiCalculator`.

Inside a span (:meth:`_SpanEvaluation.begin_series`) the window sums of a row subset at every
tick come from cumulative per-minute prefix sums (one read of each ring cell) or from window
series moved tick by tick, cached per counters, window and rows; :meth:`_SpanEvaluation.compute_span`
turns them into values and statuses for every tick at once.
"""

from __future__ import annotations

import numpy as np

from kernels import kpi as K
from telcoanalytics.kpi.definitions import ACTIVITY_COUNTER, COUNTERS, STATUS_NO_SCOPE, KpiResult


class _SpanEvaluation:
    """Mixin of :class:`~telcoanalytics.kpi.calculator.KpiCalculator`: re-evaluation of a span of
    ticks for subsets of rows (late data), with its caches."""

    prefix_budget_bytes = 512 * 2**20
    """Largest prefix-sum array (bytes) a re-evaluation span builds; beyond it, window series."""

    def begin_series(self, t_from: int, t_to: int, counters: dict | None = None, rows: dict | None = None):
        """Start a re-evaluation of the ticks ``t_from..t_to`` for subsets of rows.

        Until :meth:`end_series`, window sums of a row subset at an end minute in the span are
        computed for the whole span at once (:meth:`CounterStore.window_series`: each window
        moved from the previous tick's instead of summed afresh) and cached per (counters,
        window, rows array); node maps of a row subset are cached too. The store must not
        change inside a span.

        With ``counters`` (ring group -> (counter, service) pairs, e.g. every counter the rules
        read), each row subset's counters of a group are gathered once into cumulative per-minute
        sums over the span and the ``minute_ring`` minutes before it
        (:meth:`CounterStore.prefix_sums`), so every window of every tick is one difference.
        With ``rows`` (ring group -> sorted element indices, the union of the subsets the span
        will ask for), one prefix per group covers every subset of it.
        """
        self._span = (int(t_from), int(t_to))
        self._span_cache = {}
        self._span_keys = {g: dict.fromkeys(v) for g, v in (counters or {}).items()}
        self._span_rows = {g: np.ascontiguousarray(v, dtype=np.int64) for g, v in (rows or {}).items()}

    def end_series(self):
        """End the span started by :meth:`begin_series` (drops its cache)."""
        self._span = None
        self._span_cache = {}
        self._span_keys = {}
        self._span_rows = {}

    def _in_span(self, end_minute: int, rows) -> bool:
        return rows is not None and self._span is not None and self._span[0] <= end_minute <= self._span[1]

    def _span_ticks(self) -> list:
        return list(range(self._span[0], self._span[1] + 1))

    def hour_sums(self, col: int, end_minute: int, n_hours: int, rows=None) -> np.ndarray:
        """:meth:`CounterStore.hour_sums`, from a cached series inside a re-evaluation span."""
        if not self._in_span(end_minute, rows):
            return self.store.hour_sums(col, end_minute, n_hours, rows)
        key = ("hour", col, n_hours, id(rows))
        hit = self._span_cache.get(key)
        if hit is None:
            c, svc = self.store.hour_columns[col]
            part = None
            if self._prefix_for(COUNTERS[c].group, [c], svc, rows) is not None:
                part = lambda a, b: self._prefix_window(COUNTERS[c].group, c, svc, rows, a, b)  # noqa: E731
            hit = self._span_cache[key] = (
                self.store.hour_sums_series(col, self._span_ticks(), n_hours, rows, part),
                rows,
            )
        return hit[0][end_minute - self._span[0]]

    def _prefix_for(self, group: str, names, svc: str, rows):
        """The span's prefix sums of ``group`` for ``rows`` if they hold every (name, svc), else None."""
        if not self._span_keys or group not in self._span_keys:
            return None
        keys = self._span_keys[group]
        if any((c, svc) not in keys for c in names):
            return None
        # one prefix per group over the rows hinted for the span (all row subsets inside it share it)
        base = self._span_rows.get(group)
        if base is None or len(rows) > len(base):
            base = rows
        pkey = ("prefix", group, id(base))
        hit = self._span_cache.get(pkey)
        if hit is None:
            lo = self._span[0] - self.store.minute_ring
            kl = list(keys)
            if (self._span[1] - lo + 1) * len(base) * len(kl) * 8 > self.prefix_budget_bytes:
                return None
            hit = self._span_cache[pkey] = (
                self.store.prefix_sums(group, kl, base, lo, self._span[1]),
                {k: j for j, k in enumerate(kl)},
                lo,
                base,
            )
        rkey = ("prefix_rows", group, id(rows))
        at = self._span_cache.get(rkey)
        if at is None:
            if rows is base or (len(rows) == len(base) and np.array_equal(rows, base)):
                pos = None  # the hinted rows themselves: no gather
            else:
                pos = np.minimum(np.searchsorted(base, rows), len(base) - 1)
                if len(base) == 0 or not np.array_equal(base[pos], rows):
                    return None  # not a subset of the hinted rows
            at = self._span_cache[rkey] = (hit, pos, rows)
        return at

    def _prefix_series(self, group, c, svc, rows, window_min: int) -> np.ndarray:
        """Window sums of ``(c, svc)`` for ``rows`` at every tick of the span, ``(ticks, rows)``."""
        skey = ("prefix_win", group, c, svc, window_min, id(rows))
        hit = self._span_cache.get(skey)
        if hit is None:
            self._prefix_window(group, c, svc, rows, 0, 0)  # builds the column
            col, lo, _ = self._span_cache[("prefix_col", group, c, svc, id(rows))]
            t = np.arange(self._span[0], self._span[1] + 1)
            hit = self._span_cache[skey] = (
                col[np.maximum(t, lo) - lo] - col[np.maximum(t - window_min, lo) - lo],
                rows,
            )
        return hit[0]

    def _prefix_window(self, group, c, svc, rows, a: int, b: int) -> np.ndarray:
        """Sum of counter ``(c, svc)`` over minutes ``[a, b)`` per element of ``rows`` (a span's prefix)."""
        ckey = ("prefix_col", group, c, svc, id(rows))
        hit = self._span_cache.get(ckey)
        if hit is None:  # this counter's cumulative sums for these rows, contiguous per minute
            (P, keypos, lo, _), pos, _ = self._span_cache[("prefix_rows", group, id(rows))]
            col = P[keypos[(c, svc)]]
            hit = self._span_cache[ckey] = (col if pos is None else col[:, pos], lo, rows)
        col, lo, _ = hit
        return col[max(b, lo) - lo] - col[max(a, lo) - lo]

    def _span_counter_series(self, todo: dict, service: str, window_min: int, rows) -> dict:
        """Inside a span: window sums of the counters ``todo`` (ring group -> names) for ``rows`` at
        every tick of the span, name -> ``(ticks, rows)`` (from the span's prefix sums when they
        hold the counters, else one window series per group, cached)."""
        st = self.store
        out: dict = {}
        for grp, names in todo.items():
            svc = service if grp == "cdr" else ""
            if names and self._prefix_for(grp, names, svc, rows) is not None:
                for c in names:
                    out[c] = self._prefix_series(grp, c, svc, rows, window_min)
                continue
            miss = [c for c in names if (c, svc, window_min, id(rows)) not in self._span_cache]
            if miss:
                cols, outc = [], []
                for j, c in enumerate(miss):
                    cc = st.columns(c, svc)
                    cols.append(cc)
                    outc.append(np.full(len(cc), j, np.int64))
                ticks = self._span_ticks()
                ser = st.window_series(
                    grp,
                    np.concatenate(cols),
                    np.concatenate(outc),
                    len(miss),
                    rows,
                    [t - window_min for t in ticks],
                    ticks,
                )
                for j, c in enumerate(miss):
                    self._span_cache[(c, svc, window_min, id(rows))] = (ser[:, :, j], rows)
            for c in names:
                out[c] = self._span_cache[(c, svc, window_min, id(rows))][0]
        return out

    def _span_hist_series(self, window_min: int, rows) -> np.ndarray:
        """Inside a span: latency histograms of ``rows`` at every tick, ``(ticks, rows, bins)`` (cached)."""
        st = self.store
        key = ("hist", window_min, id(rows))
        hit = self._span_cache.get(key)
        if hit is None:
            ticks = self._span_ticks()
            cols = np.arange(st.n_bins, dtype=np.int64)
            hit = self._span_cache[key] = (
                st.window_series("hist", cols, cols, st.n_bins, rows, [t - window_min for t in ticks], ticks),
                rows,
            )
        return hit[0]

    def _span_activity_series(self, source: str, window_min: int, rows):
        """Inside a span: (active minutes, active minutes before the window) of ``rows`` at every
        tick, each ``(ticks, rows)`` int64 (cached)."""
        st = self.store
        skey = ("act", source, window_min, id(rows))
        hit = self._span_cache.get(skey)
        if (
            hit is None
            and self._prefix_for(COUNTERS[ACTIVITY_COUNTER[source]].group, [ACTIVITY_COUNTER[source]], "", rows)
            is not None
        ):
            # from the span's prefix sums: a minute is active when its row count (one difference of
            # the prefix, exact for counts) is > 0; cumulative active minutes give every window
            act = ACTIVITY_COUNTER[source]
            grp = COUNTERS[act].group
            self._prefix_window(grp, act, "", rows, 0, 0)  # builds the column
            col, lo, _ = self._span_cache[("prefix_col", grp, act, "", id(rows))]
            cum = np.zeros(col.shape, np.int64)
            np.cumsum(np.diff(col, axis=0) > 0.0, axis=0, out=cum[1:])
            t = np.arange(self._span[0], self._span[1] + 1)
            at = lambda m: cum[np.maximum(m, lo) - lo]  # noqa: E731
            w0 = at(t - window_min)
            hit = self._span_cache[skey] = (at(t) - w0, w0 - at(np.maximum(t - st.minute_ring, 0)), rows)
        if hit is None:
            grp = COUNTERS[ACTIVITY_COUNTER[source]].group
            act_cols = st.columns(ACTIVITY_COUNTER[source])
            ticks = self._span_ticks()
            a = st.window_series(grp, act_cols, None, 0, rows, [t - window_min for t in ticks], ticks, "act")
            h = st.window_series(
                grp,
                act_cols,
                None,
                0,
                rows,
                [max(t - st.minute_ring, 0) for t in ticks],
                [t - window_min for t in ticks],
                "act",
            )
            hit = self._span_cache[skey] = (a, h, rows)
        return hit[0], hit[1]

    def _span_expected_factors(self, window_min: int) -> np.ndarray:
        """Inside a span: :meth:`_expected_factor` at every tick of the span (cached; the store does
        not change inside a span), from one cumulative count of the minutes the ring holds: the
        history of tick ``t`` is minutes ``[t - minute_ring, t - window_min)``."""
        key = ("expected", window_min)
        hit = self._span_cache.get(key)
        if hit is None:
            st = self.store
            t0, t1 = self._span
            lo = t0 - st.minute_ring
            mins = np.arange(lo, t1 - min(window_min, st.minute_ring), dtype=np.int64)
            held = (st.slot_minute[mins % st.minute_ring] == mins) & (mins >= 0)
            cum = np.zeros(len(mins) + 1, np.int64)
            np.cumsum(held, out=cum[1:])
            a = np.arange(t0, t1 + 1, dtype=np.int64) - st.minute_ring - lo
            n_h = cum[np.maximum(a + st.minute_ring - window_min, a)] - cum[a]
            # window_min / n_h as in _expected_factor (exact integers, one correctly rounded division)
            hit = np.where(n_h >= window_min, window_min / np.maximum(n_h, 1), 0.0)
            self._span_cache[key] = hit
        return hit

    def _span_nodes(self, level: str, r: np.ndarray, element_mask, end_minute: int, rows):
        """Roll-up map of a row subset: (segment per row over the touched nodes, -1 outside the
        mask; the touched nodes' dense indices), cached inside a re-evaluation span."""
        nkey = ("nodes", level, id(r), None if element_mask is None else id(element_mask))
        in_span = self._in_span(end_minute, rows)
        hit = self._span_cache.get(nkey) if in_span else None
        if hit is not None:
            return hit[0], hit[1]
        seg = self.store.topology.element_to(level)[r].copy()
        if element_mask is not None:
            seg[~element_mask[r]] = -1
        node_ids, inv = np.unique(seg[seg >= 0], return_inverse=True)
        seg[seg >= 0] = inv
        if in_span:
            self._span_cache[nkey] = (seg, node_ids, r, element_mask)
        return seg, node_ids

    def compute_span(
        self,
        kpi,
        level: str,
        t_from: int,
        t_to: int,
        window_min: int,
        service: str = "",
        element_mask: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        min_samples: float | None = None,
        nodes: np.ndarray | None = None,
    ) -> KpiResult:
        """:meth:`compute` at every end minute ``t_from..t_to`` at once, ``(ticks, nodes)`` arrays.

        Inside a re-evaluation span (:meth:`begin_series`) for a row subset, the window sums of
        all ticks come from the span's series and are rolled up, turned into values and statuses
        in one pass each (one roll-up of ``ticks x counters`` columns instead of one per tick), so
        a re-evaluation costs a few array operations per lifecycle instead of a few per lifecycle
        and tick. Row ``k`` equals ``compute(..., t_from + k, ...)`` exactly (the same operations
        element by element, roll-up sums in the same row order). Elsewhere it stacks
        :meth:`compute` per tick.

        Parameters
        ----------
        nodes : int array, optional
            Return only these nodes' columns (in this order) instead of every node of the
            level (a re-evaluation needs a few nodes of many).

        Returns
        -------
        KpiResult
            ``value``, ``samples``, ``status`` of shape ``(t_to - t_from + 1, n_nodes(level))``
            (``len(nodes)`` columns with ``nodes``).

        Raises
        ------
        ValueError
            As :meth:`compute`; ``t_to < t_from``.
        """
        if t_to < t_from:
            raise ValueError(f"compute_span: t_to ({t_to}) must not be before t_from ({t_from})")
        if rows is None or self._span is None or not self._span[0] <= t_from <= t_to <= self._span[1]:
            res = [
                self.compute(kpi, level, t, window_min, service, element_mask, rows, min_samples)
                for t in range(t_from, t_to + 1)
            ]
            sel = slice(None) if nodes is None else nodes
            return KpiResult(
                np.stack([r.value[sel] for r in res]),
                np.stack([r.samples[sel] for r in res]),
                np.stack([r.status[sel] for r in res]),
            )
        kd = self.get(kpi)
        topo = self.store.topology
        n_full = topo.n_nodes(level)
        svc = self._check_args(kd, window_min, service)
        r = np.ascontiguousarray(rows, dtype=np.int64)
        seg, node_ids = self._span_nodes(level, r, element_mask, t_from, rows)
        n_nodes = len(node_ids)
        n_t = t_to - t_from + 1
        k0 = t_from - self._span[0]
        names = self._names(kd)
        todo: dict[str, list] = {"cdr": [], "elem": []}
        for c in names:
            todo[COUNTERS[c].group].append(c)
        series = self._span_counter_series(todo, svc, window_min, rows)
        vecs = [series[c][k0 : k0 + n_t] for c in names]
        gap = kd.source in self.gap_sources
        if gap:
            a, h = self._span_activity_series(kd.source, window_min, rows)
            active = a[k0 : k0 + n_t].astype(np.float64)
            expected = h[k0 : k0 + n_t] * self._span_expected_factors(window_min)[k0 : k0 + n_t, None]
            vecs += [active, expected]
        # one roll-up for every tick: column block j * n_t + k holds vector j at tick k
        x = np.ascontiguousarray(np.concatenate([v.T for v in vecs], axis=1))
        agg = np.zeros((n_nodes, x.shape[1]))
        K.kpi_segment_sum(x, seg, agg)
        A = {c: agg[:, j * n_t : (j + 1) * n_t].T for j, c in enumerate(names)}
        if gap:
            n_act, n_exp = agg[:, -2 * n_t : -n_t].T, agg[:, -n_t:].T
        else:
            n_act = n_exp = np.zeros((n_t, n_nodes))
        n_el = self._node_sizes(level, seg, n_nodes, False)
        if kd.kind == "quantile":
            hs = self._span_hist_series(window_min, rows)
            n_b = hs.shape[2]
            lo_ms, bpo = self.store.hist_lo_ms, float(self.store.hist_bins_per_octave)
            # every tick's histograms rolled up and read in one call each: row r holds its bins of
            # tick k at columns k * n_b..; each node's sums add the rows in the same order per tick
            x = np.ascontiguousarray(hs[k0 : k0 + n_t].transpose(1, 0, 2)).reshape(len(r), n_t * n_b)
            hn = np.zeros((n_nodes, n_t * n_b))
            K.kpi_segment_sum(x, seg, hn)
            hn = np.ascontiguousarray(hn.reshape(n_nodes, n_t, n_b).transpose(1, 0, 2)).reshape(n_t * n_nodes, n_b)
            value = np.empty(n_t * n_nodes)
            K.kpi_hist_quantile(hn, kd.q, lo_ms, bpo, value)
            value = value.reshape(n_t, n_nodes)
        else:
            value = self._value(kd, A, window_min, (n_t, n_nodes))
        samples = A[kd.samples_counter]
        ms = kd.min_samples if min_samples is None else float(min_samples)
        status = np.empty(n_t * n_nodes, np.int8)
        out_value = np.empty(n_t * n_nodes)
        K.kpi_status(
            np.ascontiguousarray(value, dtype=np.float64).ravel(),
            np.ascontiguousarray(samples, dtype=np.float64).ravel(),
            float(ms),
            np.ascontiguousarray(n_act, dtype=np.float64).ravel(),
            np.ascontiguousarray(n_exp, dtype=np.float64).ravel(),
            self.gap_fraction,
            np.tile(n_el, n_t),
            status,
            out_value,
        )
        out_value, status = out_value.reshape(n_t, n_nodes), status.reshape(n_t, n_nodes)
        if nodes is not None:
            # the asked nodes' columns; nodes without a row of the subset are out of scope
            pos = np.minimum(np.searchsorted(node_ids, nodes), max(n_nodes - 1, 0))
            hit = (node_ids[pos] == nodes) if n_nodes else np.zeros(len(nodes), bool)
            if hit.all():
                return KpiResult(out_value[:, pos], samples[:, pos], status[:, pos])
            node_ids, n_full = nodes[hit], len(nodes)
            out_value, samples, status = out_value[:, pos[hit]], samples[:, pos[hit]], status[:, pos[hit]]
            cols = np.flatnonzero(hit)
        else:
            cols = node_ids
        full = KpiResult(
            np.full((n_t, n_full), np.nan), np.zeros((n_t, n_full)), np.full((n_t, n_full), STATUS_NO_SCOPE, np.int8)
        )
        full.value[:, cols] = out_value
        full.samples[:, cols] = samples
        full.status[:, cols] = status
        return full
