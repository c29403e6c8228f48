"""SLA kernels: rule conditions per node, violation lifecycles one rule or all rules at a tick, and
the fixed point of a lifecycle under unchanging conditions (quiet stretches). Condition codes
(``COND_*``), lifecycle states (``ST_*``) and event kinds (``EV_*``) are those of :mod:`kernels.kpi`.
"""

from typing import NamedTuple

import numpy as np

from ._numba import kernel, kernel_exact
from .kpi import (
    COND_BAND,
    COND_BREACH,
    COND_CLEAR,
    COND_INSUFFICIENT,
    EV_CANCELLED,
    EV_FIRING,
    EV_PENDING,
    EV_RESOLVED,
    ST_FIRING,
    ST_INACTIVE,
    ST_PENDING,
    kpi_hist_quantile,
    kpi_hist_quantile_rows,
    kpi_ratio_nodes,
    kpi_status,
)


@kernel
def sla_rule_step(
    nodes,
    codes,
    values,
    t_ms,
    for_ticks,
    clear_for_ticks,
    worse_sign,
    state,
    count,
    start_ms,
    worst,
    ev_node,
    ev_kind,
    ev_start,
    ev_value,
    ev_worst,
):
    """Advance the violation lifecycle of ``nodes`` by one evaluation tick.

    ``codes[node]`` is COND_*: breach starts/extends a violation (pending until more than
    ``for_ticks`` consecutive breaching ticks, then firing); clear ticks resolve a firing
    violation after more than ``clear_for_ticks`` of them; a non-breaching tick cancels a
    pending one (EV_CANCELLED); band ticks
    (between threshold and clear threshold) reset the clear count; insufficient ticks change
    nothing. ``worse_sign`` is +1 when larger values are worse, -1 when smaller are.
    Writes one event per transition into the ``ev_*`` arrays and returns the count.
    """
    n_ev = 0
    for k in range(nodes.shape[0]):
        i = nodes[k]
        c = codes[i]
        v = values[i]
        st = state[i]
        kind = 0
        if c == COND_INSUFFICIENT:
            continue
        if st == ST_INACTIVE:
            if c == COND_BREACH:
                start_ms[i] = t_ms
                worst[i] = v
                count[i] = 1
                if count[i] > for_ticks:
                    state[i] = ST_FIRING
                    count[i] = 0
                    kind = EV_FIRING
                else:
                    state[i] = ST_PENDING
                    kind = EV_PENDING
        elif st == ST_PENDING:
            if c == COND_BREACH:
                count[i] += 1
                if worse_sign * (v - worst[i]) > 0.0:
                    worst[i] = v
                if count[i] > for_ticks:
                    state[i] = ST_FIRING
                    count[i] = 0
                    kind = EV_FIRING
            else:
                state[i] = ST_INACTIVE
                count[i] = 0
                kind = EV_CANCELLED
        else:
            if c == COND_BREACH:
                count[i] = 0
                if worse_sign * (v - worst[i]) > 0.0:
                    worst[i] = v
            elif c == COND_BAND:
                count[i] = 0
            else:
                count[i] += 1
                if count[i] > clear_for_ticks:
                    state[i] = ST_INACTIVE
                    count[i] = 0
                    kind = EV_RESOLVED
        if kind != 0:
            ev_node[n_ev] = i
            ev_kind[n_ev] = kind
            ev_start[n_ev] = start_ms[i]
            ev_value[n_ev] = v
            ev_worst[n_ev] = worst[i]
            n_ev += 1
    return n_ev


@kernel
def sla_rule_steps(
    nodes,
    codes,
    values,
    pos,
    t0_ms,
    step_ms,
    for_ticks,
    clear_for_ticks,
    worse_sign,
    state,
    count,
    start_ms,
    worst,
    ev_tick,
    ev_node,
    ev_kind,
    ev_start,
    ev_value,
    ev_worst,
):
    """:func:`sla_rule_step` at ``len(pos)`` consecutive ticks: tick ``k`` at ``t0_ms + k *
    step_ms`` with the conditions of row ``pos[k]`` of ``codes`` (int8) and ``values`` (float32 or
    float64; a float32 value widens exactly), ``(rows, n_nodes)``. Events in tick order (``ev_tick[i]`` the tick's index ``k``); the ``ev_*``
    arrays hold at least ``len(pos) * len(nodes)`` entries. Returns the count."""
    n_ev = 0
    for k in range(pos.shape[0]):
        p = pos[k]
        m = sla_rule_step(
            nodes,
            codes[p],
            values[p],
            t0_ms + k * step_ms,
            for_ticks,
            clear_for_ticks,
            worse_sign,
            state,
            count,
            start_ms,
            worst,
            ev_node[n_ev:],
            ev_kind[n_ev:],
            ev_start[n_ev:],
            ev_value[n_ev:],
            ev_worst[n_ev:],
        )
        for j in range(n_ev, n_ev + m):
            ev_tick[j] = k
        n_ev += m
    return n_ev


class LifeBank(NamedTuple):
    """Lifecycles of several rules laid end to end: rule ``r`` owns entries ``ptr[r]:ptr[r + 1]``."""

    state: np.ndarray  # int8
    count: np.ndarray  # int64
    start_ms: np.ndarray  # int64
    worst: np.ndarray  # float64


class LifeParams(NamedTuple):
    """Per rule of a :class:`LifeBank`: its entries and lifecycle parameters."""

    ptr: np.ndarray  # int64 (n_rules + 1,)
    for_ticks: np.ndarray  # int64
    clear_for_ticks: np.ndarray  # int64
    worse_sign: np.ndarray  # float64


class LifeEvents(NamedTuple):
    """Transitions written by :func:`sla_tick_step` (capacity: the bank's length)."""

    rule: np.ndarray  # int64
    node: np.ndarray  # int64: index within the rule
    kind: np.ndarray  # int8
    start_ms: np.ndarray  # int64
    value: np.ndarray  # float64
    worst: np.ndarray  # float64


@kernel
def sla_tick_step(bank, params, codes, values, t_ms, out):
    """:func:`sla_rule_step` of every node of every rule of a :class:`LifeBank` in one call (one tick).

    ``codes`` / ``values`` are laid out like the bank; events come rule by rule, node by node (the
    order of one :func:`sla_rule_step` per rule), with node indices within their rule. Callers
    pass plain tuples laid out as :class:`LifeBank`, :class:`LifeParams` and :class:`LifeEvents`.
    Returns the event count.
    """
    state, count, start_ms, worst = bank
    ptr, for_ticks, clear_for_ticks, worse_sign = params
    ev_rule, ev_node, ev_kind, ev_start, ev_value, ev_worst = out
    n_max = 0
    for r in range(ptr.shape[0] - 1):
        n_max = max(n_max, ptr[r + 1] - ptr[r])
    nodes = np.arange(n_max)
    n_ev = 0
    for r in range(ptr.shape[0] - 1):
        o, m = ptr[r], ptr[r + 1]
        k = sla_rule_step(
            nodes[: m - o],
            codes[o:m],
            values[o:m],
            t_ms,
            for_ticks[r],
            clear_for_ticks[r],
            worse_sign[r],
            state[o:m],
            count[o:m],
            start_ms[o:m],
            worst[o:m],
            ev_node[n_ev:],
            ev_kind[n_ev:],
            ev_start[n_ev:],
            ev_value[n_ev:],
            ev_worst[n_ev:],
        )
        ev_rule[n_ev : n_ev + k] = r
        n_ev += k
    return n_ev


@kernel
def sla_settled(codes, values, worse_sign, state, count, worst):
    """Whether one more :func:`sla_rule_step` of every node with the same ``codes`` and ``values``
    would change nothing (no transition, count or worst value): the lifecycle is at a fixed point
    of those conditions, so any number of further identical ticks leaves it as it is."""
    for i in range(codes.shape[0]):
        c = codes[i]
        if c == COND_INSUFFICIENT:
            continue
        st = state[i]
        if st == ST_INACTIVE:
            if c == COND_BREACH:
                return False
        elif st == ST_PENDING:
            return False  # a breach counts toward firing, anything else cancels
        elif c == COND_CLEAR:
            return False  # counts toward resolving
        elif count[i] != 0 or (c == COND_BREACH and worse_sign * (values[i] - worst[i]) > 0.0):
            return False
    return True


@kernel
def _compare(v, cmp_code, thr):
    if cmp_code == 0:
        return v < thr
    if cmp_code == 1:
        return v <= thr
    if cmp_code == 2:
        return v > thr
    return v >= thr


@kernel
def _threshold_code(v, s, st, min_samples, clear_min_samples, cmp_code, threshold, clear_threshold):
    """COND_* of one node of a threshold rule from its value, samples and KPI status."""
    ok = st == 0
    strong = ok and s >= min_samples
    if strong and _compare(v, cmp_code, threshold):
        return COND_BREACH
    if ok and s >= clear_min_samples and not _compare(v, cmp_code, clear_threshold):
        return COND_CLEAR
    if strong:
        return COND_BAND
    return COND_INSUFFICIENT


@kernel
def sla_threshold_codes(
    value, samples, status, min_samples, clear_min_samples, cmp_code, threshold, clear_threshold, codes
):
    """COND_* per node of a threshold rule: breach (ok, ``min_samples``, past the threshold),
    clear (ok, ``clear_min_samples``, healthy side of the clear threshold), band (ok and enough
    samples to fire but neither), else insufficient. ``cmp_code`` indexes ("<", "<=", ">", ">=")."""
    for i in range(value.shape[0]):
        codes[i] = _threshold_code(
            value[i], samples[i], status[i], min_samples, clear_min_samples, cmp_code, threshold, clear_threshold
        )


@kernel
def sla_masked_threshold(value, samples, status, post, thr, codes, values):
    """:func:`sla_threshold_codes` of a KPI evaluation shared by several rules, with the rule's scope
    mask applied first (``post``: bool per node, empty for none; nodes outside it are "no scope",
    NaN with no samples), writing the codes and the masked values (``values``) in one pass.
    ``thr``: (min_samples, clear_min_samples, cmp_code, threshold, clear_threshold)."""
    min_samples, clear_min_samples, cmp_code, threshold, clear_threshold = thr
    has_post = post.shape[0] > 0
    for i in range(value.shape[0]):
        v, s, st = value[i], samples[i], status[i]
        if has_post and not post[i]:
            v, s, st = np.nan, 0.0, 3  # STATUS_NO_SCOPE
        codes[i] = _threshold_code(v, s, st, min_samples, clear_min_samples, cmp_code, threshold, clear_threshold)
        values[i] = v


@kernel_exact
def _ratio_side(out, plan, params, x, act, seg, n_el, post):
    """:func:`kernels.kpi.kpi_ratio_nodes` into ``out`` (agg, value, samples, status, extra) with
    the activity columns built from ``act`` and the scope mask ``post`` applied after it."""
    agg, value, samples, status, extra = out[:5]
    active, hist_active, factor = act
    if extra.shape[1] == 2:
        for r in range(extra.shape[0]):
            extra[r, 0] = float(active[r])
            extra[r, 1] = float(hist_active[r]) * factor
    agg[:, :] = 0.0
    kpi_ratio_nodes((agg, value, samples, status), plan, params, x, extra, seg, n_el)
    if post.shape[0] > 0:
        # selects, not a conditional block: the block (three conditional stores after the inlined
        # kpi_ratio_nodes) is miscompiled by numba 0.68 / llvmlite 0.50 - the statuses of nodes
        # inside the mask came back 0 instead of insufficient / collection gap (found by the
        # seventh session's SLA helper; tests/sla/test_sla_changed.py checks it compiled)
        for i in range(value.shape[0]):
            p = post[i]
            value[i] = value[i] if p else np.nan
            samples[i] = samples[i] if p else 0.0
            status[i] = status[i] if p else np.int8(3)  # STATUS_NO_SCOPE


@kernel_exact
def sla_ratio_threshold(out, plan, params, x, act, seg, n_el, post, thr, codes, values):
    """Condition codes and values of a threshold rule over a ratio KPI at one tick, in one call:
    :func:`kernels.kpi.kpi_ratio_nodes` over the running window sums ``x``, the scope mask of an
    element-level rule applied after it, then :func:`sla_threshold_codes`; the same arithmetic as
    those steps one after another (so bit-identical to them).

    Parameters
    ----------
    out : tuple (agg, value, samples, status, extra)
        Scratch: ``agg`` float64 (n_nodes, n_k + n_extra) (zeroed here), per-node ``value``,
        ``samples``, ``status`` (int8), and ``extra`` float64 (n_elements, 0 or 2).
    plan, params : RatioPlan, StatusParams
        As for :func:`kernels.kpi.kpi_ratio_nodes`.
    x : float64 (n_elements, n_cols)
        Running window sums.
    act : tuple (active, hist_active, factor)
        When ``extra`` has two columns: active minutes per element in the window and before it
        (int64), and the factor turning the latter into expected minutes (0: too little history).
    seg, n_el : int64 (n_elements,), float64 (n_nodes,)
        Node of each element (``< 0``: outside the scope) and elements per node.
    post : bool (n_nodes,) or empty
        Scope mask applied after the evaluation (element-level rules sharing one unfiltered
        evaluation): nodes outside it are "no scope" with no samples.
    thr : tuple (min_samples, clear_min_samples, cmp_code, threshold, clear_threshold)
        As for :func:`sla_threshold_codes`.
    codes : int8 (n_nodes,), values : float64 (n_nodes,)
        Written: COND_* per node and the KPI value (NaN unless ok).
    """
    _ratio_side(out, plan, params, x, act, seg, n_el, post)
    sla_masked_threshold(out[1], out[2], out[3], post[:0], thr, codes, values)


@kernel_exact
def sla_burn_window(out, plan, params, x, act, seg, n_el, post, burn_params):
    """Burn rate of one window of an SLO window pair per node (ratio KPI over running window sums,
    as :func:`_ratio_side`), into ``out[5:8]`` (burn, ok, quiet): ``burn = (1 - value / scale) /
    (1 - objective)`` where the node's status is ok and it has ``min_samples`` (else NaN), ``quiet``
    where the status is "insufficient" or the burn is below ``factor`` (``telcoanalytics.sla.
    lifecycle._burn_of``, element for element). ``burn_params``: (scale, objective, factor,
    min_samples)."""
    _ratio_side(out, plan, params, x, act, seg, n_el, post)
    value, samples, status, burn, ok, quiet = out[1], out[2], out[3], out[5], out[6], out[7]
    scale, objective, factor, min_samples = burn_params
    den = 1.0 - objective
    for i in range(value.shape[0]):
        has = status[i] == 0
        b = (1.0 - value[i] / scale) / den if has else np.nan
        quiet[i] = status[i] == 1 or (has and not b >= factor)
        ok[i] = has and samples[i] >= min_samples
        burn[i] = b if ok[i] else np.nan


@kernel_exact
def sla_burn_pair_codes(burn_l, ok_l, burn_s, ok_s, quiet_s, factor, codes, values):
    """Condition codes of a burn-rate window pair (``telcoanalytics.sla.lifecycle._burn_codes``):
    breach while both windows have enough samples and burn at ``factor`` or more; clear when
    both have samples and do not, or the short window is quiet; insufficient otherwise. Values:
    the long window's burn (NaN without enough samples)."""
    for i in range(codes.shape[0]):
        both = ok_l[i] and ok_s[i]
        if both and burn_l[i] >= factor and burn_s[i] >= factor:
            codes[i] = COND_BREACH
        elif quiet_s[i] or both:
            codes[i] = COND_CLEAR
        else:
            codes[i] = COND_INSUFFICIENT
        values[i] = burn_l[i] if ok_l[i] else np.nan


@kernel_exact
def sla_burn_of_counts(agg, min_samples, objective, factor, burn, ok, quiet):
    """Burn rate of a window per node from its (good, total) counts ``agg`` (``telcoanalytics.sla.
    lifecycle._burn_of_counts``, element for element): ``(1 - good / total) / (1 - objective)``
    where ``total > 0``; ``ok`` where ``total >= max(min_samples, 1e-300)`` (else the burn is NaN);
    ``quiet`` where there is no event or the burn is below ``factor``."""
    den = 1.0 - objective
    need = max(min_samples, 1e-300)
    for i in range(agg.shape[0]):
        good, total = agg[i, 0], agg[i, 1]
        has = total > 0
        b = (1.0 - good / total) / den if has else np.nan
        quiet[i] = not has or not b >= factor
        ok[i] = total >= need
        burn[i] = b if ok[i] else np.nan


@kernel_exact
def _late_sums(pre, span, n_t, n_nodes):
    """Per tick and touched node of a late-data span: the rolled-up window sums of the counters
    ``keys`` (one difference of the span's prefix sums each), then active and expected minutes
    (``agg[k, node, n_keys:]``), added row by row in row order (``kpi_segment_sum``)."""
    P, pos, keys, act_key, lo = pre
    t_from, window_min, ring, factors, seg, n_el = span
    n_k = keys.shape[0]
    n_p = P.shape[1]
    gap = act_key >= 0
    agg = np.zeros((n_t, n_nodes, n_k + 2))
    cum = np.zeros(n_p, np.int64)
    for r in range(pos.shape[0]):
        g = seg[r]
        if g < 0:
            continue
        p = pos[r]
        if gap:  # minutes with rows (one difference of the prefix, exact for counts), cumulated
            for i in range(n_p - 1):
                cum[i + 1] = cum[i] + (1 if P[act_key, i + 1, p] - P[act_key, i, p] > 0.0 else 0)
        for k in range(n_t):
            t = t_from + k
            a = max(t, lo) - lo
            b = max(t - window_min, lo) - lo
            for j in range(n_k):
                agg[k, g, j] += P[keys[j], a, p] - P[keys[j], b, p]
            if gap:
                c = max(max(t - ring, 0), lo) - lo
                agg[k, g, n_k] += float(cum[a] - cum[b])
                agg[k, g, n_k + 1] += float(cum[b] - cum[c]) * factors[k]
    return agg


@kernel_exact
def _late_codes(agg, val, samp_k, gap, n_el, params, sel, post, live, thr, codes, values):
    """Status (``kernels.kpi.kpi_status``), scope and condition codes of a late-data span from the
    rolled-up sums ``agg`` (samples in column ``samp_k``, active / expected minutes in the last two)
    and the values ``val`` (n_ticks, n_touched_nodes), for the output nodes ``sel``."""
    _, min_samples, gap_fraction = params
    t_min, t_clr, cmp_code, threshold, clear_threshold = thr
    n_t, n_out = codes.shape
    n_k = agg.shape[2] - 2
    has_post = post.shape[0] > 0
    for k in range(n_t):
        if not live[k]:
            for q in range(n_out):
                codes[k, q] = COND_INSUFFICIENT
                values[k, q] = np.nan
            continue
        for q in range(n_out):
            i = sel[q]
            if i < 0 or (has_post and not post[q]):
                v, s, st = np.nan, 0.0, 3  # STATUS_NO_SCOPE
            else:
                v = val[k, i]
                s = agg[k, i, samp_k]
                n_act = agg[k, i, n_k] if gap else 0.0
                n_exp = agg[k, i, n_k + 1] if gap else 0.0
                st = 0
                if s < min_samples or not np.isfinite(v) or s <= 0.0:
                    st = 1
                if n_exp > 0.0 and n_act < gap_fraction * n_exp:
                    st = 2
                if n_el[i] == 0.0:
                    st = 3
                if st != 0:
                    v = np.nan
            codes[k, q] = _threshold_code(v, s, st, t_min, t_clr, cmp_code, threshold, clear_threshold)
            values[k, q] = v


@kernel_exact
def _late_ratio_values(agg, num_k, den_k, scale):
    """``scale * sum(agg[k, i, num_k]) / sum(agg[k, i, den_k])`` per tick ``k`` and row ``i`` of
    window sums ``agg`` (ticks, rows, keys); NaN where the denominator is 0."""
    n_t, n_r = agg.shape[0], agg.shape[1]
    val = np.empty((n_t, n_r))
    for k in range(n_t):
        for i in range(n_r):
            num = 0.0
            for m in range(num_k.shape[0]):
                num += agg[k, i, num_k[m]]
            den = 0.0
            for m in range(den_k.shape[0]):
                den += agg[k, i, den_k[m]]
            val[k, i] = scale * num / (den if den != 0.0 else 1.0) if den != 0.0 else np.nan
    return val


@kernel_exact
def sla_late_ratio_span(pre, span, plan, params, sel, post, live, thr, codes, values):
    """Condition codes and values of a threshold rule over a ratio KPI for a few rows at the ticks of
    a late-data re-evaluation, in one call: each window sum as one difference of the span's
    cumulative per-minute sums, active minutes from the minutes whose row count grew, the roll-up
    to the touched nodes, value, status, scope mask and codes. The same operations in the same
    order as ``KpiCalculator.compute_span`` over the span's prefix sums followed by the mask and
    :func:`sla_threshold_codes` (``SlaMonitor._codes_span``), so bit-identical to it.

    Parameters
    ----------
    pre : tuple (P, pos, keys, act_key, lo)
        ``P`` float64 (n_keys, n_minutes + 1, n_base): the span's prefix sums (``P[j, i]`` key ``j``'s
        sum over minutes ``lo .. lo + i - 1``); ``pos`` int64: each row's column of ``P``; ``keys``
        int64: the key of each counter the KPI reads; ``act_key``: the key of the source's row
        counter (its collection gaps), -1 for none.
    span : tuple (t_from, window_min, minute_ring, factors, seg, n_el)
        First tick, the rule's window, the ring length, the expected-minutes factor of each tick,
        int64 node of each row (dense over the touched nodes, ``< 0``: outside the scope) and
        float64 elements per touched node.
    plan : tuple (num_k, den_k, samp_k)
        Positions in ``keys`` of the numerator and denominator counters and of the samples counter.
    params : tuple (scale, min_samples, gap_fraction)
    sel : int64 (n_out,)
        Touched node of each output column, ``< 0``: not touched (no scope).
    post : bool (n_out,) or empty
        Scope mask applied after the evaluation (element-level rules with a filter).
    live : bool (n_ticks,)
        Ticks whose window the ring holds; the others are insufficient (value NaN).
    thr : tuple (min_samples, clear_min_samples, cmp_code, threshold, clear_threshold)
    codes, values : int8, float64 (n_ticks, n_out)
        Written.
    """
    num_k, den_k, samp_k = plan
    scale = params[0]
    n_t = codes.shape[0]
    n_el = span[5]
    n_nodes = n_el.shape[0]
    agg = _late_sums(pre, span, n_t, n_nodes)
    val = _late_ratio_values(agg, num_k, den_k, scale)
    _late_codes(agg, val, samp_k, pre[3] >= 0, n_el, params, sel, post, live, thr, codes, values)


@kernel_exact
def sla_late_span_ticks(slot_minute, t_from, n_t, window_min, minute_ring, live, factors):
    """Per tick ``t_from + k`` of a late-data span: whether the minute ring holds a minute of the
    window ``[t - window_min, t)`` (``live``, as ``CounterStore.window_slots``) and the factor
    turning active minutes before the window into expected ones (``factors``: ``window_min /
    n_h`` where the ring holds ``n_h >= window_min`` minutes ``>= 0`` of ``[t - minute_ring, t -
    window_min)``, else 0; as ``KpiCalculator._span_expected_factors``)."""
    for k in range(n_t):
        t = t_from + k
        held = False
        for m in range(t - window_min, t):
            if slot_minute[m % minute_ring] == m:
                held = True
                break
        live[k] = held
        n_h = 0
        for m in range(t - minute_ring, t - window_min):
            if m >= 0 and slot_minute[m % minute_ring] == m:
                n_h += 1
        factors[k] = window_min / max(n_h, 1) if n_h >= window_min else 0.0


@kernel_exact
def _late_group_codes(agg, val, samp_k, gap, live, rules, ring, changed):
    """Codes and values of each rule of a late-data group (rules over one evaluation: the same KPI,
    window and rows, each over its own nodes) by :func:`_late_codes`, written into the lifecycle
    bank's ring of recent conditions at their ticks' rows; ``changed[i]``: whether rule ``i``'s
    codes there differed from what the ring held."""
    gap_fraction, ms, thr_f, cmp, node_ptr, sel, col, ring_pos = rules
    ring_codes, ring_values = ring
    n_t = val.shape[0]
    n_el = np.ones(val.shape[1])
    no_post = np.zeros(0, np.bool_)
    for i in range(ms.shape[0]):
        a, b = node_ptr[i], node_ptr[i + 1]
        codes = np.empty((n_t, b - a), np.int8)
        values = np.empty((n_t, b - a))
        thr = (thr_f[i, 0], thr_f[i, 1], cmp[i], thr_f[i, 2], thr_f[i, 3])
        _late_codes(
            agg, val, samp_k, gap, n_el, (0.0, ms[i], gap_fraction), sel[a:b], no_post, live, thr, codes, values
        )
        ch = False
        for k in range(n_t):
            p = ring_pos[k]
            for q in range(b - a):
                c = col[a + q]
                ch |= ring_codes[p, c] != codes[k, q]
                ring_codes[p, c] = codes[k, q]
                ring_values[p, c] = np.float32(values[k, q])
        changed[i] = ch


@kernel_exact
def sla_late_prefix(ring, used, slot_minute, rows, key_ptr, key_cols, lo, hi):
    """Cumulative per-minute sums of the counters ``key_ptr`` / ``key_cols`` (key ``j``'s ring columns
    ``key_cols[key_ptr[j]:key_ptr[j + 1]]``, added in that order) of ``rows`` over the minutes
    ``[lo, hi)`` the ring holds: ``(n_keys, hi - lo + 1, n_rows)`` float64, what
    :func:`kernels.kpi.kpi_prefix_gather` gives (``CounterStore.prefix_sums``) bit for bit. Cells
    of a row and minute known empty (``used[slot, element]`` False: every counter 0) are not read:
    adding zeros to a running sum that starts at +0 leaves it as it is."""
    minute_ring = slot_minute.shape[0]
    n_k = key_ptr.shape[0] - 1
    n_r = rows.shape[0]
    out = np.empty((n_k, hi - lo + 1, n_r))
    for r in range(n_r):
        e = rows[r]
        for j in range(n_k):
            out[j, 0, r] = 0.0
        for k in range(hi - lo):
            m = lo + k
            s = m % minute_ring
            if m >= 0 and slot_minute[s] == m and used[s, e]:
                for j in range(n_k):
                    acc = out[j, k, r]
                    for c in range(key_ptr[j], key_ptr[j + 1]):
                        acc += float(ring[s, e, key_cols[c]])  # float64 also without JIT
                    out[j, k + 1, r] = acc
            else:
                for j in range(n_k):
                    out[j, k + 1, r] = out[j, k, r]
    return out


@kernel_exact
def sla_late_ratio_group(pre, span, plan, scale, rules, ring, changed):
    """Late-data re-evaluation of element-level threshold rules over one ratio KPI, window and set
    of touched rows (each row its own node), in one call: the span's prefix sums of the touched
    rows (:func:`sla_late_prefix`), the window sums of every tick from them (:func:`_late_sums`,
    with the ticks' liveness and expected-minutes factors from the ring's minutes,
    :func:`sla_late_span_ticks`), the values, then per rule its status, codes and values at its
    nodes written into the bank's ring (:func:`_late_group_codes`). Per rule the operations of
    :func:`sla_late_ratio_span` (so bit-identical to it) and the ring assignment of
    ``_LateData._reevaluate_span``.

    ``pre``: (minute ring [slot, element, column], used [slot, element], rows (touched elements,
    ascending), key_ptr, key_cols, act_key (the key of the source's row counter, -1 for none),
    lo (first minute of the prefix)); ``span``: (slot_minute, t_from, n_ticks, window_min, last
    tick + 1); ``plan``: (num_k, den_k, samp_k) positions among the keys; ``rules``: (gap_fraction,
    min_samples (n_rules,), thresholds float64 (n_rules, 4): min samples, clear min samples,
    threshold, clear threshold; comparator codes int64 (n_rules,), node_ptr (n_rules + 1,), sel
    (each rule's nodes as positions among the touched rows), col (their bank columns), ring_pos
    (ring row of each tick)); ``ring``: (codes int8 (L, n), values float32 (L, n)) of the bank;
    ``changed`` bool (n_rules,) written."""
    num_k, den_k, samp_k = plan
    agg, live, n_t, n_r = _late_group_sums(pre, span)
    val = _late_ratio_values(agg, num_k, den_k, scale)
    _late_group_codes(agg, val, samp_k, pre[5] >= 0, live, rules, ring, changed)


@kernel_exact
def _late_group_sums(pre, span):
    """(window sums per tick and touched row as :func:`_late_sums`, liveness per tick, ticks, rows)
    of a late-data group (see :func:`sla_late_ratio_group`)."""
    mring, used, rows, key_ptr, key_cols, act_key, lo = pre
    slot_minute, t_from, n_t, window_min, hi = span
    minute_ring = slot_minute.shape[0]
    live = np.empty(n_t, np.bool_)
    factors = np.empty(n_t)
    sla_late_span_ticks(slot_minute, t_from, n_t, window_min, minute_ring, live, factors)
    P = sla_late_prefix(mring, used, slot_minute, rows, key_ptr, key_cols, lo, hi)
    n_r = rows.shape[0]
    n_k = key_ptr.shape[0] - 1
    keys = np.arange(n_k)
    if act_key >= 0:
        keys = keys[:-1]  # the row counter is the last key, read for the activity only
    seg = np.arange(n_r)
    agg = _late_sums(
        (P, seg, keys, act_key, lo), (t_from, window_min, minute_ring, factors, seg, np.ones(n_r)), n_t, n_r
    )
    return agg, live, n_t, n_r


@kernel_exact
def sla_late_quantile_group(pre, span, hist, rules, ring, changed):
    """:func:`sla_late_ratio_group` of rules over one quantile KPI (latency percentiles): each tick's
    window histogram of each touched row summed from the ring's minutes (``hist``: (histogram ring
    [slot, element, bucket], used [slot, element], q, lowest bucket edge, buckets per octave);
    whole counts, so any order of additions gives the moving-window sums of
    ``KpiCalculator._span_hist_series``; each minute with data read once), read by
    :func:`kernels.kpi.kpi_hist_quantile`; samples (the first key, the samples counter) and
    collection gaps from the prefix sums; per rule the operations of :func:`sla_late_quantile_span`."""
    hring, hused, q, lo_ms, bpo = hist
    rows = pre[2]
    slot_minute, t_from, _, window_min, _ = span
    minute_ring = slot_minute.shape[0]
    agg, live, n_t, n_r = _late_group_sums(pre, span)
    n_b = hring.shape[2]
    m0 = max(t_from - window_min, 0)
    n_m = max(t_from + n_t - m0, 0)
    buf = np.zeros((n_r, n_m, n_b))
    has = np.zeros((n_r, n_m), np.bool_)
    for i in range(n_r):
        e = rows[i]
        for u in range(n_m):
            m = m0 + u
            s = m % minute_ring
            if slot_minute[s] == m and hused[s, e]:
                has[i, u] = True
                for j in range(n_b):
                    buf[i, u, j] = float(hring[s, e, j])
    hn = np.zeros((n_r, n_b))
    val = np.empty((n_t, n_r))
    for k in range(n_t):
        t = t_from + k
        hn[:, :] = 0.0
        for i in range(n_r):
            for u in range(max(t - window_min, 0) - m0, t - m0):
                if has[i, u]:
                    for j in range(n_b):
                        hn[i, j] += buf[i, u, j]
        kpi_hist_quantile(hn, q, lo_ms, bpo, val[k])
    _late_group_codes(agg, val, 0, pre[5] >= 0, live, rules, ring, changed)


@kernel_exact
def sla_late_quantile_span(pre, span, hist, params, sel, post, live, thr, codes, values):
    """:func:`sla_late_ratio_span` of a threshold rule over a quantile KPI (latency percentiles):
    each tick's window histograms of the rows (``hist[0]``, ``(span ticks, rows, bins)`` from
    ``KpiCalculator._span_hist_series``, tick ``k`` at ``hist[1] + k``) rolled up to the touched
    nodes in row order and read by :func:`kernels.kpi.kpi_hist_quantile` (``hist[2:]``: q, lowest
    bucket edge, buckets per octave); samples (``pre[2]`` holds the samples counter alone) and
    collection gaps from the span's prefix sums; as ``KpiCalculator.compute_span``, bit for bit."""
    hs, k0, q, lo_ms, bpo = hist
    n_t = codes.shape[0]
    seg, n_el = span[4], span[5]
    n_nodes = n_el.shape[0]
    agg = _late_sums(pre, span, n_t, n_nodes)
    n_b = hs.shape[2]
    hn = np.zeros((n_nodes, n_b))
    val = np.empty((n_t, n_nodes))
    for k in range(n_t):
        hn[:, :] = 0.0
        for r in range(seg.shape[0]):
            g = seg[r]
            if g < 0:
                continue
            for j in range(n_b):
                hn[g, j] += hs[k0 + k, r, j]
        kpi_hist_quantile(hn, q, lo_ms, bpo, val[k])
    _late_codes(agg, val, 0, pre[3] >= 0, n_el, params, sel, post, live, thr, codes, values)


@kernel
def _step_one(c, v, t_ms, for_ticks, clear_for_ticks, worse_sign, st, count, start_ms, worst):
    """:func:`sla_rule_step` of one entry (state ``st``, ``count``, ``start_ms``, ``worst``) with
    condition ``c`` and value ``v``: (event kind (0: none), state, count, start_ms, worst) after it."""
    kind = 0
    if c == COND_INSUFFICIENT:
        return kind, st, count, start_ms, worst
    if st == ST_INACTIVE:
        if c == COND_BREACH:
            start_ms = t_ms
            worst = v
            count = 1
            if count > for_ticks:
                st = ST_FIRING
                count = 0
                kind = EV_FIRING
            else:
                st = ST_PENDING
                kind = EV_PENDING
    elif st == ST_PENDING:
        if c == COND_BREACH:
            count += 1
            if worse_sign * (v - worst) > 0.0:
                worst = v
            if count > for_ticks:
                st = ST_FIRING
                count = 0
                kind = EV_FIRING
        else:
            st = ST_INACTIVE
            count = 0
            kind = EV_CANCELLED
    else:
        if c == COND_BREACH:
            count = 0
            if worse_sign * (v - worst) > 0.0:
                worst = v
        elif c == COND_BAND:
            count = 0
        else:
            count += 1
            if count > clear_for_ticks:
                st = ST_INACTIVE
                count = 0
                kind = EV_RESOLVED
    return kind, st, count, start_ms, worst


_STEP_BLOCK = 512  # entries scanned per block before stepping any of them


@kernel
def _moves(codes, state):
    """Whether a lifecycle step with ``codes`` moves any entry of ``state``: a breach, or a condition
    other than insufficient while not inactive (branch-free over a block's views: vectorised)."""
    moves = np.uint8(0)
    for i in range(codes.shape[0]):
        c = codes[i]
        moves |= np.uint8(c == COND_BREACH) | (np.uint8(c != COND_INSUFFICIENT) & np.uint8(state[i] != ST_INACTIVE))
    return moves != 0


@kernel
def sla_tick_step_ring(bank, committed, params, ring, pos, cur, t_ms, old_t_ms, step_old, out):
    """One tick of every lifecycle of a :class:`LifeBank` with its committed copy and ring of recent
    conditions: with ``step_old`` the committed copy steps over the conditions leaving the ring
    (row ``pos``, tick ``old_t_ms``; its transitions are not reported), the tick's conditions
    ``cur`` take their place in the ring (values rounded to float32), then the lifecycle steps over
    them. Per entry the arithmetic of :func:`sla_tick_step` on the committed copy, the ring row
    assignment and :func:`sla_tick_step` on the lifecycles, so the same lifecycles, ring and events
    (rule by rule, node by node).

    Three passes over the entries, each a straight scan: an entry whose condition is insufficient,
    or not a breach while it is inactive, does not move (the common case: a healthy node), so
    blocks of ``_STEP_BLOCK`` entries are first scanned for one that moves (a vectorised
    reduction) and only such blocks are stepped entry by entry; the ring row is a plain copy.

    ``ring``: (codes int8 (L, n), values float32 (L, n)); ``cur``: (codes int8 (n,), values float64
    (n,)); the others as for :func:`sla_tick_step`. Returns the event count.
    """
    state, count, start_ms, worst = bank
    c_state, c_count, c_start, c_worst = committed
    ptr, for_ticks, clear_for_ticks, worse_sign = params
    ring_codes, ring_values = ring
    cur_codes, cur_values = cur
    ev_rule, ev_node, ev_kind, ev_start, ev_value, ev_worst = out
    rc, rv = ring_codes[pos], ring_values[pos]
    if step_old:  # the committed copies over the conditions leaving the ring (before it is written)
        for r in range(ptr.shape[0] - 1):
            f, cf, sg = for_ticks[r], clear_for_ticks[r], worse_sign[r]
            for b0 in range(ptr[r], ptr[r + 1], _STEP_BLOCK):
                b1 = min(b0 + _STEP_BLOCK, ptr[r + 1])
                if not _moves(rc[b0:b1], c_state[b0:b1]):
                    continue
                for i in range(b0, b1):
                    oc = rc[i]
                    if oc != COND_INSUFFICIENT and (oc == COND_BREACH or c_state[i] != ST_INACTIVE):
                        _, c_state[i], c_count[i], c_start[i], c_worst[i] = _step_one(
                            oc, float(rv[i]), old_t_ms, f, cf, sg, c_state[i], c_count[i], c_start[i], c_worst[i]
                        )
    for i in range(cur_codes.shape[0]):  # this tick's conditions into the ring
        rc[i] = cur_codes[i]
        rv[i] = np.float32(cur_values[i])
    n_ev = 0
    for r in range(ptr.shape[0] - 1):
        f, cf, sg = for_ticks[r], clear_for_ticks[r], worse_sign[r]
        for b0 in range(ptr[r], ptr[r + 1], _STEP_BLOCK):
            b1 = min(b0 + _STEP_BLOCK, ptr[r + 1])
            if not _moves(cur_codes[b0:b1], state[b0:b1]):
                continue
            for i in range(b0, b1):
                c = cur_codes[i]
                if c == COND_INSUFFICIENT or (c != COND_BREACH and state[i] == ST_INACTIVE):
                    continue  # no change
                v = cur_values[i]
                kind, state[i], count[i], start_ms[i], worst[i] = _step_one(
                    c, v, t_ms, f, cf, sg, state[i], count[i], start_ms[i], worst[i]
                )
                if kind != 0:
                    ev_rule[n_ev] = r
                    ev_node[n_ev] = i - ptr[r]
                    ev_kind[n_ev] = kind
                    ev_start[n_ev] = start_ms[i]
                    ev_value[n_ev] = v
                    ev_worst[n_ev] = worst[i]
                    n_ev += 1
    return n_ev


@kernel_exact
def sla_ratio_threshold_rows(rows, plan, params, x, act, seg, n_el, post, thr, codes, values):
    """:func:`sla_ratio_threshold` of an element-level rule (node ``r`` is element ``r``) for the
    elements ``rows`` only: their codes and values written, every other entry left as it is. Per
    element the operations of :func:`kernels.kpi.kpi_ratio_nodes` on its node in the same order
    (each counter's columns left to right added to a zero node sum, the active and expected minutes
    likewise, numerator and denominator, value, status), the scope mask, then the threshold code:
    bit-identical to the whole-rule call at those entries.

    ``seg`` / ``n_el``: node of each element (the element itself, ``< 0`` outside the scope) and
    elements per node; the other arguments as for :func:`sla_ratio_threshold` (``act``'s arrays
    are read when ``act[0]`` is not empty)."""
    col_ptr, cols, num_k, den_k, samp_k = plan
    scale, min_samples, gap_fraction = params
    active, hist_active, factor = act
    gap = active.shape[0] > 0
    n_k = col_ptr.shape[0] - 1
    n_r = rows.shape[0]
    agg = np.zeros((n_k + 2, n_r))
    # counter by counter over the rows (independent rows pipeline), as kpi_ratio_nodes
    for k in range(n_k):
        j0 = col_ptr[k]
        m = col_ptr[k + 1] - j0
        c0 = cols[j0]
        a = agg[k]
        if m == 1:
            for q in range(n_r):
                r = rows[q]
                if seg[r] >= 0:
                    a[q] += x[r, c0]
        else:
            for q in range(n_r):
                r = rows[q]
                if seg[r] >= 0:
                    acc = x[r, c0]
                    for j in range(j0 + 1, j0 + m):
                        acc += x[r, cols[j]]
                    a[q] += acc
    if gap:
        for q in range(n_r):
            r = rows[q]
            if seg[r] >= 0:
                agg[n_k, q] += float(active[r])
                agg[n_k + 1, q] += float(hist_active[r]) * factor
    has_post = post.shape[0] > 0
    single = num_k.shape[0] == 1 and den_k.shape[0] == 1
    a0, b0 = num_k[0], den_k[0]
    for q in range(n_r):
        r = rows[q]
        if single:
            num = 0.0 + agg[a0, q]
            den = 0.0 + agg[b0, q]
        else:
            num = 0.0
            for k in range(num_k.shape[0]):
                num += agg[num_k[k], q]
            den = 0.0
            for k in range(den_k.shape[0]):
                den += agg[den_k[k], q]
        has = den != 0.0
        v = scale * num / (den if has else 1.0)
        sm = agg[samp_k, q]
        bad = (sm < min_samples) | (not has) | (not np.isfinite(v)) | (sm <= 0.0)
        s = 1 if bad else 0
        if gap:
            e = agg[n_k + 1, q]
            s = 2 if ((e > 0.0) & (agg[n_k, q] < gap_fraction * e)) else s
        s = 3 if n_el[r] == 0.0 else s
        v = v if s == 0 else np.nan
        if has_post and not post[r]:
            v, sm, s = np.nan, 0.0, 3  # STATUS_NO_SCOPE
        codes[r] = _threshold_code(v, sm, s, thr[0], thr[1], thr[2], thr[3], thr[4])
        values[r] = v


@kernel_exact
def sla_quantile_rows_group(rows, hist, samples, act, params, rules, cur):
    """Element-level threshold rules over one quantile KPI and window (e.g. the latency rules per
    technology) at one tick for the elements ``rows`` only, in one call: the KPI of those elements
    as ``KpiCalculator.compute`` gives it over all elements (:func:`kernels.kpi.kpi_hist_quantile_rows`
    on the window histograms, :func:`kernels.kpi.kpi_status` on the rows' samples, active and
    expected minutes), then per rule its scope mask and codes (:func:`sla_masked_threshold`),
    written into the bank's current conditions at the rule's offset; other entries are left as
    they are. Bit-identical to ``_FusedConditions._quantile_rows`` rule by rule.

    ``hist``: (window histograms of every element (n, buckets), q, lowest bucket edge, buckets per
    octave); ``samples`` float64 (n,): the samples counter's window sums; ``act``: (active, expected)
    float64 (n,) each, or empty arrays for a source without collection gaps; ``params``:
    (min_samples, gap_fraction); ``rules``: (offsets int64 (n_rules,) of the rules in the bank,
    has_mask bool (n_rules,), masks bool (n_rules, n) (rows of rules without a filter unread),
    thresholds float64 (n_rules, 4): min samples, clear min samples, threshold, clear threshold,
    comparator codes int64 (n_rules,)); ``cur``: (codes int8, values float64) of the bank."""
    h, q, lo_ms, bpo = hist
    active, expected = act
    min_samples, gap_fraction = params
    offsets, has_mask, masks, thr_f, cmp = rules
    cur_codes, cur_values = cur
    n_r = rows.shape[0]
    full = np.empty(h.shape[0])
    kpi_hist_quantile_rows(h, rows, q, lo_ms, bpo, full)
    value = np.empty(n_r)
    smp = np.empty(n_r)
    n_act = np.zeros(n_r)
    n_exp = np.zeros(n_r)
    gap = active.shape[0] > 0
    for i in range(n_r):
        r = rows[i]
        value[i] = full[r]
        smp[i] = samples[r]
        if gap:
            n_act[i] = active[r]
            n_exp[i] = expected[r]
    status = np.empty(n_r, np.int8)
    out_value = np.empty(n_r)
    kpi_status(value, smp, min_samples, n_act, n_exp, gap_fraction, np.ones(n_r), status, out_value)
    for j in range(offsets.shape[0]):
        o = offsets[j]
        masked = has_mask[j]
        for i in range(n_r):
            r = rows[i]
            v, sm, st = out_value[i], smp[i], status[i]
            if masked and not masks[j, r]:
                v, sm, st = np.nan, 0.0, 3  # STATUS_NO_SCOPE
            cur_codes[o + r] = _threshold_code(v, sm, st, thr_f[j, 0], thr_f[j, 1], cmp[j], thr_f[j, 2], thr_f[j, 3])
            cur_values[o + r] = v


@kernel_exact
def sla_gap_flags(active, hist_active, factor, gap_fraction, out):
    """Collection-gap flag per element of an element-level rule (:func:`kernels.kpi.kpi_ratio_nodes`,
    :func:`kernels.kpi.kpi_status`): expected minutes ``e = hist_active * factor``, a gap where
    ``e > 0`` and ``active < gap_fraction * e``."""
    for r in range(active.shape[0]):
        e = float(hist_active[r]) * factor
        out[r] = e > 0.0 and float(active[r]) < gap_fraction * e


@kernel_exact
def sla_changed_rows(marks, act, gap_fraction, saved_gap, gap_now, out):
    """Elements whose inputs of a rule may have changed since the previous tick: those marked in
    any of ``marks`` (bool per element: late rows, data in the entering or leaving minute), and,
    when ``act = (active, hist_active, factor)`` holds arrays, those whose collection-gap flag
    (:func:`sla_gap_flags`, written to ``gap_now``) differs from ``saved_gap``. Writes their
    indices, ascending, to ``out`` and returns how many."""
    active, hist_active, factor = act
    n_el = out.shape[0]
    ch = np.zeros(n_el, np.uint8)
    for m in marks:  # mark by mark: straight passes over the elements
        for r in range(n_el):
            ch[r] |= m[r]
    if active.shape[0] > 0:
        for r in range(n_el):
            e = float(hist_active[r]) * factor
            g = (e > 0.0) & (float(active[r]) < gap_fraction * e)
            gap_now[r] = g
            ch[r] |= g != saved_gap[r]
    n = 0
    for r in range(n_el):
        out[n] = r
        n += int(ch[r])
    return n
