"""Running window aggregates of a :class:`~telcoanalytics.kpi.store.CounterStore`.

Window sums over all elements come from running aggregates (:meth:`_RunningAggregates.running`), one
per (ring, window length) with the columns in use: each tick adds the minute entering the window
and subtracts the one leaving it (slots known to be empty are skipped), so a tick costs
O(elements x columns) instead of O(window x elements x columns). Rows added later to a minute
inside a running window add the change of each touched ring cell (new - old float32 value), and
a minute leaving the ring (the data runs ahead) is subtracted before its slot is reused, so an
aggregate always equals a fresh sum over the ring's current content. Activity counts (minutes
with data) and the hour-ring part of long SLO windows run the same way. Exactness: sums are
float64 over float32 cells; counts are integers (exact), and sums of non-integer counters
(holding seconds, unavailable seconds, latency sums) are exact as long as every partial sum fits
53 bits at the resolution of the smallest cell (in practice always: cells carry 24 significant
bits, window sums of typical magnitudes need well under 53), so adding and subtracting in any
order gives the same float64 as summing the window afresh.
"""

from __future__ import annotations

import numpy as np

from kernels import kpi as K

#: rings whose sliding sums move in :func:`kernels.kpi.kpi_running_shift_planes` (column-ordered sums)
PLANE_GROUPS = ("cdr", "elem")

_NO_UNITS = np.zeros(0, np.int64)
_NO_OUT = np.zeros((0, 0))


# ---- running window aggregates -------------------------------------------------------------
class _Running:
    """A per-element aggregate over a moving interval ``[lo, hi)`` of one ring.

    ``kind`` "sum": float64 sums of ring columns ``cols`` over the minutes (hours for the
    "hour" group) of the interval that the ring holds; "act": per element, the number of those
    minutes in which the sum of ``cols`` is > 0. Derived state only (never checkpointed).
    """

    __slots__ = ("group", "kind", "cols", "colpos", "lo", "hi", "out", "known")

    def __init__(self, group: str, kind: str, cols, n: int):
        self.group, self.kind = group, kind
        self.cols = np.ascontiguousarray(cols, dtype=np.int64)
        self.colpos = {int(c): j for j, c in enumerate(self.cols)}
        self.known: set = set()  # column lists (as bytes) found among ``cols``
        self.lo = self.hi = None
        if kind == "sum":
            # column by column (Fortran order) for the rings stored as column planes: a tick's shift
            # and a ratio's roll-up read each column as one contiguous vector; latency histograms
            # (read a whole row per element) and hour sums row by row
            self.out = np.zeros((n, len(self.cols)), order="F" if group in PLANE_GROUPS else "C")
        else:
            self.out = np.zeros(n, np.int64)


class _RunningAggregates:
    """Mixin of :class:`~telcoanalytics.kpi.store.CounterStore`: per-element aggregates over moving
    intervals of its rings, kept equal to a fresh sum as minutes enter, leave and receive late rows."""

    def _ring(self, group: str) -> np.ndarray:
        """Ring ``group`` as ``[slot, element, column]`` (a view of the column planes of a minute ring)."""
        return self.hour if group == "hour" else self._planes[group].transpose(0, 2, 1)

    def _present(self, group: str, lo: int, hi: int) -> np.ndarray:
        """Slots of the minutes (hours for "hour") in ``[lo, hi)`` that the ring holds."""
        lo = max(lo, 0)
        if hi <= lo:
            return np.zeros(0, np.int64)
        units = np.arange(lo, hi, dtype=np.int64)
        if group == "hour":
            slots = units % self.hour_ring
            return np.ascontiguousarray(slots[self.slot_hour[slots] == units])
        slots = units % self.minute_ring
        return np.ascontiguousarray(slots[self.slot_minute[slots] == units])

    def _shift(self, r: _Running, add_slots, sub_slots):
        used = self._slot_used.get(r.group)
        if used is not None:  # an empty slot adds nothing: skip reading it
            add_slots = np.ascontiguousarray(add_slots[used[add_slots]])
            sub_slots = np.ascontiguousarray(sub_slots[used[sub_slots]])
        if len(add_slots) == 0 and len(sub_slots) == 0:
            return
        ring = self._ring(r.group)
        if r.kind == "sum":
            K.kpi_running_shift(ring, add_slots, sub_slots, r.cols, r.out)
        else:
            K.kpi_running_activity(ring, add_slots, sub_slots, r.cols, r.out)

    def running(self, key, group: str, kind: str, cols, lo: int, hi: int) -> _Running:
        """The running aggregate ``key`` moved to ``[lo, hi)``.

        Moving forward costs the minutes entering and leaving the interval (one each per tick
        for a sliding window) instead of the whole window; a backward move, a jump past the
        old interval or new columns recompute it from the ring. Rows added later to minutes
        inside the interval, and minutes leaving the ring, update it as they happen
        (:meth:`add`, ring advance), so it always equals the sum over the ring's current content.

        Parameters
        ----------
        key : hashable
            Identity of the aggregate (one per window family).
        group : {"cdr", "elem", "hist", "hour"}
        kind : {"sum", "act"}
        cols : int array
            Ring columns (summed per column for "sum"; an activity indicator for "act").
        lo, hi : int
            Interval in minutes (hours for the "hour" group).

        Returns
        -------
        _Running
            Its ``out`` (n_elements x len(cols) float64, or n_elements int64 for "act") must be
            treated as read-only by the caller.
        """
        r = self._running.get(key)
        if r is not None and r.lo == lo and r.hi == hi and lo < hi and r.group == group and r.kind == kind:
            ck = np.asarray(cols, np.int64).tobytes()
            if ck in r.known:
                return r  # already in place with these columns (the common case: one check per tick)
            if all(int(c) in r.colpos for c in cols):
                r.known.add(ck)
                return r
        cols = [int(c) for c in cols]
        if (
            r is not None
            and r.lo == lo
            and r.hi == hi
            and lo < hi
            and r.group == group
            and r.kind == kind
            and all(c in r.colpos for c in cols)
        ):
            return r  # already in place (e.g. moved by slide_running): nothing to shift
        if r is None or r.group != group or r.kind != kind or any(c not in r.colpos for c in cols):
            old = list(r.cols) if (r is not None and r.kind == kind and r.group == group and kind == "sum") else []
            allc = old + [c for c in cols if c not in old] if kind == "sum" else cols
            r = self._running[key] = _Running(group, kind, allc, self.topology.n_elements)
        if r.lo is None or lo < r.lo or hi < r.hi or lo >= r.hi or (lo - r.lo) + (hi - r.hi) >= hi - lo:
            r.out[...] = 0
            self._shift(r, self._present(group, lo, hi), np.zeros(0, np.int64))
        else:
            self._shift(r, self._present(group, r.hi, hi), self._present(group, r.lo, lo))
        if r.lo is None:
            self._runs_changed()  # a new sum, or one set up again: the add kernels' lists change
        r.lo, r.hi = lo, hi
        return r

    def _runs_changed(self):
        """The set of running aggregates placed in the rings, or an output array, changed: the lists
        :meth:`_runs_of` and :meth:`_running_args` keep are built again at their next use."""
        self._runs_cache = {}

    def _runs_of(self, group: str, kind: str) -> list:
        """The running aggregates of ``group`` and ``kind`` placed in the ring (``lo`` set), in
        creation order (kept until :meth:`_runs_changed`: a batch add asks for them every call)."""
        key = (group, kind)
        runs = self._runs_cache.get(key)
        if runs is None:
            runs = self._runs_cache[key] = [
                r for r in self._running.values() if r.group == group and r.kind == kind and r.lo is not None
            ]
        return runs

    def slide_running(self, end_minute: int) -> int:
        """Move every sliding window sum (keys ``("win", group, w)``, interval ``[end - w, end)``)
        that ends one minute before ``end_minute`` to end at ``end_minute``: one kernel call per
        ring for all window lengths (:meth:`_shift_many`) instead of one per window when :meth:`running` asks for them. Each sum
        gets exactly the shift :meth:`running` would apply, so :meth:`running` then finds it in
        place. Returns the number of sums moved."""
        jobs: dict = {}
        for key, r in self._running.items():
            if key[0] != "win" or r.kind != "sum" or r.lo is None:
                continue
            lo, hi = end_minute - key[2], end_minute
            if r.hi != hi - 1 or r.lo != lo - 1 or hi - lo <= 2:
                continue  # not a one-minute move (or running() would sum it afresh)
            jobs.setdefault(r.group, []).append(r)
        n_moved = 0
        for grp, runs in jobs.items():
            add = self._unit_slot(grp, end_minute - 1)
            todo, subs = [], []
            for r in runs:
                sub = self._unit_slot(grp, r.lo)
                r.lo, r.hi = r.lo + 1, r.hi + 1
                n_moved += 1
                if add >= 0 or sub >= 0:
                    todo.append(r)
                    subs.append(sub)
            if not todo:
                continue
            self._shift_many(grp, add, np.array(subs, np.int64), todo)
        return n_moved

    def _shift_many(self, group: str, add_slot: int, sub_slots: np.ndarray, runs: list):
        """Move running sums ``runs`` of ring ``group`` by one minute in one kernel call: minute slot
        ``add_slot`` in (-1: none), ``sub_slots[i]`` out of sum ``i`` (-1: none). Rings stored as
        column planes read the sums' columns as vectors (:func:`kernels.kpi.kpi_running_shift_planes`);
        the histogram ring (whole rows per element) the rows that may hold counts
        (:func:`kernels.kpi.kpi_running_shift_many`). The same per-cell arithmetic either way."""
        col_ptr = np.zeros(len(runs) + 1, np.int64)
        np.cumsum([len(r.cols) for r in runs], out=col_ptr[1:])
        cols = np.concatenate([r.cols for r in runs])
        if group in PLANE_GROUPS:
            outs_t = tuple(r.out.T for r in runs)
            K.kpi_running_shift_planes(self._planes[group], add_slot, sub_slots, col_ptr, cols, outs_t)
        else:
            outs = tuple(r.out for r in runs)
            K.kpi_running_shift_many(self._ring(group), self._row_used[group], add_slot, sub_slots, col_ptr, cols, outs)

    def _unit_slot(self, group: str, unit: int) -> int:
        """Slot of minute ``unit`` (hour for "hour") when the ring holds it and it may hold data
        (:meth:`_present` of one unit, without the slots known empty), else -1."""
        if unit < 0:
            return -1
        if group == "hour":
            s = unit % self.hour_ring
            return s if self.slot_hour[s] == unit else -1
        s = unit % self.minute_ring
        return s if self.slot_minute[s] == unit and self._slot_used[group][s] else -1

    def _running_evict(self, s: int, minute: int):
        """Minute ``minute`` (slot ``s``) leaves the minute ring: take it out of the aggregates (the
        sums of one ring in one :meth:`_shift_many` call)."""
        sub = np.array([s], np.int64)
        sums: dict = {}
        for r in self._running.values():
            if r.group != "hour" and r.lo is not None and r.lo <= minute < r.hi:
                if r.kind == "sum":
                    sums.setdefault(r.group, []).append(r)
                else:
                    self._shift(r, np.zeros(0, np.int64), sub)
        for g, runs in sums.items():
            if not self._slot_used[g][s]:
                continue  # a slot known empty subtracts nothing
            self._shift_many(g, -1, np.full(len(runs), s, np.int64), runs)

    def _running_evict_hour(self, hs: int, hour: int):
        sub = np.array([hs], np.int64)
        for r in self._running.values():
            if r.group == "hour" and r.lo is not None and r.lo <= hour < r.hi:
                self._shift(r, np.zeros(0, np.int64), sub)

    _SOURCE_GROUPS = {"cdr": ("cdr",), "equip": ("elem",), "qos": ("elem", "hist")}

    def _running_args(self, group: str):
        """The running sums of ``group`` that rows added to the ring must move, as the add kernels
        take them (:func:`kernels.kpi.kpi_add_cdr`): their intervals, the position of each ring
        column among their columns (-1: not summed), their outputs transposed (``out.T``: one
        array type per ring whether a sum is stored by column or by row, or has one column)."""
        runs = self._runs_of(group, "sum")
        fixed = self._runs_cache.get(("args", group))
        if fixed is None:  # column maps and transposed outputs: the same until the sums change
            width = self._ring(group).shape[2]
            if not runs:
                fixed = (np.full((0, width), -1, np.int64), (_NO_OUT,))
            else:
                colmap = np.full((len(runs), width), -1, np.int64)
                for k, r in enumerate(runs):
                    colmap[k, r.cols] = np.arange(len(r.cols))
                fixed = (colmap, tuple(r.out.T for r in runs))
            self._runs_cache[("args", group)] = fixed
        if not runs:
            return (_NO_UNITS, _NO_UNITS, *fixed)
        return (
            np.array([r.lo for r in runs], np.int64),
            np.array([r.hi for r in runs], np.int64),
            *fixed,
        )

    def _running_snapshot_act(self, source, reason, elem, minute, late_bound, rows_lo=None, rows_hi=None):
        """Before a batch's second pass: the ring cells its accepted rows for minutes inside a
        running activity count will touch, with their current values (None when there are none;
        running sums move inside the add kernels). ``rows_lo``, ``rows_hi``: the lowest and highest
        minute of the accepted rows when known (a batch wholly outside every count is not scanned)."""
        runs = self._runs_cache.get(("act", source))
        if runs is None:
            runs = self._runs_cache[("act", source)] = [
                r
                for r in self._running.values()
                if r.kind == "act" and r.lo is not None and r.group in self._SOURCE_GROUPS[source]
            ]
        if not runs:
            return None
        lo, hi = min(r.lo for r in runs), max(r.hi for r in runs)
        if rows_lo is not None and (rows_lo >= hi or rows_hi < lo or rows_hi <= late_bound):
            return None  # the usual batch: rows for minutes not yet evaluated
        cs, ce, cm = K.kpi_act_cells(
            elem, minute, reason, late_bound, lo, hi, self.minute_ring, self.topology.n_elements
        )
        if len(cs) == 0:
            return None
        self.slot_minute[cs] = cm  # as the add kernel sets them
        groups = self._runs_cache.get(("actgroups", source))
        if groups is None:  # per ring: its counts, column pointers and columns, outputs
            by_group = {}
            for r in runs:
                by_group.setdefault(r.group, []).append(r)
            groups = []
            for g, rs in by_group.items():
                col_ptr = np.zeros(len(rs) + 1, np.int64)
                np.cumsum([len(r.cols) for r in rs], out=col_ptr[1:])
                groups.append((g, rs, col_ptr, np.concatenate([r.cols for r in rs]), tuple(r.out for r in rs)))
            self._runs_cache[("actgroups", source)] = groups
        late = []
        for g, rs, col_ptr, cols, outs in groups:
            args = (np.array([r.lo for r in rs], np.int64), np.array([r.hi for r in rs], np.int64), col_ptr, cols)
            K.kpi_act_count(self._ring(g), cs, ce, cm, *args, -1, outs)  # the activity before the batch out
            late.append((g, args, outs))
        return late, cs, ce, cm

    def _running_apply(self, late):
        """After the batch: the touched cells' activity after it into the counts covering them (the
        one before it was taken out by :meth:`_running_snapshot_act`)."""
        groups, cs, ce, cm = late
        for g, args, outs in groups:
            K.kpi_act_count(self._ring(g), cs, ce, cm, *args, 1, outs)
