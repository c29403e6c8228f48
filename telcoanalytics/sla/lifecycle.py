"""Evaluated lifecycles of the SLA monitor (one per threshold rule or burn-rate window pair), their
state, and the condition helpers of burn-rate alerts."""

from __future__ import annotations

import numpy as np

from kernels import kpi as K
from telcoanalytics.kpi import (
    STATUS_INSUFFICIENT,
    STATUS_OK,
)


# ---- the monitor ---------------------------------------------------------------------------
class _Eval:
    """One evaluated lifecycle: a threshold rule, or one burn-rate window pair of an SLO."""

    def __init__(
        self,
        name,
        kpi,
        severity,
        level,
        filt,
        service,
        comparator,
        threshold,
        clear_threshold,
        window_min,
        for_min,
        clear_for_min,
        min_samples,
        kind,
        n_nodes,
        L,
        burn=None,
    ):
        self.name, self.kpi, self.severity, self.level = name, kpi, severity, level
        self.filter, self.service, self.comparator = filt, service, comparator
        self.threshold, self.clear_threshold = threshold, clear_threshold
        self.window_min, self.for_min, self.clear_for_min = window_min, for_min, clear_for_min
        self.min_samples, self.kind, self.burn = min_samples, kind, burn
        self.sign = -1.0 if comparator in ("<", "<=") else 1.0
        self.state = _LifeState(n_nodes)
        self.committed = _LifeState(n_nodes)
        self.codes = np.zeros((L, n_nodes), np.int8)
        self.values = np.full((L, n_nodes), np.nan, np.float32)
        self.mask = None
        self.clear_min_samples = min_samples
        self.fired: dict = {}  # node -> {start_ms: tick} of firing events emitted recently
        self.fused = None  # scratch of the fused conditions (telcoanalytics.sla.fused), built at first use
        self.chg = None  # what its conditions read (telcoanalytics.sla.changed), built at first use
        self.late = None  # its late-data group spec (telcoanalytics.sla.late), built at first use

    @property
    def reach_min(self) -> int:
        return max(self.burn[2], self.burn[3]) if self.burn else self.window_min


class _LifeState:
    def __init__(self, n):
        self.state = np.zeros(n, np.int8)
        self.count = np.zeros(n, np.int64)
        self.start = np.full(n, -1, np.int64)
        self.worst = np.full(n, np.nan)


class _Bank:
    """The lifecycles (state and committed copy) and recent-conditions rings of all evaluated rules
    laid end to end, so one kernel call per tick steps them all
    (:func:`kernels.sla.sla_tick_step`). Each :class:`_Eval` keeps views into the bank; whatever
    rebinds an eval's arrays (a restore, a topology change) is noticed by :meth:`intact` and the
    bank rebuilt from the evals' current arrays."""

    FIELDS = ("state", "count", "start", "worst")

    def __init__(self, evals: list, L: int):
        n = [len(ev.state.state) for ev in evals]
        self.ptr = np.zeros(len(evals) + 1, np.int64)
        np.cumsum(n, out=self.ptr[1:])
        N = int(self.ptr[-1])
        self.params = (
            self.ptr,
            np.array([ev.for_min for ev in evals], np.int64),
            np.array([ev.clear_for_min for ev in evals], np.int64),
            np.array([ev.sign for ev in evals], np.float64),
        )
        self.live, self.committed = {}, {}
        for which, bank in (("state", self.live), ("committed", self.committed)):
            for a in self.FIELDS:
                parts = [getattr(getattr(ev, which), a) for ev in evals]
                bank[a] = np.concatenate(parts) if parts else np.zeros(0, _parts_dtype(a))
                for ev, o, m in zip(evals, self.ptr[:-1], self.ptr[1:]):
                    setattr(getattr(ev, which), a, bank[a][o:m])
        self.codes = np.concatenate([ev.codes for ev in evals], axis=1) if evals else np.zeros((L, 0), np.int8)
        self.values = np.concatenate([ev.values for ev in evals], axis=1) if evals else np.zeros((L, 0), np.float32)
        for ev, o, m in zip(evals, self.ptr[:-1], self.ptr[1:]):
            ev.codes, ev.values = self.codes[:, o:m], self.values[:, o:m]
        self.cur_codes = np.zeros(N, np.int8)
        self.cur_values = np.zeros(N)
        self.views = _views(evals)  # the arrays handed to the evals, checked by identity in intact()
        self.out = (
            np.zeros(N, np.int64),
            np.zeros(N, np.int64),
            np.zeros(N, np.int8),
            np.zeros(N, np.int64),
            np.zeros(N),
            np.zeros(N),
        )

    def intact(self, evals: list) -> bool:
        """Whether every eval still works on the views of this bank it was given (nothing rebound,
        resized or added): one identity check per array (a view handed out here is never resized)."""
        if len(evals) != len(self.ptr) - 1:
            return False
        return all(x is y for x, y in zip(_views(evals), self.views, strict=True))

    def arrays(self, which: str) -> tuple:
        b = self.live if which == "state" else self.committed
        return tuple(b[a] for a in self.FIELDS)


def _views(evals: list) -> list:
    """Every lifecycle and ring array the evals work on, in a fixed order."""
    return [
        x
        for ev in evals
        for x in (
            ev.state.state,
            ev.state.count,
            ev.state.start,
            ev.state.worst,
            ev.committed.state,
            ev.committed.count,
            ev.committed.start,
            ev.committed.worst,
            ev.codes,
            ev.values,
        )
    ]


def _parts_dtype(a: str):
    return {"state": np.int8, "count": np.int64, "start": np.int64, "worst": np.float64}[a]


def _burn_of(good_share, samples, status, min_samples: float, objective: float, factor: float):
    """(burn, ok, quiet) of a window from its good share, samples and KPI status.

    ``burn = (1 - good_share) / (1 - objective)`` where the window has ``min_samples``; ``quiet``:
    the window holds no event (status insufficient, not a collection gap) or its burn on whatever
    events it holds is below ``factor``. A burn alert resolves on a quiet short window: when the
    failures stop and traffic falls below ``min_samples`` (night after a congestion), the budget
    is no longer burning, so the alert must not stay firing for want of evidence.
    """
    has = status == STATUS_OK
    with np.errstate(invalid="ignore"):
        burn_any = np.where(has, (1.0 - good_share) / (1.0 - objective), np.nan)
        quiet = (status == STATUS_INSUFFICIENT) | (has & ~(burn_any >= factor))
    ok = has & (samples >= min_samples)
    return np.where(ok, burn_any, np.nan), ok, quiet


def _burn_of_counts(good, total, min_samples: float, objective: float, factor: float):
    """:func:`_burn_of` from good and total counts (hour-ring windows, no gap status)."""
    has = total > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        burn_any = np.where(has, (1.0 - good / total) / (1.0 - objective), np.nan)
        quiet = ~has | ~(burn_any >= factor)
    ok = total >= max(min_samples, 1e-300)
    return np.where(ok, burn_any, np.nan), ok, quiet


def _burn_codes(burn_l, ok_l, burn_s, ok_s, quiet_s, factor: float) -> np.ndarray:
    """Condition codes of a burn-rate window pair: breach while both windows (with enough samples)
    burn at ``factor`` or more; clear when both have samples and do not, or the short window is
    quiet (the burn stopped); insufficient otherwise (neither fires nor resolves)."""
    with np.errstate(invalid="ignore"):
        breach = ok_l & ok_s & (burn_l >= factor) & (burn_s >= factor)
    clear = ~breach & (quiet_s | (ok_l & ok_s))
    return np.where(breach, K.COND_BREACH, np.where(clear, K.COND_CLEAR, K.COND_INSUFFICIENT)).astype(np.int8)


def _cmp(v, comp, thr):
    with np.errstate(invalid="ignore"):
        if comp == "<":
            return v < thr
        if comp == "<=":
            return v <= thr
        if comp == ">":
            return v > thr
        return v >= thr


def _fmt_min(m: int) -> str:
    if m % 1440 == 0:
        return f"{m // 1440}d"
    if m % 60 == 0:
        return f"{m // 60}h"
    return f"{m}m"
