"""SLA monitoring: threshold rules and error-budget SLOs over KPIs, with violation lifecycles.

Rules are data (dicts, JSON or TOML) validated once with errors naming the rule and field.
:class:`SlaMonitor` owns one :class:`~telcoanalytics.kpi.CounterStore` (per-minute counters per
element) and evaluates every rule for every node of the rule's level at each minute boundary up
to the watermark. Each (rule, node) has a lifecycle inactive -> pending -> firing -> resolved,
emitted as :class:`SlaEvent`.

Late data
---------
Rows for minutes already evaluated update their minute in the ring and mark the element dirty.
At the next :meth:`SlaMonitor.advance`, the windows containing those minutes are re-evaluated for
the touched nodes only, and their lifecycles are replayed from a committed state kept
``reeval_minutes`` behind the last tick (using a ring of per-tick condition codes). Then only
what moves a node from its emitted state to its corrected state is emitted: a firing the late
data reveals (at its true time), a resolution (at its true time) of a violation the corrected
data ends, a withdrawn pending. A violation open in both runs keeps its start, so late data
never produces a second firing event for one violation; a firing violation that the corrected
data shows still open but not yet past its ``for`` (late rows delayed its firing) stays firing,
and a resolution is never stamped before the firing it ends. Data
older than the re-evaluation horizon still corrects the counters but no longer the lifecycle.
The windows of all re-evaluated ticks come from one gather per ring group: cumulative per-minute
sums of the counters the rules read, over the union of the touched rows
(:meth:`~telcoanalytics.kpi.KpiCalculator.begin_series`), so each window of each tick is one
difference instead of a fresh sum over the ring. A threshold rule over a ratio or quantile KPI is
re-evaluated for its touched nodes in one kernel call from those sums (:mod:`telcoanalytics.sla.late`,
``fused_late``); other lifecycles through ``compute_span``.

Topology changes
----------------
:meth:`SlaMonitor.set_topology` follows added, re-homed, retired, restored and compacted
elements while data flows: new elements get counter rows, counters stay with their element (a
re-homed element counts toward its new ancestors from the change on), retired elements leave
every rule's scope, and open violations on nodes left without an in-scope element are closed
with a ``resolved`` event saying so ("closed without recovery").

Error-budget SLOs
-----------------
An SLO ``objective`` (e.g. 0.999) of a ratio KPI (good / total, e.g. call setup successes over
attempts) gets multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5): burn rate
``= (1 - good/total) / (1 - objective)``; an alert fires while the burn rate over both its long
and short window is at least its factor (defaults: page 14.4x over 1 h and 5 min, page 6x over
6 h and 30 min, ticket 1x over 3 days and 6 h). A pair is not evaluated (insufficient) until
the data spans its short window, so a fresh start does not read 30 minutes as "3 days".
Windows that fit the minute ring (with the
re-evaluation horizon) are exact; longer ones use the hour ring and cover the current (partial)
hour plus whole hours before it, i.e. they are up to 59 minutes shorter than nominal.
"""

from __future__ import annotations

import json

import numpy as np

from kernels import kpi as K
from kernels import sla as SK
from telcoanalytics.kpi import (
    COUNTERS,
    MINUTE_MS,
    STATUS_NO_SCOPE,
    CounterStore,
    KpiCalculator,
    KpiDef,
    kpi_registry,
)
from telcoanalytics.sla.changed import _ChangedInputs
from telcoanalytics.sla.fused import _FusedConditions
from telcoanalytics.sla.late import _LateData
from telcoanalytics.sla.lifecycle import (
    _burn_codes,
    _burn_of,
    _burn_of_counts,
    _Eval,
    _fmt_min,
)
from telcoanalytics.sla.quiet import _QuietTicks
from telcoanalytics.sla.rules import (
    SlaEvent,
    SlaRule,
    SloRule,
    _minutes,
    default_rules,
    load_rules,
    threshold_params,
)
from telcoanalytics.sla.tick import _Ticks
from telcoanalytics.sla.topology_change import _TopologyChanges
from telcoanalytics.topology.model import Topology


class SlaMonitor(_Ticks, _FusedConditions, _ChangedInputs, _TopologyChanges, _LateData, _QuietTicks):
    """Evaluate SLA rules and SLOs for every node of their scope, incrementally per batch.

    Parameters
    ----------
    topology : Topology
    rules : list of dicts / SlaRule / SloRule, path, or None
        Default :func:`default_rules` for ``topology``.
    kpis : iterable of KpiDef or dicts, optional
        User KPIs added to (or replacing) the built-ins.
    minute_ring : int, optional
        Minutes of counters kept; default: enough for the longest minute window plus
        ``reeval_minutes`` (at least 90).
    reeval_minutes : int
        How far back late data re-evaluates lifecycles (0 disables).
    pm_interval_s : float
        Equipment reporting period (for availability).
    gap_fraction : float
        See :class:`~telcoanalytics.kpi.KpiCalculator`.
    emit_cancelled : bool
        Also emit a "resolved" event when a pending violation ends before firing.

    Examples
    --------
    >>> import numpy as np
    >>> from telcoanalytics.records import empty
    >>> topo = Topology.from_columns(np.array([7]), {"site": np.array([1])})
    >>> mon = SlaMonitor(topo, [{"name": "blk", "kpi": "blocking_pct", "comparator": ">",
    ...                          "threshold": 5.0, "window": "1m"}])
    >>> cdr = empty("cdr", 10)
    >>> cdr["element_id"], cdr["start_ms"], cdr["end_ms"] = 7, 60_000, 90_000
    >>> cdr["cause"] = [16] * 9 + [34]                  # one of ten attempts blocked
    >>> [(e.state, e.value) for e in mon.step("cdr", cdr, 120_000)]
    [('firing', 10.0)]
    """

    def __init__(
        self,
        topology: Topology,
        rules=None,
        kpis=None,
        minute_ring: int | None = None,
        reeval_minutes: int = 15,
        pm_interval_s: float = 300.0,
        gap_fraction: float = 0.5,
        emit_cancelled: bool = False,
        max_ahead_ms: int = 3_600_000,
    ):
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a telcoanalytics.topology.model.Topology, got {type(topology).__name__}")
        self.topology = topology
        self.user_kpis = [k if isinstance(k, KpiDef) else KpiDef.from_dict(k) for k in (kpis or ())]
        self.kpis = kpi_registry(self.user_kpis)
        self.rules = load_rules(default_rules(topology) if rules is None else rules, self.kpis)
        if isinstance(reeval_minutes, bool) or not isinstance(reeval_minutes, (int, np.integer)) or reeval_minutes < 0:
            raise ValueError(f"reeval_minutes must be an integer >= 0, got {reeval_minutes!r}")
        self.reeval_minutes = int(reeval_minutes)
        self.emit_cancelled = bool(emit_cancelled)
        L = max(self.reeval_minutes, 1)
        hour_cols, max_minute_win, max_hours, strict_win = [], 0, 0, 0
        for r in self.rules:
            self._check_level(r)
            if isinstance(r, SlaRule):
                max_minute_win = max(max_minute_win, r.window_min)
                strict_win = max(strict_win, r.window_min)
            else:
                kd = self.kpis[r.kpi]
                for c in kd.numerator + kd.denominator:
                    hc = (c, r.service if COUNTERS[c].group == "cdr" else "")
                    if hc not in hour_cols:
                        hour_cols.append(hc)
                max_hours = max(max_hours, -(-r.period_min // 60) + 1)
                for _, _, lo, sh in r.windows:
                    max_minute_win = max(max_minute_win, min(lo, 60), min(sh, 60))
                    max_hours = max(max_hours, -(-lo // 60) + 1)
        need = strict_win + self.reeval_minutes + 2
        if minute_ring is None:
            minute_ring = max(90, max_minute_win + self.reeval_minutes + 2)
        elif minute_ring < need:
            raise ValueError(
                f"minute_ring={minute_ring} cannot hold the longest rule window "
                f"({strict_win} min) plus reeval_minutes ({self.reeval_minutes}); use >= {need}"
            )
        hour_ring = max(max_hours, minute_ring // 60 + 2) if hour_cols else 0
        self.store = CounterStore(
            topology, int(minute_ring), pm_interval_s, hour_cols, hour_ring, max_ahead_ms=max_ahead_ms
        )
        self.calc = KpiCalculator(self.store, self.kpis, gap_fraction)
        self.evals = self._expand(L)
        self.last_tick = -1
        self.first_tick = -1
        self.n_late_rows = 0
        self._memo: dict = {}  # shared KPI evaluations within one tick / re-evaluation
        self._bank = None  # lifecycles of all evals end to end (built at the first tick)
        self._dirty = {src: np.zeros(topology.n_elements, bool) for src in ("cdr", "equip", "qos")}
        self._dirty_lo = {src: np.iinfo(np.int64).max for src in self._dirty}
        self._dirty_hi = {src: -1 for src in self._dirty}
        self._chg_reset()

    # ---- setup -----------------------------------------------------------------------------
    def _check_level(self, r):
        if r.level not in self.topology.levels:
            raise ValueError(
                f"rule {r.name!r}.level: {r.level!r} is not a topology level; levels are {self.topology.levels}"
            )
        for k in r.filter:
            if k not in self.topology.attributes and k not in self.topology.levels:
                raise ValueError(
                    f"rule {r.name!r}.filter: {k!r} is neither a topology attribute "
                    f"({sorted(self.topology.attributes)}) nor a level {self.topology.levels}"
                )

    def _mask(self, filt: dict):
        """Elements in scope of a rule filter (None: all); retired elements are never in scope."""
        topo = self.topology
        if not filt:
            return None if topo.active.all() else topo.active.copy()
        m = topo.active.copy()
        for k, vals in filt.items():
            if k in topo.levels:
                col = topo.ids[k][topo.element_to(k)]
            else:
                col = np.asarray(topo.attributes[k])
            m &= np.isin(col, np.asarray(vals))
        return m

    def _expand(self, L) -> list[_Eval]:
        out = []
        for r in self.rules:
            n = self.topology.n_nodes(r.level)
            if isinstance(r, SlaRule):
                ms = r.min_samples if r.min_samples is not None else self.kpis[r.kpi].min_samples
                cms = r.clear_min_samples if r.clear_min_samples is not None else ms
                clr = r.clear_threshold if r.clear_threshold is not None else r.threshold
                e = _Eval(
                    r.name,
                    r.kpi,
                    r.severity,
                    r.level,
                    r.filter,
                    r.service,
                    r.comparator,
                    r.threshold,
                    clr,
                    r.window_min,
                    r.for_min,
                    r.clear_for_min,
                    ms,
                    "threshold",
                    n,
                    L,
                )
                e.clear_min_samples = cms
            else:
                for i, (sev, f, lo, sh) in enumerate(r.windows):
                    e = _Eval(
                        f"{r.name}/{sev}-{_fmt_min(lo)}",
                        r.kpi,
                        sev,
                        r.level,
                        r.filter,
                        r.service,
                        ">=",
                        f,
                        f,
                        sh,
                        0,
                        r.clear_for_min,
                        r.window_min_samples(i),
                        "burn",
                        n,
                        L,
                        burn=(r.objective, f, lo, sh),
                    )
                    e.mask = self._mask(r.filter)
                    out.append(e)
                continue
            e.mask = self._mask(r.filter)
            out.append(e)
        return out

    # ---- ingestion -------------------------------------------------------------------------
    def update(self, source: str, batch: np.ndarray, element_index: np.ndarray | None = None) -> dict:
        """Add one canonical batch; returns counts ``{"accepted": n, "late": n, <reject reason>: n}``.

        ``element_index``: the rows' dense topology indices when already resolved (a pipeline's
        routed batch), so the ids are not looked up twice.

        Rows for minutes that were already evaluated are accepted into their minute and mark
        the windows containing them for re-evaluation at the next :meth:`advance`.
        """
        res = self.store.add(source, batch, element_index)
        out = {"accepted": res.accepted, **res.rejected}
        if self.last_tick >= 0 and len(res.minute):
            late = res.minute < self.last_tick
            n_late = int(late.sum())
            if n_late:
                self.n_late_rows += n_late
                self._chg_late_rows(source, res.elem[late])  # sums inside windows changed: evaluated afresh
                self._dirty[source][res.elem[late]] = True
                self._dirty_lo[source] = min(self._dirty_lo[source], int(res.minute[late].min()))
                self._dirty_hi[source] = max(self._dirty_hi[source], int(res.minute[late].max()))
            out["late"] = n_late
        return out

    # ---- evaluation ------------------------------------------------------------------------
    def _codes(self, ev: _Eval, tick: int):
        """Condition codes and values of every node of ``ev`` at ``tick`` (late-data
        re-evaluation of a few nodes over many ticks: :meth:`_codes_span`)."""
        n = self.topology.n_nodes(ev.level)
        if ev.kind == "threshold":
            if not self._live(tick, ev.window_min):
                return np.zeros(n, np.int8), np.full(n, np.nan)
            v, samples, status = self._compute(
                ev, ev.kpi, tick, ev.window_min, min(ev.min_samples, ev.clear_min_samples)
            )
            codes = np.empty(n, np.int8)
            SK.sla_threshold_codes(
                np.ascontiguousarray(v, dtype=np.float64),
                np.ascontiguousarray(samples, dtype=np.float64),
                np.ascontiguousarray(status, dtype=np.int8),
                *threshold_params(ev),
                codes,
            )
            return codes, v
        objective, factor, lo, sh = ev.burn
        if tick - self.store.first_minute < sh:
            # until the data spans the short window, the long window is no longer than it
            return np.zeros(n, np.int8), np.full(n, np.nan)
        burn_l, ok_l, _ = self._burn(ev, tick, lo, objective, factor)
        burn_s, ok_s, quiet_s = self._burn(ev, tick, sh, objective, factor)
        return _burn_codes(burn_l, ok_l, burn_s, ok_s, quiet_s, factor), np.where(ok_l, burn_l, np.nan)

    def _codes_span(self, ev: _Eval, t_from: int, t_to: int, rows, nodes):
        """Condition codes and values of ``nodes`` (the nodes holding ``rows``) at every tick
        ``t_from..t_to``, ``(ticks, nodes)`` arrays: what :meth:`_codes` gives for those nodes at
        each tick, from one KPI evaluation per lifecycle and window for all ticks
        (:meth:`KpiCalculator.compute_span`) instead of one per tick (late-data re-evaluation)."""
        n_t, n = t_to - t_from + 1, len(nodes)
        codes = np.zeros((n_t, n), np.int8)
        values = np.full((n_t, n), np.nan)
        if ev.kind == "threshold":
            live = self._live_span(t_from, t_to, ev.window_min)
            if not live.any():
                return codes, values
            v, samples, status = self._compute_span(
                ev, ev.kpi, t_from, t_to, ev.window_min, rows, min(ev.min_samples, ev.clear_min_samples), nodes
            )
            c = np.empty(n_t * n, np.int8)
            SK.sla_threshold_codes(
                np.ascontiguousarray(v, dtype=np.float64).ravel(),
                np.ascontiguousarray(samples, dtype=np.float64).ravel(),
                np.ascontiguousarray(status, dtype=np.int8).ravel(),
                *threshold_params(ev),
                c,
            )
            codes[live] = c.reshape(n_t, n)[live]
            values[live] = v[live]
            return codes, values
        objective, factor, lo, sh = ev.burn
        # until the data spans the short window, the long window is no longer than it
        t0 = max(t_from, self.store.first_minute + sh)
        if t0 > t_to:
            return codes, values
        burn_l, ok_l, _ = self._burn_span(ev, t0, t_to, lo, objective, rows, nodes, factor)
        burn_s, ok_s, quiet_s = self._burn_span(ev, t0, t_to, sh, objective, rows, nodes, factor)
        k = t0 - t_from
        codes[k:] = _burn_codes(burn_l, ok_l, burn_s, ok_s, quiet_s, factor)
        values[k:] = np.where(ok_l, burn_l, np.nan)
        return codes, values

    def _compute_span(self, ev: _Eval, kpi, t_from: int, t_to: int, window_min: int, rows, min_samples: float, nodes):
        """:meth:`_compute` at every tick ``t_from..t_to`` (``(ticks, nodes)`` arrays), shared the same way."""
        share = ev.mask is not None and ev.level == self.topology.element_level
        mask = None if share else ev.mask
        # only the asked nodes' columns; at the element level the nodes are among the (sorted) rows,
        # so every lifecycle of a source asks for the rows and shares one evaluation
        req = nodes
        if ev.level == self.topology.element_level:
            pos = np.minimum(np.searchsorted(rows, nodes), max(len(rows) - 1, 0))
            if len(rows) and np.array_equal(rows[pos], nodes):
                req = rows
        key = (
            "span",
            kpi if isinstance(kpi, str) else kpi.name,
            ev.level,
            t_from,
            t_to,
            window_min,
            ev.service,
            float(min_samples),
            id(rows),
            None if mask is None else id(mask),
            id(req),
        )
        res = self._memo_get(
            key,
            lambda: self.calc.compute_span(
                kpi, ev.level, t_from, t_to, window_min, ev.service, mask, rows, min_samples, req
            ),
            rows,
            mask,
            req,
        )
        v, samples, status = res.value, res.samples, res.status
        if req is not nodes:
            v, samples, status = v[:, pos], samples[:, pos], status[:, pos]
        if share:
            m = ev.mask[nodes]
            v, samples = np.where(m, v, np.nan), np.where(m, samples, 0.0)
            status = np.where(m, status, STATUS_NO_SCOPE).astype(np.int8)
        return v, samples, status

    def _burn_span(
        self, ev: _Eval, t_from: int, t_to: int, window_min: int, objective: float, rows, nodes, factor: float
    ):
        """:meth:`_burn` at every tick ``t_from..t_to`` (``(ticks, nodes)`` arrays)."""
        kd = self.kpis[ev.kpi]
        if window_min + self.reeval_minutes + 1 <= self.store.minute_ring:
            v, n, status = self._compute_span(ev, kd, t_from, t_to, window_min, rows, min(ev.min_samples, 1.0), nodes)
            return _burn_of(v / kd.scale, n, status, ev.min_samples, objective, factor)
        agg = np.stack([self._hour_agg(ev, kd, tick, window_min, rows)[nodes] for tick in range(t_from, t_to + 1)])
        return _burn_of_counts(agg[:, :, 0], agg[:, :, 1], ev.min_samples, objective, factor)

    def _live(self, tick: int, window_min: int) -> bool:
        """Whether the ring holds any minute of the window ending at ``tick`` (shared within a tick /
        re-evaluation)."""
        key = ("live", tick, window_min)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = len(self.store.window_slots(tick, window_min)) > 0
        return hit

    def _live_span(self, t_from: int, t_to: int, window_min: int) -> np.ndarray:
        """:meth:`_live` at every tick ``t_from..t_to`` (bool array, shared within a re-evaluation)."""
        key = ("live_span", t_from, t_to, window_min)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = np.array([self._live(t, window_min) for t in range(t_from, t_to + 1)])
        return hit

    def _memo_get(self, key, make, *keep):
        hit = self._memo.get(key)
        if hit is None:
            self._memo[key] = hit = (make(),) + keep  # rows / mask kept alive: ids stay unique
        return hit[0]

    def _compute(self, ev: _Eval, kpi, tick: int, window_min: int, min_samples: float):
        """``calc.compute`` for ``ev`` over every node as (value, samples, status), shared between
        rules over the same KPI and window.

        An element-level rule's scope filter only turns the elements outside it into "no scope"
        nodes (each node is one element), so such rules share one unfiltered evaluation and apply
        their filter after it (e.g. the per-technology latency rules).
        """
        res, share = self._compute_shared(ev, kpi, tick, window_min, min_samples)
        v, samples, status = res.value, res.samples, res.status
        if share:
            m = ev.mask
            v, samples = np.where(m, v, np.nan), np.where(m, samples, 0.0)
            status = np.where(m, status, STATUS_NO_SCOPE).astype(np.int8)
        return v, samples, status

    def _compute_shared(self, ev: _Eval, kpi, tick: int, window_min: int, min_samples: float):
        """The memoised ``calc.compute`` behind :meth:`_compute` and whether ``ev``'s scope mask
        is still to be applied to it (an element-level rule sharing the unfiltered evaluation)."""
        share = ev.mask is not None and ev.level == self.topology.element_level
        mask = None if share else ev.mask
        key = (
            kpi if isinstance(kpi, str) else kpi.name,
            ev.level,
            tick,
            window_min,
            ev.service,
            float(min_samples),
            None if mask is None else id(mask),
        )
        res = self._memo_get(
            key, lambda: self.calc.compute(kpi, ev.level, tick, window_min, ev.service, mask, None, min_samples), mask
        )
        return res, share

    def _burn(self, ev: _Eval, tick: int, window_min: int, objective: float, factor: float):
        """Burn rate per node over ``window_min`` ending at ``tick``, whether it has enough samples,
        and whether the window is quiet (see :func:`_burn_of`)."""
        kd = self.kpis[ev.kpi]
        if window_min + self.reeval_minutes + 1 <= self.store.minute_ring:
            v, n, status = self._compute(ev, kd, tick, window_min, min(ev.min_samples, 1.0))
            return _burn_of(v / kd.scale, n, status, ev.min_samples, objective, factor)
        agg = self._hour_agg(ev, kd, tick, window_min, None)
        n = len(agg)
        burn, ok, quiet = np.empty(n), np.empty(n, bool), np.empty(n, bool)
        SK.sla_burn_of_counts(agg, float(ev.min_samples), float(objective), float(factor), burn, ok, quiet)
        return burn, ok, quiet

    def _hour_agg(self, ev: _Eval, kd: KpiDef, tick: int, window_min: int, rows) -> np.ndarray:
        """:meth:`_hour_window`, shared between lifecycles within a tick / re-evaluation."""
        key = (
            "hour",
            kd.name,
            ev.level,
            tick,
            window_min,
            ev.service,
            None if rows is None else id(rows),
            None if ev.mask is None else id(ev.mask),
        )
        return self._memo_get(key, lambda: self._hour_window(ev, kd, tick, window_min, rows), rows, ev.mask)

    def _hour_window(self, ev: _Eval, kd: KpiDef, tick: int, window_min: int, rows) -> np.ndarray:
        """(good, total) per node of ``ev.level`` over a window longer than the minute ring."""
        st = self.store
        if rows is None:
            return self._hour_window_all(ev, kd, tick, window_min)
        r = self.calc._all_rows if rows is None else rows
        seg = self.topology.element_to(ev.level)[r].copy()
        if ev.mask is not None:
            seg[~ev.mask[r]] = -1
        n_h = -(-window_min // 60)
        svc = lambda c: ev.service if COUNTERS[c].group == "cdr" else ""  # noqa: E731
        num = sum(self.calc.hour_sums(st.hour_column(c, svc(c)), tick, n_h, rows) for c in kd.numerator)
        den = sum(self.calc.hour_sums(st.hour_column(c, svc(c)), tick, n_h, rows) for c in kd.denominator)
        agg = np.zeros((self.topology.n_nodes(ev.level), 2))
        K.kpi_segment_sum(np.ascontiguousarray(np.column_stack([num, den])), seg, agg)
        return agg

    def _hour_window_all(self, ev: _Eval, kd: KpiDef, tick: int, window_min: int) -> np.ndarray:
        """:meth:`_hour_window` over all elements: each counter's hour sum added into its column
        straight from the running aggregates (:func:`kernels.kpi.kpi_add_hour_sum`, the additions
        of ``hour_sums`` and of summing the counters, in their order), then the roll-up."""
        st = self.store
        n_h = -(-window_min // 60)
        x = np.zeros((self.topology.n_elements, 2))
        for j, names in enumerate((kd.numerator, kd.denominator)):
            for c in names:
                col = st.hour_column(c, ev.service if COUNTERS[c].group == "cdr" else "")
                K.kpi_add_hour_sum(x, j, *st.hour_sum_parts(col, tick, n_h))
        seg, _ = self.calc._segments(ev.level, ev.mask)
        agg = np.zeros((self.topology.n_nodes(ev.level), 2))
        K.kpi_segment_sum(x, seg, agg)
        return agg

    def advance(self, watermark_ms: int) -> list[SlaEvent]:
        """Evaluate every minute boundary up to ``watermark_ms`` (re-evaluating late data first).

        A tick at minute boundary ``t`` evaluates windows ending at ``t`` (minutes before it).

        Returns
        -------
        list of SlaEvent
            Transitions in time order per rule.
        """
        wm_tick = int(watermark_ms) // MINUTE_MS
        self.store.set_watermark(int(watermark_ms))
        if self.last_tick < 0:
            if self.store.head_minute < 0:
                return []
            self.last_tick = self.store.first_minute
            self.first_tick = self.last_tick + 1
        self._memo.clear()
        out = self._reevaluate() if max(self._dirty_hi.values()) >= 0 else []
        tick = self.last_tick + 1
        while tick <= wm_tick:
            self._memo.clear()
            out += self._evaluate_tick(tick)
            self.last_tick = tick
            end = self._quiet_until(tick, wm_tick)
            if end > tick:  # inputs as at ``tick`` up to ``end``: no KPI evaluation, a jump once settled
                self._memo.clear()
                out += self._coast(tick, end)
            tick = self.last_tick + 1
        self._memo.clear()
        return out

    def step(self, source: str, batch: np.ndarray, watermark_ms: int) -> list[SlaEvent]:
        """``update(source, batch)`` then ``advance(watermark_ms)``: one micro-batch of a replay."""
        self.update(source, batch)
        return self.advance(watermark_ms)

    def skip_to(self, watermark_ms: int) -> int:
        """Mark every tick up to ``watermark_ms`` as evaluated without evaluating it.

        For warming the counter store from history (e.g. the last hour before a restart without
        a checkpoint): lifecycles start at the next tick, so history raises no events. Returns
        the number of ticks skipped.
        """
        wm_tick = int(watermark_ms) // MINUTE_MS
        self.store.set_watermark(int(watermark_ms))
        if self.last_tick < 0:
            if self.store.head_minute < 0:
                return 0
            self.last_tick = self.store.first_minute
        n = max(0, wm_tick - self.last_tick)
        self.last_tick = max(self.last_tick, wm_tick)
        self.first_tick = self.last_tick + 1
        self._chg_reset()
        for src in self._dirty:
            self._dirty[src][:] = False
            self._dirty_lo[src], self._dirty_hi[src] = np.iinfo(np.int64).max, -1
        return n

    # ---- queries ---------------------------------------------------------------------------
    def kpi_table(self, level: str, t_ms: int, kpis=None, window_s: float = 300, service: str = "") -> np.ndarray:
        """KPI values of every node of ``level`` over the window ending at minute ``t_ms // 60000``.

        Returns
        -------
        structured array
            ``node_id`` plus, per KPI ``k``: ``k`` (f8, NaN unless ok), ``k__samples`` (f8) and
            ``k__status`` (i1: 0 ok, 1 insufficient, 2 collection gap, 3 no scope).
        """
        names = list(kpis) if kpis is not None else list(self.kpis)
        w = _minutes(window_s, "kpi_table window_s", 1)
        end = int(t_ms) // MINUTE_MS
        n = self.topology.n_nodes(level)
        dt = [("node_id", "i8")]
        for k in names:
            dt += [(k, "f8"), (f"{k}__samples", "f8"), (f"{k}__status", "i1")]
        out = np.zeros(n, dtype=dt)
        out["node_id"] = self.topology.ids[level]
        for k in names:
            kd = self.calc.get(k)
            r = self.calc.compute(kd, level, end, w, service if kd.group == "cdr" else "")
            out[k], out[f"{k}__samples"], out[f"{k}__status"] = r.value, r.samples, r.status
        return out

    def error_budget(self, slo: str, t_ms: int) -> np.ndarray:
        """Error budget of an SLO per node over its period ending at ``t_ms`` (hour resolution).

        Returns
        -------
        structured array
            node_id, good, total, error_ratio, budget_used (error ratio / (1 - objective)),
            budget_remaining (1 - budget_used).
        """
        rule = next((r for r in self.rules if isinstance(r, SloRule) and r.name == slo), None)
        if rule is None:
            raise ValueError(f"unknown SLO {slo!r}; SLOs: {[r.name for r in self.rules if isinstance(r, SloRule)]}")
        kd = self.kpis[rule.kpi]
        st = self.store
        end = int(t_ms) // MINUTE_MS
        n_h = -(-rule.period_min // 60)
        rows = None
        svc = lambda c: rule.service if COUNTERS[c].group == "cdr" else ""  # noqa: E731
        good = sum(st.hour_sums(st.hour_column(c, svc(c)), end, n_h, rows) for c in kd.numerator)
        total = sum(st.hour_sums(st.hour_column(c, svc(c)), end, n_h, rows) for c in kd.denominator)
        seg = self.topology.element_to(rule.level).copy()
        m = self._mask(rule.filter)
        if m is not None:
            seg[~m] = -1
        agg = np.zeros((self.topology.n_nodes(rule.level), 2))
        K.kpi_segment_sum(np.ascontiguousarray(np.column_stack([good, total])), seg, agg)
        out = np.zeros(
            len(agg),
            dtype=[
                ("node_id", "i8"),
                ("good", "f8"),
                ("total", "f8"),
                ("error_ratio", "f8"),
                ("budget_used", "f8"),
                ("budget_remaining", "f8"),
            ],
        )
        out["node_id"] = self.topology.ids[rule.level]
        out["good"], out["total"] = agg[:, 0], agg[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["error_ratio"] = np.where(agg[:, 1] > 0, 1.0 - agg[:, 0] / agg[:, 1], np.nan)
        out["budget_used"] = out["error_ratio"] / (1.0 - rule.objective)
        out["budget_remaining"] = 1.0 - out["budget_used"]
        return out

    def firing(self) -> list[tuple[str, str, int]]:
        """Currently firing (rule, scope_level, scope_id) triples."""
        res = []
        for ev in self.evals:
            for node in np.flatnonzero(ev.state.state == K.ST_FIRING):
                res.append((ev.name, ev.level, int(self.topology.ids[ev.level][node])))
        return res

    # ---- checkpoint ------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Checkpoint: numpy arrays and plain scalars/strings only."""
        d = {f"store.{k}": v for k, v in self.store.to_state().items()}
        d.update(
            {
                "rules": json.dumps([r.to_dict() for r in self.rules]),
                "kpis": json.dumps([k.to_dict() for k in self.user_kpis]),
                "reeval_minutes": self.reeval_minutes,
                "gap_fraction": self.calc.gap_fraction,
                "emit_cancelled": int(self.emit_cancelled),
                "last_tick": self.last_tick,
                "first_tick": self.first_tick,
                "n_late_rows": self.n_late_rows,
            }
        )
        for src in self._dirty:
            d[f"dirty.{src}"] = self._dirty[src].copy()
            d[f"dirty_lo.{src}"] = int(self._dirty_lo[src])
            d[f"dirty_hi.{src}"] = int(self._dirty_hi[src])
        for i, ev in enumerate(self.evals):
            for which in ("state", "committed"):
                ls = getattr(ev, which)
                for a in ("state", "count", "start", "worst"):
                    d[f"eval{i}.{which}.{a}"] = getattr(ls, a).copy()
            d[f"eval{i}.fired"] = np.array(
                [(n, st, t) for n, f in ev.fired.items() for st, t in f.items()], np.int64
            ).reshape(-1, 3)
            d[f"eval{i}.codes"] = ev.codes.copy()
            d[f"eval{i}.values"] = ev.values.copy()
        return d

    @classmethod
    def from_state(cls, d: dict) -> SlaMonitor:
        """Restore a monitor written by :meth:`to_state`."""
        store = CounterStore.from_state({k[6:]: v for k, v in d.items() if k.startswith("store.")})
        rules = json.loads(d["rules"])
        for r in rules:
            if r.get("clear_threshold") is None:
                r.pop("clear_threshold", None)
            for k in ("min_samples", "clear_min_samples"):
                if r.get(k) is None:
                    r.pop(k, None)
        m = cls(
            store.topology,
            rules,
            json.loads(d["kpis"]),
            store.minute_ring,
            int(d["reeval_minutes"]),
            store.pm_interval_s,
            float(d["gap_fraction"]),
            bool(d["emit_cancelled"]),
            store.max_ahead_ms,
        )
        m.store = store
        m.calc = KpiCalculator(store, m.kpis, float(d["gap_fraction"]))
        m.last_tick, m.first_tick = int(d["last_tick"]), int(d["first_tick"])
        m.n_late_rows = int(d["n_late_rows"])
        for src in m._dirty:
            m._dirty[src] = np.array(d[f"dirty.{src}"])
            m._dirty_lo[src], m._dirty_hi[src] = int(d[f"dirty_lo.{src}"]), int(d[f"dirty_hi.{src}"])
        for i, ev in enumerate(m.evals):
            for which in ("state", "committed"):
                ls = getattr(ev, which)
                for a in ("state", "count", "start", "worst"):
                    setattr(ls, a, np.array(d[f"eval{i}.{which}.{a}"]))
            for n, st, t in np.asarray(d[f"eval{i}.fired"]).tolist():
                ev.fired.setdefault(n, {})[st] = t
            ev.codes = np.array(d[f"eval{i}.codes"])
            ev.values = np.array(d[f"eval{i}.values"])
        return m
