"""Fused conditions of the SLA monitor (a mixin of ``SlaMonitor``): the condition codes and values of a
threshold rule at a tick written straight into the lifecycle bank by one kernel call. A rule over a
ratio KPI is evaluated whole in that call (:func:`kernels.sla.sla_ratio_threshold`: roll-up of the
running window sums, value, status, scope mask, codes); any other threshold rule takes its KPI
evaluation as before (shared between rules over the same KPI and window, e.g. the per-technology
latency rules) and one call applies its scope mask and writes its codes
(:func:`kernels.sla.sla_masked_threshold`). The arithmetic is that of the step-by-step path
(``KpiCalculator.compute``, the mask, then ``sla_threshold_codes``), so codes and values are
bit-identical to it; what goes is the Python between the steps (memo keys, result objects, masks
applied with ``np.where``, copies)."""

from __future__ import annotations

import numpy as np

from kernels import kpi as K
from kernels import sla as SK
from telcoanalytics.sla.lifecycle import _Eval
from telcoanalytics.sla.rules import threshold_params

_NO_ACT = (np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0)
_NO_POST = np.zeros(0, bool)
_NO_F = np.zeros(0)


class _FusedConditions:
    """Threshold rules: the conditions of a tick in one kernel call per rule."""

    #: False: every rule takes the step-by-step path (kept for A/B measurements and equality tests)
    fused_conditions = True
    #: False: element-level quantile rules sharing an evaluation write their changed rows one rule
    #: at a time (``_quantile_rows``) instead of one kernel call per group (kept for A/B and tests)
    grouped_rows = True

    def _fused_codes(self, ev: _Eval, tick: int, codes: np.ndarray, values: np.ndarray) -> bool:
        """Write the condition codes and values of ``ev`` at ``tick`` into ``codes`` / ``values``
        (its slices of the bank); False (nothing written) when ``ev`` must take
        :meth:`SlaMonitor._codes` (a burn-rate pair over a KPI that is not a ratio)."""
        kd = self.kpis[ev.kpi]
        if ev.kind != "threshold":
            return kd.kind == "ratio" and self._fused_burn(ev, kd, tick, codes, values)
        if not self._live(tick, ev.window_min):
            codes[:] = K.COND_INSUFFICIENT
            values[:] = np.nan
            return True
        share = ev.mask is not None and ev.level == self.topology.element_level
        post = ev.mask if share else _NO_POST
        ms = min(ev.min_samples, ev.clear_min_samples)
        if ev.fused is None:
            thr = threshold_params(ev)
            ev.fused = {"thr": thr}
        if kd.kind != "ratio":
            res, _ = self._compute_shared(ev, ev.kpi, tick, ev.window_min, ms)
            SK.sla_masked_threshold(
                np.ascontiguousarray(res.value, dtype=np.float64),
                np.ascontiguousarray(res.samples, dtype=np.float64),
                np.ascontiguousarray(res.status, dtype=np.int8),
                post,
                ev.fused["thr"],
                codes,
                values,
            )
            return True
        args = self._ratio_args(ev, kd, tick, ev.window_min, ms, 5)
        SK.sla_ratio_threshold(*args, post, ev.fused["thr"], codes, values)
        return True

    def _fused_rows(self, ev: _Eval, tick: int, rows: np.ndarray, codes: np.ndarray, values: np.ndarray):
        """The codes and values of an element-level threshold rule over a ratio KPI at ``tick`` for
        the elements ``rows`` only (:func:`kernels.sla.sla_ratio_threshold_rows`); the other
        entries keep what they hold (the previous tick's, unchanged inputs: :mod:`telcoanalytics.sla.changed`)."""
        kd = self.kpis[ev.kpi]
        ms = min(ev.min_samples, ev.clear_min_samples)
        if ev.fused is None:
            ev.fused = {"thr": threshold_params(ev)}
        post = ev.mask if ev.mask is not None else _NO_POST
        _, plan, params, x, act, seg, n_el = self._ratio_args(ev, kd, tick, ev.window_min, ms, 5)
        SK.sla_ratio_threshold_rows(rows, plan, params, x, act, seg, n_el, post, ev.fused["thr"], codes, values)

    def _quantile_rows(self, ev: _Eval, tick: int, rows: np.ndarray, codes: np.ndarray, values: np.ndarray):
        """The codes and values of an element-level threshold rule over a quantile KPI at ``tick``
        for the elements ``rows`` only; the other entries keep what they hold. The KPI evaluation
        of those elements (shared between rules over the same KPI and window, e.g. the latency
        rules per technology) runs the kernels of ``KpiCalculator.compute`` over all elements
        (``kpi_hist_quantile_rows``, ``kpi_status``) on the rows' own inputs, then the rule's
        scope mask and codes (:func:`kernels.sla.sla_masked_threshold`): bit-identical entries."""
        kd = self.kpis[ev.kpi]
        ms = float(min(ev.min_samples, ev.clear_min_samples))
        if self.grouped_rows and self._bank is not None:
            self._quantile_rows_group(ev, kd, tick, rows, ms)
            return
        key = ("qrows", kd.name, tick, ev.window_min, ev.service, ms, id(rows))
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = (self._quantile_rows_eval(kd, ev, tick, rows, ms), rows)
        v, samples, status = hit[0]
        if ev.fused is None:
            ev.fused = {"thr": threshold_params(ev)}
        post = ev.mask[rows] if ev.mask is not None else _NO_POST
        c, x = np.empty(len(rows), np.int8), np.empty(len(rows))
        SK.sla_masked_threshold(v, samples, status, post, ev.fused["thr"], c, x)
        codes[rows], values[rows] = c, x

    def _quantile_rows_group(self, ev: _Eval, kd, tick: int, rows: np.ndarray, ms: float):
        """:meth:`_quantile_rows` of every eval of this tick sharing ``ev``'s evaluation (the same
        KPI, window, service, minimum samples and changed rows: e.g. the latency rules per
        technology) in one kernel call (:func:`kernels.sla.sla_quantile_rows_group`), written into
        the bank's current conditions; the others of the group then find it done."""
        key = ("qgroup", kd.name, ev.window_min, ev.service, ms, id(rows))
        if key in self._memo:
            return
        sig = (kd.name, ev.window_min, ev.service, ms)
        idx = tuple(
            j
            for j, (e, k) in enumerate(zip(self.evals, self._tick_kept))
            if k is rows and (e.kpi, e.window_min, e.service, float(min(e.min_samples, e.clear_min_samples))) == sig
        )
        bank = self._bank
        evs = [self.evals[j] for j in idx]
        skey = (idx, tuple(id(e.mask) for e in evs))
        memo = getattr(self, "_qgroup_memo", None)
        if memo is None or memo[0] is not bank:
            memo = self._qgroup_memo = (bank, {})
        rules = memo[1].get(skey)
        if rules is None:
            n = self.topology.n_elements
            thr = [threshold_params(e) for e in evs]
            rules = memo[1][skey] = (
                (
                    np.array([bank.ptr[j] for j in idx], np.int64),
                    np.array([e.mask is not None for e in evs]),
                    np.stack([e.mask if e.mask is not None else np.zeros(n, bool) for e in evs]),
                    np.array([(t[0], t[1], t[3], t[4]) for t in thr], np.float64),
                    np.array([t[2] for t in thr], np.int64),
                ),
                evs,  # kept alive: their masks' ids stay unique
            )
        calc, st = self.calc, self.store
        w = ev.window_min
        svc = calc._check_args(kd, w, ev.service)
        samples = calc.counter_sums([kd.samples_counter], svc, tick, w)[kd.samples_counter]
        h = calc.hist_sums(tick, w, None, copy=False)
        if kd.source in calc.gap_sources:
            active, expected = calc.activity(kd.source, tick, w, None)
        else:
            active = expected = _NO_F
        SK.sla_quantile_rows_group(
            rows,
            (h, float(kd.q), st.hist_lo_ms, float(st.hist_bins_per_octave)),
            np.ascontiguousarray(samples, dtype=np.float64),
            (np.ascontiguousarray(active, dtype=np.float64), np.ascontiguousarray(expected, dtype=np.float64)),
            (ms, calc.gap_fraction),
            rules[0],
            (bank.cur_codes, bank.cur_values),
        )
        self._memo[key] = (True, rows)  # rows kept alive: its id stays unique within the tick

    def _quantile_rows_eval(self, kd, ev: _Eval, tick: int, rows: np.ndarray, ms: float) -> tuple:
        """(value, samples, status) of the elements ``rows`` as ``KpiCalculator.compute`` of a quantile
        KPI at the element level over all elements gives them (unmasked: the scope mask follows)."""
        calc, st = self.calc, self.store
        w = ev.window_min
        svc = calc._check_args(kd, w, ev.service)
        samples = calc.counter_sums([kd.samples_counter], svc, tick, w)[kd.samples_counter][rows]
        h = calc.hist_sums(tick, w, None, copy=False)
        full = np.full(len(h), np.nan)
        K.kpi_hist_quantile_rows(h, rows, kd.q, st.hist_lo_ms, float(st.hist_bins_per_octave), full)
        value = full[rows]
        if kd.source in calc.gap_sources:
            active, expected = calc.activity(kd.source, tick, w, None)
            n_act, n_exp = active[rows], expected[rows]
        else:
            n_act = n_exp = np.zeros(len(rows))
        status, out_value = np.empty(len(rows), np.int8), np.empty(len(rows))
        K.kpi_status(value, samples, ms, n_act, n_exp, calc.gap_fraction, np.ones(len(rows)), status, out_value)
        return out_value, samples, status

    def _ratio_args(self, ev: _Eval, kd, tick: int, window_min: int, min_samples: float, n_out: int) -> tuple:
        """(scratch, plan, status params, running sums, activity, segments, elements per node) of
        ``ev``'s ratio KPI over ``window_min`` ending at ``tick``; the scratch (``n_out`` arrays:
        the node results, then burn / ok / quiet for a burn window) is kept per eval and window."""
        calc = self.calc
        share = ev.mask is not None and ev.level == self.topology.element_level
        svc = calc._check_args(kd, window_min, ev.service)
        plan, x, seg, n_el, act = calc.ratio_inputs(kd, ev.level, tick, window_min, svc, None if share else ev.mask)
        n_nodes, n_x = len(n_el), 0 if act is None else 2
        shape = (n_nodes, len(plan[0]) - 1 + n_x, len(seg), n_x, n_out)
        scratch = ev.fused.get(window_min)
        if scratch is None or scratch[0] != shape:
            arrays = (
                np.zeros(shape[:2]),
                np.empty(n_nodes),
                np.empty(n_nodes),
                np.empty(n_nodes, np.int8),
                np.zeros((len(seg), n_x)),
                np.empty(n_nodes),
                np.empty(n_nodes, bool),
                np.empty(n_nodes, bool),
            )[:n_out]
            scratch = ev.fused[window_min] = (shape, arrays)
        params = (float(kd.scale), float(min_samples), calc.gap_fraction)
        return scratch[1], plan, params, x, _NO_ACT if act is None else act, seg, n_el

    def _fused_burn(self, ev: _Eval, kd, tick: int, codes: np.ndarray, values: np.ndarray) -> bool:
        """A burn-rate window pair over a ratio KPI: each window that fits the minute ring in one
        call (:func:`kernels.sla.sla_burn_window`), a longer one from the hour ring as before
        (:meth:`SlaMonitor._burn`), the pair's codes in one more (:func:`kernels.sla.sla_burn_pair_codes`)."""
        objective, factor, lo, sh = ev.burn
        if tick - self.store.first_minute < sh:
            # until the data spans the short window, the long window is no longer than it
            codes[:] = K.COND_INSUFFICIENT
            values[:] = np.nan
            return True
        if ev.fused is None:
            ev.fused = {}
        share = ev.mask is not None and ev.level == self.topology.element_level
        post = ev.mask if share else _NO_POST
        sides = []
        for w in (lo, sh):
            if w + self.reeval_minutes + 1 > self.store.minute_ring:
                sides.append(self._burn(ev, tick, w, objective, factor))
                continue
            args = self._ratio_args(ev, kd, tick, w, min(ev.min_samples, 1.0), 8)
            SK.sla_burn_window(*args, post, (float(kd.scale), float(objective), float(factor), float(ev.min_samples)))
            sides.append(args[0][5:8])
        (burn_l, ok_l, _), (burn_s, ok_s, quiet_s) = sides
        SK.sla_burn_pair_codes(burn_l, ok_l, burn_s, ok_s, quiet_s, float(factor), codes, values)
        return True
