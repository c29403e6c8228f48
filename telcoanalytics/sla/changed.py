"""Conditions carried over unchanged inputs (a mixin of ``SlaMonitor``): a threshold rule whose inputs
at a tick equal those of the previous tick keeps the previous tick's condition codes and values
(still in the lifecycle bank) instead of evaluating its KPI again.

A threshold rule's codes and values at tick ``t`` are a function of its KPI's window sums over
``[t - w, t)`` per element (ring groups of its counters, the latency histogram), of the active
minutes in and before the window and the expected-minutes factor (sources with collection gaps),
of whether the ring holds any minute of the window, and of static parts (scope, segments,
thresholds). The rule is carried from ``t - 1`` to ``t`` when all of these are known equal:

* the previous tick ``t - 1`` was evaluated (or carried) on the same bank, topology and rules
  (a bank rebuild, a restore, a topology change or :meth:`SlaMonitor.skip_to` evaluate afresh);
* no row of the KPI's source arrived for a minute before ``t - 1`` since (late rows change sums
  inside the window; their flag is cleared by the next evaluated tick);
* for every ring group the KPI reads, the minute entering the window (``t - 1``) and the minute
  leaving it (``t - 1 - w``) are held by the minute ring and hold no data (the sliding sum adds
  and subtracts nothing). The ring drops its oldest minutes first, so a leaving minute still held
  means no minute of the window left the ring since ``t - 1``;
* the ring holds a minute of the window at both ticks or at neither;
* for a source with collection gaps, the active minutes in and before the window per element and
  the expected-minutes factor equal those of the tick the rule was last evaluated at (compared).

Rows for the minute ``t - 1`` or later arriving between the ticks are covered by the entering
minute's data flag; rows further ahead only matter once their minute enters a window. Burn-rate
pairs (hour-ring windows, short-window spans) are always evaluated.
"""

from __future__ import annotations

import numpy as np

from kernels import sla as SK
from telcoanalytics.kpi import ACTIVITY_COUNTER, COUNTERS
from telcoanalytics.sla.lifecycle import _Eval

_NO_ACT = (np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0)
_NO_GAP = np.zeros(0, bool)


class _Activity:
    """Activity inputs of the rules over one source and window (compared for equality)."""

    __slots__ = ("active", "hist", "factor", "gap")

    def __init__(self, active, hist, factor, gap):
        self.active, self.hist, self.factor, self.gap = active, hist, factor, gap

    def __eq__(self, other) -> bool:
        if not isinstance(other, _Activity):
            return False
        if self.gap is not None or other.gap is not None:
            return self.gap is not None and other.gap is not None and np.array_equal(self.gap, other.gap)
        return (
            self.factor == other.factor
            and np.array_equal(self.active, other.active)
            and np.array_equal(self.hist, other.hist)
        )

    __hash__ = None


class _ChangedInputs:
    """Which threshold rules keep the previous tick's conditions (their inputs did not change), and
    for which elements an element-level rule over a ratio KPI is evaluated again."""

    #: False: every rule is evaluated at every tick (kept for A/B measurements and equality tests)
    changed_only = True

    def _chg_reset(self):
        """Forget what the bank's conditions were evaluated on: the next tick evaluates every rule."""
        self._chg_tick = -1  # tick whose conditions the bank holds for every threshold rule
        self._chg_live: dict = {}  # window -> whether the ring held a minute of it at _chg_tick
        self._chg_act: dict = {}  # (source, window, element level) -> _Activity at _chg_tick
        self._chg_late: set = set()  # sources with rows for minutes before the last tick since then
        n = self.topology.n_elements
        self._chg_rows = {src: np.zeros(n, bool) for src in ("cdr", "equip", "qos")}  # their elements

    def _chg_late_rows(self, source: str, elem: np.ndarray):
        """Rows of ``source`` for minutes before the last tick arrived for the elements ``elem``."""
        self._chg_late.add(source)
        self._chg_rows[source][elem] = True

    def _chg_spec(self, ev: _Eval):
        """(source, ring groups read, collection-gap source, evaluated per element) of a threshold
        rule (kept on ``ev``)."""
        if ev.chg is None:
            kd = self.kpis[ev.kpi]
            groups = {COUNTERS[c].group for c in self.calc._names(kd)}
            if kd.kind == "quantile":
                groups.add("hist")
            gap = kd.source in self.calc.gap_sources
            if gap:
                groups.add(COUNTERS[ACTIVITY_COUNTER[kd.source]].group)
            rows = kd.kind in ("ratio", "quantile") and ev.level == self.topology.element_level
            ev.chg = (kd.source, tuple(sorted(groups)), gap, rows)
        return ev.chg

    def _held_slot(self, minute: int) -> int:
        """Slot of ``minute`` when the minute ring holds it, else -1."""
        st = self.store
        if minute < 0:
            return -1
        s = minute % st.minute_ring
        return s if st.slot_minute[s] == minute else -1

    def _chg_elements(self, src: str, groups, w: int, gap: bool):
        """Elements (int64, ascending) whose inputs of a rule over ``src``, ``groups`` and window
        ``w`` may have changed since the previous tick, or None when the window's entering or
        leaving minute is not held by the ring (evaluate all): late rows, data in the entering or
        leaving minute, a changed collection-gap flag (:func:`kernels.sla.sla_changed_rows`)."""
        st = self.store
        t = self._chg_now
        marks = [self._chg_rows[src]]
        for minute in (t - 1, t - 1 - w):
            s = self._held_slot(minute)
            if s < 0:
                return None
            marks += [st._row_used[g][s] for g in groups if st._slot_used[g][s]]
        n = len(marks[0])
        act, saved_gap, gap_now = _NO_ACT, _NO_GAP, _NO_GAP
        if gap:
            key = (src, w, True)
            saved = self._chg_act.get(key)
            if saved is None:
                return None
            act = self.calc.activity_parts(src, t, w)
            saved_gap, gap_now = saved.gap, np.empty(n, bool)
        out = np.empty(n, np.int64)
        k = SK.sla_changed_rows(tuple(marks), act, self.calc.gap_fraction, saved_gap, gap_now, out)
        if gap:
            self._chg_cur[key] = _Activity(None, None, None, gap_now)
        return out[:k]

    def _carried(self, tick: int) -> list:
        """Per eval: True (keeps the conditions of ``tick - 1``), False (evaluated), or the elements
        (int64) an element-level rule over a ratio KPI is evaluated for (see the module notes)."""
        self._chg_now = tick
        self._chg_cur: dict = {}
        n = len(self.evals)
        if not self.changed_only or self._chg_tick != tick - 1 or tick < 1:
            return [False] * n
        memo: dict = {}
        out = []
        for ev in self.evals:
            if ev.kind != "threshold":
                out.append(False)
                continue
            src, groups, gap, per_row = self._chg_spec(ev)
            w = ev.window_min
            if self._live(tick, w) != self._chg_live.get(w):
                out.append(False)
                continue
            if per_row and self.fused_conditions:
                key = ("rows", src, groups, w, gap)
                hit = memo.get(key)
                if hit is None:
                    hit = memo[key] = (self._chg_elements(src, groups, w, gap),)
                rows = hit[0]
                out.append(False if rows is None else (True if len(rows) == 0 else rows))
                continue
            ok = src not in self._chg_late
            for g in groups:
                if not ok:
                    break
                key = (g, w)
                q = memo.get(key)
                if q is None:
                    q = memo[key] = self._quiet_minute(g, tick - 1) and self._quiet_minute(g, tick - 1 - w)
                ok = q
            if ok and gap:
                key = (src, w, ev.level == self.topology.element_level)
                same = memo.get(key)
                if same is None:
                    same = memo[key] = self._chg_activity(key) == self._chg_act.get(key)
                ok = same
            out.append(ok)
        return out

    def _quiet_minute(self, group: str, minute: int) -> bool:
        """Whether the minute ring holds ``minute`` and it holds no data of ``group``."""
        s = self._held_slot(minute)
        return s >= 0 and not self.store._slot_used[group][s]

    def _chg_activity(self, key) -> _Activity:
        """What a rule over source ``key[0]`` and window ``key[1]`` reads of the activity at the
        current tick: for element-level rules (``key[2]``) only each element's collection-gap flag
        (its status; active and expected minutes are not read otherwise), else the active minutes
        in and before the window and the expected-minutes factor."""
        hit = self._chg_cur.get(key)
        if hit is not None:
            return hit
        src, w, element_level = key
        active, hist_active, factor = self.calc.activity_parts(src, self._chg_now, w)
        if element_level:
            flags = np.empty(len(active), bool)
            SK.sla_gap_flags(active, hist_active, float(factor), self.calc.gap_fraction, flags)
            hit = _Activity(None, None, None, flags)
        else:
            hit = _Activity(active.copy(), hist_active.copy(), factor, None)
        self._chg_cur[key] = hit
        return hit

    def _chg_done(self, tick: int):
        """Record the inputs of the conditions the bank now holds (``tick`` evaluated)."""
        for ev in self.evals:
            if ev.kind != "threshold":
                continue
            w = ev.window_min
            self._chg_live[w] = self._live(tick, w)
            src, _, gap, _ = self._chg_spec(ev)
            if gap:
                key = (src, w, ev.level == self.topology.element_level)
                self._chg_act[key] = self._chg_activity(key)
        for src in self._chg_late:
            self._chg_rows[src][:] = False
        self._chg_late.clear()
        self._chg_tick = tick
