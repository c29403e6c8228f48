"""SLA kernels: rule conditions per node, violation lifecycles one rule or all rules at a tick, and
the fixed point of a lifecycle under unchanging conditions (quiet stretches). Condition codes
(``COND_*``), lifecycle states (``ST_*``) and event kinds (``EV_*``) are those of :mod:`kernels.kpi`.
"""

from typing import NamedTuple

import numpy as np

from ._numba import kernel
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
def sla_threshold_codes(
    value, samples, status, min_samples, clear_min_samples, cmp_code, threshold, clear_threshold, codes
):
    """COND_* per node of a threshold rule: breach (ok, ``min_samples``, past the threshold),
    clear (ok, ``clear_min_samples``, healthy side of the clear threshold), band (ok and enough
    samples to fire but neither), else insufficient. ``cmp_code`` indexes ("<", "<=", ">", ">=")."""
    for i in range(value.shape[0]):
        ok = status[i] == 0
        strong = ok and samples[i] >= min_samples
        if strong and _compare(value[i], cmp_code, threshold):
            codes[i] = COND_BREACH
        elif ok and samples[i] >= clear_min_samples and not _compare(value[i], cmp_code, clear_threshold):
            codes[i] = COND_CLEAR
        elif strong:
            codes[i] = COND_BAND
        else:
            codes[i] = COND_INSUFFICIENT
