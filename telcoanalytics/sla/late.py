"""Late-data re-evaluation of the SLA monitor (a mixin of ``SlaMonitor``): see the module notes of
:mod:`telcoanalytics.sla.monitor`."""

from __future__ import annotations

import numpy as np

from kernels import kpi as K
from kernels import sla as SK
from telcoanalytics.kpi import (
    ACTIVITY_COUNTER,
    COUNTERS,
    MINUTE_MS,
)
from telcoanalytics.sla.lifecycle import _Eval, _LifeState
from telcoanalytics.sla.rules import SlaEvent, threshold_params

_INT64_MAX = int(np.iinfo(np.int64).max)
_NO_FACTORS = np.zeros(0)
_NO_POST = np.zeros(0, bool)


class _LateData:
    """Re-evaluation of windows that late rows touched."""

    #: False: every lifecycle takes ``_codes_span`` (kept for A/B measurements and equality tests)
    fused_late = True
    #: False: no grouped kernel calls (``_late_groups``), each lifecycle through ``_late_ratio_codes``
    #: (kept for A/B measurements and equality tests)
    grouped_late = True

    def _reevaluate(self) -> list[SlaEvent]:
        out: list[SlaEvent] = []
        L = self.reeval_minutes
        T = self.last_tick
        dirty_by_src = {
            src: (np.flatnonzero(a), self._dirty_lo[src], self._dirty_hi[src]) for src, a in self._dirty.items()
        }
        for src in self._dirty:
            self._dirty[src][:] = False
            self._dirty_lo[src], self._dirty_hi[src] = _INT64_MAX, -1
        if not L:
            return out
        base = max(T - L + 1, self.first_tick)
        # window sums of the touched rows for all re-evaluated ticks at once, one series per
        # (counters, window, rows): each tick's window moved from the previous one's
        plan = self._reevaluation_plan(dirty_by_src, base, T)
        union: dict = {}
        for ev, _nodes, rows, _t_from, _t_to in plan:
            g = "cdr" if self.kpis[ev.kpi].source == "cdr" else "elem"
            union.setdefault(g, []).append(rows)
        union = {g: np.unique(np.concatenate(v)) for g, v in union.items()}
        grouped = self.grouped_late and self.fused_late
        done = self._late_groups(plan, union.get("elem"), base, T, L) if grouped else {}
        if len(done) == len(plan):  # every lifecycle's codes are in the ring: no span evaluation
            self._reevaluate_span(out, plan, base, T, L, done)
            return out
        self.calc.begin_series(base, T, self._rule_counters(), union)
        try:
            self._reevaluate_span(out, plan, base, T, L, done)
        finally:
            self.calc.end_series()
        return out

    def _late_spec(self, ev: _Eval):
        """What the grouped late path needs of ``ev`` (kept on it), or False when ``ev`` is not an
        element-level threshold rule over a ratio or quantile KPI whose counters (and collection-gap
        row counter) are all in the element ring."""
        if ev.late is None:
            kd = self.kpis[ev.kpi]
            calc, st = self.calc, self.store
            names = calc._names(kd)
            gap = kd.source in calc.gap_sources
            keys = names + ([ACTIVITY_COUNTER[kd.source]] if gap else [])
            ev.late = False
            if (
                ev.kind == "threshold"
                and kd.kind in ("ratio", "quantile")
                and ev.level == self.topology.element_level
                and kd.source != "cdr"
                and all(COUNTERS[c].group == "elem" for c in keys)
            ):
                cols = [st.columns(c) for c in keys]
                key_ptr = np.zeros(len(keys) + 1, np.int64)
                np.cumsum([len(c) for c in cols], out=key_ptr[1:])
                t_min, t_clr, cmp, thr, clr = threshold_params(ev)
                ev.late = {
                    "group": (kd.name, ev.window_min, kd.source),
                    "keys": (key_ptr, np.concatenate(cols).astype(np.int64), len(keys) - 1 if gap else -1),
                    "plan": (
                        np.array([names.index(c) for c in kd.numerator], np.int64),
                        np.array([names.index(c) for c in kd.denominator], np.int64),
                        names.index(kd.samples_counter),
                    ),
                    "rule": (float(min(ev.min_samples, ev.clear_min_samples)), (t_min, t_clr, thr, clr), cmp),
                }
        return ev.late

    def _late_groups(self, plan, rows_elem, base: int, T: int, L: int) -> dict:
        """Re-evaluate the plan's element-level threshold rules over ratio and quantile KPIs of the
        element ring in one kernel call per group of rules sharing an evaluation (KPI, window,
        source: e.g. the latency rules per technology), the codes and values written into the
        bank's ring (:func:`kernels.sla.sla_late_ratio_group`, :func:`kernels.sla.sla_late_quantile_group`):
        what :meth:`_late_ratio_codes` and the ring assignment of :meth:`_reevaluate_span` give, bit
        for bit. Returns plan index -> whether the lifecycle's codes changed (the lifecycles done).

        Declines (nothing done) without an intact bank (before the first tick, after a restore or
        a topology change) and when the span's prefix would exceed the calculator's budget (the
        span path then evaluates step by step, as it would)."""
        bank = self._bank
        if rows_elem is None or bank is None or not bank.intact(self.evals):
            return {}
        st, calc = self.store, self.calc
        lo = base - st.minute_ring
        n_keys_span = len(self._rule_counters().get("elem", ()))
        if (T - lo + 1) * len(rows_elem) * n_keys_span * 8 > calc.prefix_budget_bytes:
            return {}
        groups: dict = {}
        for i, p in enumerate(plan):
            spec = self._late_spec(p[0])
            if spec:
                groups.setdefault(spec["group"], []).append(i)
        ring = (bank.codes, bank.values)
        done: dict = {}
        used = st._row_used["elem"]
        for (kpi, w, _src), idx in groups.items():
            _, _, rows, t_from, t_to = plan[idx[0]]  # one source and window: the same rows and ticks
            kd = self.kpis[kpi]
            spec = plan[idx[0]][0].late
            pre = (st.elem, used, rows, *spec["keys"], lo)
            span = (st.slot_minute, t_from, t_to - t_from + 1, w, T)
            rules = self._late_rules(plan, idx, rows, bank, t_from, t_to, L)
            changed = np.zeros(len(idx), bool)
            if kd.kind == "quantile":
                hist = (st.hist, st._row_used["hist"], float(kd.q), st.hist_lo_ms, float(st.hist_bins_per_octave))
                SK.sla_late_quantile_group(pre, span, hist, rules, ring, changed)
            else:
                SK.sla_late_ratio_group(pre, span, spec["plan"], float(kd.scale), rules, ring, changed)
            done.update(zip(idx, changed.tolist()))
        return done

    def _late_rules(self, plan, idx, rows, bank, t_from: int, t_to: int, L: int) -> tuple:
        """The ``rules`` argument of the group kernels for the plan entries ``idx``."""
        evs = [plan[i][0] for i in idx]
        key = tuple(map(id, evs))
        memo = getattr(self, "_late_rules_memo", None)
        if memo is None or memo[0] is not bank:
            memo = self._late_rules_memo = (bank, {}, {id(ev): j for j, ev in enumerate(self.evals)})
        static = memo[1].get(key)
        if static is None:
            specs = [ev.late["rule"] for ev in evs]
            static = memo[1][key] = (
                np.array([r[0] for r in specs]),
                np.array([r[1] for r in specs], np.float64).reshape(len(specs), 4),
                np.array([r[2] for r in specs], np.int64),
                [int(bank.ptr[memo[2][id(ev)]]) for ev in evs],
                evs,  # kept alive: their ids stay unique
            )
        ms, thr, cmp, offsets, _ = static
        sel, col, node_ptr = [], [], np.zeros(len(idx) + 1, np.int64)
        for j, i in enumerate(idx):
            nodes = plan[i][1]
            sel.append(
                np.arange(len(rows)) if nodes is rows or len(nodes) == len(rows) else np.searchsorted(rows, nodes)
            )
            col.append(nodes + offsets[j])
            node_ptr[j + 1] = node_ptr[j] + len(nodes)
        return (
            self.calc.gap_fraction,
            ms,
            thr,
            cmp,
            node_ptr,
            np.concatenate(sel).astype(np.int64),
            np.concatenate(col).astype(np.int64),
            np.arange(t_from, t_to + 1, dtype=np.int64) % L,
        )

    def _rule_counters(self) -> dict:
        """Ring group -> (counter, service) pairs the rules read (prefix sums of re-evaluation),
        kept until the lifecycles, the hour columns or the gap sources change."""
        key = (
            tuple(map(id, self.evals)),
            tuple(self.store.hour_columns),
            tuple(sorted(self.calc.gap_sources)),
        )
        hit = getattr(self, "_rule_counters_memo", None)
        if hit is None or hit[0] != key:
            hit = self._rule_counters_memo = (key, self._rule_counters_of_evals(), list(self.evals))
        return hit[1]

    def _rule_counters_of_evals(self) -> dict:
        out: dict = {}
        for ev in self.evals:
            kd = self.kpis[ev.kpi]
            if kd.source in self.calc.gap_sources:  # activity (collection gaps) from the prefix too
                act = ACTIVITY_COUNTER[kd.source]
                out.setdefault(COUNTERS[act].group, {})[(act, "")] = None
            if kd.kind == "quantile":  # the histogram has its own series; its sample count from the prefix
                c = kd.samples_counter
                out.setdefault(COUNTERS[c].group, {})[
                    (c, (ev.service or kd.service) if COUNTERS[c].group == "cdr" else "")
                ] = None
                continue
            names = (
                ["latency_sum", "latency_n", "jitter_sum", "jitter_n", "loss_sum", "loss_n"]
                if kd.kind == "mos"
                else list(kd.numerator) + list(kd.denominator)
            )
            svc = ev.service or kd.service
            for c in names + [kd.samples_counter]:
                g = COUNTERS[c].group
                out.setdefault(g, {})[(c, svc if g == "cdr" else "")] = None
        for c, svc in self.store.hour_columns:
            out.setdefault(COUNTERS[c].group, {})[(c, svc)] = None
        return {g: list(v) for g, v in out.items()}

    def _reevaluation_plan(self, dirty_by_src, base, T) -> list:
        """Per lifecycle touched by late rows: (eval, nodes, rows, first tick, last tick)."""
        plan = []
        rows_memo: dict = {}
        nodes_memo: dict = {}
        for ev in self.evals:
            dirty, lo, hi = dirty_by_src[self.kpis[ev.kpi].source]
            if len(dirty) == 0:
                continue
            t_from = max(lo + 1, base)
            t_to = min(hi + ev.reach_min, T)
            if t_from > t_to:
                continue
            e2l = self.topology.element_to(ev.level)
            d = dirty if ev.mask is None else dirty[ev.mask[dirty]]
            if len(d) == 0:
                continue
            nkey = (self.kpis[ev.kpi].source, ev.level, None if ev.mask is None else id(ev.mask))
            nodes = nodes_memo.get(nkey)
            if nodes is None:  # one array per (source, level, mask): evaluations shared by id
                nodes = nodes_memo[nkey] = np.unique(e2l[d]).astype(np.int64)
            if ev.level == self.topology.element_level:
                rows = dirty  # the same array for every rule of this source: shared evaluations
            else:  # one rows array per (source, level, mask): shared series and memos
                rkey = (self.kpis[ev.kpi].source, ev.level, None if ev.mask is None else id(ev.mask))
                hit = rows_memo.get(rkey)
                if hit is None:
                    member = np.zeros(self.topology.n_nodes(ev.level), bool)
                    member[nodes] = True  # as np.isin(e2l, nodes), without a sort per call
                    sel = member[e2l]
                    if ev.mask is not None:
                        sel &= ev.mask
                    hit = rows_memo[rkey] = np.flatnonzero(sel).astype(np.int64)
                rows = hit
            plan.append((ev, nodes, rows, t_from, t_to))
        return plan

    def _reevaluate_span(self, out, plan, base, T, L, done=None):
        for i, (ev, nodes, rows, t_from, t_to) in enumerate(plan):
            changed = done.get(i) if done else None
            if changed is None:
                fast = self._late_ratio_codes(ev, t_from, t_to, rows, nodes) if self.fused_late else None
                codes_t, values_t = fast if fast is not None else self._codes_span(ev, t_from, t_to, rows, nodes)
                # the span lies within the last L ticks, so its ring positions are distinct
                at = np.ix_(np.arange(t_from, t_to + 1) % L, nodes)
                changed = bool(np.any(ev.codes[at] != codes_t))
                ev.codes[at] = codes_t
                ev.values[at] = values_t
            if not changed:
                continue
            # the corrected lifecycles of the touched nodes only: entry j holds node nodes[j]
            tmp = _LifeState(0)
            c = ev.committed
            tmp.state, tmp.count, tmp.start, tmp.worst = c.state[nodes], c.count[nodes], c.start[nodes], c.worst[nodes]
            self._reconcile(ev, nodes, tmp, self._replay(ev, tmp, nodes, base, T, L), T, out)
            st = ev.state
            st.state[nodes], st.count[nodes], st.start[nodes], st.worst[nodes] = (
                tmp.state,
                tmp.count,
                tmp.start,
                tmp.worst,
            )
        return out

    def _late_ratio_codes(self, ev: _Eval, t_from: int, t_to: int, rows, nodes):
        """:meth:`SlaMonitor._codes_span` of a threshold rule over a ratio or quantile KPI in one kernel
        call (:func:`kernels.sla.sla_late_ratio_span`, :func:`kernels.sla.sla_late_quantile_span`) from
        the span's prefix sums (and its window histograms): the same values, without the per-step
        arrays and calls; None (nothing done) for other lifecycles, or when the span's prefix does
        not hold the rule's counters."""
        kd = self.kpis[ev.kpi]
        if ev.kind != "threshold" or kd.kind not in ("ratio", "quantile"):
            return None
        calc = self.calc
        names = calc._names(kd)
        grp = COUNTERS[names[0]].group
        gap = kd.source in calc.gap_sources
        act = ACTIVITY_COUNTER[kd.source] if gap else None
        if any(COUNTERS[c].group != grp for c in names) or (gap and COUNTERS[act].group != grp):
            return None
        svc = calc._check_args(kd, ev.window_min, ev.service) if grp == "cdr" else ""
        at = calc._prefix_for(grp, names + ([act] if gap and svc == "" else []), svc, rows)
        if at is None or (gap and svc != "" and calc._prefix_for(grp, [act], "", rows) is None):
            return None
        (P, keypos, lo, base), ppos, _ = at
        n_t = t_to - t_from + 1
        live = self._live_span(t_from, t_to, ev.window_min)
        share = ev.mask is not None and ev.level == self.topology.element_level
        r = np.ascontiguousarray(rows, dtype=np.int64)
        seg, node_ids = calc._span_nodes(ev.level, r, None if share else ev.mask, t_from, rows)
        n_el = calc._node_sizes(ev.level, seg, len(node_ids), False)
        j = np.minimum(np.searchsorted(node_ids, nodes), max(len(node_ids) - 1, 0))
        sel = np.where(node_ids[j] == nodes, j, -1) if len(node_ids) else np.full(len(nodes), -1)
        k0 = t_from - calc._span[0]
        factors = calc._span_expected_factors(ev.window_min)[k0 : k0 + n_t] if gap else _NO_FACTORS
        pos = np.arange(len(base), dtype=np.int64) if ppos is None else ppos
        codes = np.empty((n_t, len(nodes)), np.int8)
        values = np.empty((n_t, len(nodes)))
        ms = min(ev.min_samples, ev.clear_min_samples)
        pre = (P, pos, np.array([keypos[(c, svc)] for c in names], np.int64), keypos[(act, "")] if gap else -1, lo)
        span = (t_from, ev.window_min, self.store.minute_ring, factors, seg, n_el)
        tail = (
            (float(kd.scale), float(ms), calc.gap_fraction),
            sel.astype(np.int64),
            ev.mask[nodes] if share else _NO_POST,
            live,
            threshold_params(ev),
            codes,
            values,
        )
        if kd.kind == "quantile":
            st = self.store
            hist = (calc._span_hist_series(ev.window_min, rows), k0, float(kd.q), st.hist_lo_ms)
            SK.sla_late_quantile_span(pre, span, hist + (float(st.hist_bins_per_octave),), *tail)
            return codes, values
        plan = (
            np.array([names.index(c) for c in kd.numerator], np.int64),
            np.array([names.index(c) for c in kd.denominator], np.int64),
            names.index(kd.samples_counter),
        )
        SK.sla_late_ratio_span(pre, span, plan, *tail)
        return codes, values

    def _replay(self, ev: _Eval, tmp: _LifeState, nodes, base: int, T: int, L: int) -> dict:
        """Step ``tmp`` (the lifecycles of ``nodes``, entry j for node nodes[j]) through the ticks
        ``base..T`` from the ring's conditions of those nodes in one kernel call
        (:func:`kernels.sla.sla_rule_steps`): node -> [(raw event, tick)] in tick order, what one
        ``sla_rule_step`` per tick over the whole lifecycle arrays gives."""
        n_t, n = T - base + 1, len(nodes)
        m = n_t * n
        ev_tick, ev_node, ev_start = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
        ev_kind, ev_value, ev_worst = np.empty(m, np.int8), np.empty(m), np.empty(m)
        at = np.ix_(np.arange(base, T + 1, dtype=np.int64) % L, nodes)
        k = SK.sla_rule_steps(
            np.arange(n, dtype=np.int64),
            ev.codes[at],
            ev.values[at],  # float32: each value read widens exactly, as the per-tick step's float64 copy
            np.arange(n_t, dtype=np.int64),
            base * MINUTE_MS,
            MINUTE_MS,
            ev.for_min,
            ev.clear_for_min,
            ev.sign,
            tmp.state,
            tmp.count,
            tmp.start,
            tmp.worst,
            ev_tick,
            ev_node,
            ev_kind,
            ev_start,
            ev_value,
            ev_worst,
        )
        raw_by_node: dict = {}
        for i in range(k):
            r = (int(nodes[ev_node[i]]), int(ev_kind[i]), int(ev_start[i]), float(ev_value[i]), float(ev_worst[i]))
            raw_by_node.setdefault(r[0], []).append((r, base + int(ev_tick[i])))
        return raw_by_node

    def _reconcile(self, ev: _Eval, nodes, tmp: _LifeState, raw_by_node: dict, T: int, out: list):
        """Emit what moves each replayed node from its emitted state to its corrected state.

        An episode keeps its identity (start) when both runs have it open, so late data never
        produces a second firing event for one violation; a replay that only differs inside the
        horizon (resolved and re-fired) is treated as one continuous violation (no flapping).
        """
        note = "after late data"
        # tmp holds the corrected lifecycles of ``nodes`` (entry j for node nodes[j], sorted)
        o, n = ev.state.state[nodes], tmp.state
        j_open = np.flatnonzero((o == n) & (o != K.ST_INACTIVE))
        same_open = nodes[j_open]
        # open in both runs: the episode keeps its start and the worst value seen by either run
        tmp.start[j_open] = ev.state.start[same_open]
        worse = ev.sign * (ev.state.worst[same_open] - tmp.worst[j_open]) > 0
        tmp.worst[j_open[worse]] = ev.state.worst[same_open[worse]]
        quiet = (o == n) & (o == K.ST_INACTIVE)
        busy = nodes[~quiet & (o != n)]
        if raw_by_node:
            q = nodes[quiet]
            busy = np.union1d(busy, q[np.isin(q, np.fromiter(raw_by_node, np.int64, len(raw_by_node)))])
        for node, j in zip(busy.tolist(), np.searchsorted(nodes, busy).tolist()):
            old, new = int(ev.state.state[node]), int(tmp.state[j])
            evs = raw_by_node.get(node, [])
            if old == K.ST_FIRING and new == K.ST_PENDING:
                # late rows only delay a violation that is still open: it stays firing with its
                # start (retracting it and firing again a few ticks later would be a flap)
                tmp.state[j], tmp.count[j], tmp.start[j] = K.ST_FIRING, 0, ev.state.start[node]
                if not ev.sign * (tmp.worst[j] - ev.state.worst[node]) > 0:
                    tmp.worst[j] = ev.state.worst[node]
                continue
            if old == new == K.ST_INACTIVE:
                # whole episodes inside the horizon that only the corrected data shows
                fired = ev.fired.get(node, {})
                new_starts = {r[2] for r, _ in evs if r[1] == K.EV_FIRING and r[2] not in fired}
                for r, t in evs:
                    if r[2] in new_starts and r[1] in (K.EV_FIRING, K.EV_RESOLVED):
                        self._emit(ev, [r], t, out, note)
                continue
            if old == K.ST_FIRING:
                res = [(r, t) for r, t in evs if r[1] == K.EV_RESOLVED]
                # never before the firing it ends was emitted (consumers order updates by time)
                t_res = max(res[-1][1] if res else T, ev.fired.get(node, {}).get(int(ev.state.start[node]), -1))
                v = res[-1][0][3] if res else float(ev.values[T % self.reeval_minutes, node])
                self._emit(
                    ev,
                    [(node, K.EV_RESOLVED, int(ev.state.start[node]), v, float(ev.state.worst[node]))],
                    t_res,
                    out,
                    note,
                )
            elif old == K.ST_PENDING and new == K.ST_INACTIVE:
                self._emit(
                    ev,
                    [
                        (
                            node,
                            K.EV_CANCELLED,
                            int(ev.state.start[node]),
                            float(ev.values[T % self.reeval_minutes, node]),
                            float(ev.state.worst[node]),
                        )
                    ],
                    T,
                    out,
                    note,
                )
            if new != K.ST_INACTIVE:
                start = int(tmp.start[j])
                for r, t in evs:
                    if (
                        r[2] == start
                        and r[1] in (K.EV_PENDING, K.EV_FIRING)
                        and not (old == K.ST_PENDING and r[1] == K.EV_PENDING)
                    ):
                        self._emit(ev, [r], t, out, note)
