"""Window reads of a :class:`~telcoanalytics.kpi.store.CounterStore`: ring slots of a window,
columns of a counter, hour-ring sums, and window series for late-data re-evaluation.

Re-evaluating the last ``L`` ticks for the elements touched by late rows needs, per rule, a
window sum at each of those ticks. Inside a span (:meth:`KpiCalculator.begin_series`) the
counters the rules read are gathered once per ring group into cumulative per-minute sums over
the union of the touched rows (:meth:`_WindowReads.prefix_sums`, one read of each ring cell), so
every window of every tick is one difference; other aggregates (latency histograms, activity)
move each tick's window from the previous one's (:meth:`_WindowReads.window_series`). The
exactness argument of :mod:`telcoanalytics.kpi.running` applies.
"""

from __future__ import annotations

import numpy as np

from kernels import kpi as K
from telcoanalytics.kpi.definitions import COUNTERS
from telcoanalytics.records import (
    SERVICE_CODE,
)


class _WindowReads:
    """Mixin of :class:`~telcoanalytics.kpi.store.CounterStore`: reads of windows of its rings."""

    def window_slots(self, end_minute: int, window_min: int) -> np.ndarray:
        """Ring slots of the minutes ``[end - window, end)`` that the ring holds."""
        mins = np.arange(end_minute - window_min, end_minute, dtype=np.int64)
        slots = mins % self.minute_ring
        return np.ascontiguousarray(slots[self.slot_minute[slots] == mins])

    def history_slots(self, end_minute: int, window_min: int) -> np.ndarray:
        """Ring slots holding minutes before the window ``[end - window, end)``."""
        mins = np.arange(end_minute - self.minute_ring, end_minute - window_min, dtype=np.int64)
        slots = mins % self.minute_ring
        return np.ascontiguousarray(slots[(self.slot_minute[slots] == mins) & (mins >= 0)])

    def ring_of(self, group: str) -> np.ndarray:
        return self.cdr if group == "cdr" else self.elem

    def columns(self, counter: str, service: str = "") -> np.ndarray:
        """Ring columns holding ``counter`` (all services summed when ``service`` is "")."""
        c = COUNTERS[counter]
        if c.group != "cdr":
            return np.array([c.column], np.int64)
        if service:
            return np.array([SERVICE_CODE[service] * K.N_CDR + c.column], np.int64)
        return np.arange(self.n_services, dtype=np.int64) * K.N_CDR + c.column

    def hour_sums(self, col: int, end_minute: int, n_hours: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Sum of hour column ``col`` over minutes ``[60 * (h - n_hours + 1), end_minute)`` where
        ``h`` is the hour of minute ``end_minute - 1``: whole hours from the hour ring plus the
        minutes still in the minute ring, per element of ``rows`` (all elements when None, from
        running aggregates of both rings, see :meth:`running`)."""
        last_h = (end_minute - 1) // 60
        first_min = (last_h - n_hours + 1) * 60
        grp, cols = self._hour_spec[col]
        m_lo = max(first_min, end_minute - self.minute_ring)
        if rows is None:
            h = self.running(("hour", col, n_hours), "hour", "sum", [col], last_h - n_hours + 1, last_h + 1)
            mkey = ("win", grp, self.minute_ring) if m_lo == end_minute - self.minute_ring else ("hsum", grp, n_hours)
            m = self.running(mkey, grp, "sum", cols, m_lo, end_minute)
            out = h.out[:, 0].copy()
            for c in cols:
                out += m.out[:, m.colpos[int(c)]]
            return out
        mins = np.arange(m_lo, end_minute, dtype=np.int64)
        mslots = mins % self.minute_ring
        live = self.slot_minute[mslots] == mins
        mslots = np.ascontiguousarray(mslots[live])
        hrs = np.arange(last_h - n_hours + 1, last_h + 1, dtype=np.int64)
        hslots = hrs % self.hour_ring
        hslots = np.ascontiguousarray(hslots[self.slot_hour[hslots] == hrs])
        out = np.zeros((len(rows), 1))
        K.kpi_window_sum(self.hour, rows, hslots, np.array([col], np.int64), np.zeros(1, np.int64), out)
        K.kpi_window_sum(self.ring_of(grp), rows, mslots, cols, np.zeros(len(cols), np.int64), out)
        return out[:, 0]

    def hour_sum_parts(self, col: int, end_minute: int, n_hours: int) -> tuple:
        """The running aggregates behind :meth:`hour_sums` over all elements: (whole hours, minutes
        still in the minute ring, positions of the column's minute-ring columns in the latter);
        ``hours[:, 0] + minutes[:, pos[0]] + ...`` (left to right) is ``hour_sums(col, end_minute,
        n_hours)``. Read before the store changes, never write."""
        last_h = (end_minute - 1) // 60
        first_min = (last_h - n_hours + 1) * 60
        grp, cols = self._hour_spec[col]
        m_lo = max(first_min, end_minute - self.minute_ring)
        h = self.running(("hour", col, n_hours), "hour", "sum", [col], last_h - n_hours + 1, last_h + 1)
        mkey = ("win", grp, self.minute_ring) if m_lo == end_minute - self.minute_ring else ("hsum", grp, n_hours)
        m = self.running(mkey, grp, "sum", cols, m_lo, end_minute)
        return h.out, m.out, np.array([m.colpos[int(c)] for c in cols], np.int64)

    # ---- window series (late-data re-evaluation) -----------------------------------------
    def _series_plan(self, group: str, lo, hi):
        """Slots and signs moving window ``[lo[k], hi[k])`` to ``[lo[k+1], hi[k+1])`` (see
        :func:`kernels.kpi.kpi_window_series`); tick 0 lists its whole window.

        Per tick ``k > 0`` the pieces are ``[hi[k-1], hi[k])`` (entering, +1) then ``[lo[k-1],
        lo[k])`` (leaving, -1), a reversed piece flipping its sign; each piece lists the units it
        covers that the ring holds, in ascending order. Built with array operations (one pass for
        all ticks instead of a few numpy calls per piece).
        """
        lo = np.asarray(lo, np.int64).reshape(-1)
        hi = np.asarray(hi, np.int64).reshape(-1)
        n_k = len(lo)
        if n_k == 0:
            return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        # pieces in emission order: tick 0's window, then per tick (hi move, lo move)
        a = np.empty(2 * n_k - 1, np.int64)
        b = np.empty(2 * n_k - 1, np.int64)
        sg = np.ones(2 * n_k - 1, np.int64)
        tk = np.empty(2 * n_k - 1, np.int64)
        a[0], b[0], tk[0] = lo[0], hi[0], 0
        a[1::2], b[1::2] = hi[:-1], hi[1:]
        a[2::2], b[2::2] = lo[:-1], lo[1:]
        sg[2::2] = -1
        tk[1::2] = tk[2::2] = np.arange(1, n_k)
        rev = b < a
        a, b = np.where(rev, b, a), np.where(rev, a, b)
        sg = np.where(rev, -sg, sg)
        a = np.maximum(a, 0)
        ln = np.maximum(b - a, 0)
        tot = int(ln.sum())
        if group == "hour":
            ring_n, held = self.hour_ring, self.slot_hour
        else:
            ring_n, held = self.minute_ring, self.slot_minute
        off = np.cumsum(ln) - ln
        units = np.arange(tot, dtype=np.int64) - np.repeat(off - a, ln)
        slots = units % ring_n
        keep = held[slots] == units
        slots = np.ascontiguousarray(slots[keep])
        signs = np.ascontiguousarray(np.repeat(sg, ln)[keep])
        counts = np.bincount(np.repeat(tk, ln)[keep], minlength=n_k)
        ptr = np.zeros(n_k + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        return ptr, slots, signs

    def window_series(self, group: str, cols, out_col, n_out: int, rows, lo, hi, kind: str = "sum") -> np.ndarray:
        """Per-element window aggregates of ``rows`` for a run of windows ``[lo[k], hi[k])``.

        Parameters
        ----------
        group : {"cdr", "elem", "hist", "hour"}
        cols, out_col : int arrays
            Ring columns and the output column each adds into (``kind="sum"``); for "act", the
            columns whose sum > 0 marks an active minute.
        n_out : int
            Output columns (``kind="sum"``).
        rows : int64 array
            Dense element indices.
        lo, hi : int sequences
            Window of each tick, in minutes (hours for "hour"), both non-decreasing for the
            cheapest plan (any order is correct).
        kind : {"sum", "act"}

        Returns
        -------
        ndarray
            ``(len(lo), len(rows), n_out)`` float64 sums, or ``(len(lo), len(rows))`` int64
            active-minute counts; equal to summing each window afresh (same exactness argument
            as the running aggregates).
        """
        lo = [min(int(a), int(b)) for a, b in zip(lo, hi)]
        ptr, slots, signs = self._series_plan(group, lo, hi)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        ring = self._ring(group)
        if kind == "sum":
            out = np.zeros((len(lo), len(rows), int(n_out)))
            K.kpi_window_series(
                ring,
                rows,
                np.ascontiguousarray(cols, dtype=np.int64),
                np.ascontiguousarray(out_col, dtype=np.int64),
                ptr,
                slots,
                signs,
                out,
            )
        else:
            out = np.zeros((len(lo), len(rows)), np.int64)
            K.kpi_activity_series(ring, rows, np.ascontiguousarray(cols, dtype=np.int64), ptr, slots, signs, out)
        return out

    def prefix_sums(self, group: str, keys, rows, lo: int, hi: int) -> np.ndarray:
        """Cumulative per-minute sums of counters ``keys`` ((counter, service) pairs of ``group``)
        for ``rows`` over minutes ``[lo, hi)``: ``(len(keys), hi - lo + 1, len(rows))`` float64,
        ``[j, k]`` holding key ``j``'s sums of minutes ``lo..lo+k-1`` the ring holds (see
        :func:`kernels.kpi.kpi_prefix_gather`)."""
        mins = np.arange(lo, hi, dtype=np.int64)
        slots = mins % self.minute_ring
        slots = np.ascontiguousarray(np.where((self.slot_minute[slots] == mins) & (mins >= 0), slots, -1))
        cols, outc = [], []
        for j, (c, svc) in enumerate(keys):
            cc = self.columns(c, svc)
            cols.append(cc)
            outc.append(np.full(len(cc), j, np.int64))
        out = np.empty((len(keys), len(mins) + 1, len(rows)))
        K.kpi_prefix_gather(
            self._ring(group),
            np.ascontiguousarray(rows, dtype=np.int64),
            slots,
            np.concatenate(cols),
            np.concatenate(outc),
            out,
        )
        return out

    def hour_sums_series(self, col: int, ticks, n_hours: int, rows, minute_part=None) -> np.ndarray:
        """:meth:`hour_sums` of ``rows`` at each minute of ``ticks`` (consecutive), ``(len(ticks), len(rows))``."""
        grp, cols = self._hour_spec[col]
        ticks = [int(t) for t in ticks]
        last_h = [(t - 1) // 60 for t in ticks]
        h_lo = [h - n_hours + 1 for h in last_h]
        h_hi = [h + 1 for h in last_h]
        m_lo = [max(a * 60, t - self.minute_ring) for a, t in zip(h_lo, ticks)]
        out = self.window_series("hour", [col], [0], 1, rows, h_lo, h_hi)[:, :, 0]
        if minute_part is not None:  # (lo, hi) -> sums of the minute ring part, given by the caller
            out += np.stack([minute_part(a, t) for a, t in zip(m_lo, ticks)])
        else:
            out += self.window_series(grp, cols, np.zeros(len(cols), np.int64), 1, rows, m_lo, ticks)[:, :, 0]
        return out
