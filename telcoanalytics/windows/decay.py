"""Decay: weight profiles for window queries, and continuous exponentially weighted statistics.

Two ways to forget old data:

* :class:`Decay` turns a decay specification into one weight per bucket age for a query over the
  ring buffers of :class:`telcoanalytics.windows.sliding.SlidingWindows` (any profile, bounded span);
* :class:`EWStats` keeps the exponentially weighted mean and variance per slot for several
  half-lives at once with O(1) state (unbounded horizon, exact for irregular spacing).

Age of a bucket
---------------
For a query at ``t_query_ms`` over a resolution of width ``width_s``, the bucket holding the query
time has age index ``k = 0``, the one before ``k = 1``, and so on; its age is
``age_s = k * width_s`` (the distance between the starts of the two buckets). Every event in a
bucket is weighted with the weight of the bucket's age. An exact per-event computation that
evaluates the decay at this bucket granularity (``age_s = (t_query // w - ts // w) * width_s``)
gives exactly the bucket result; the tests check this against a reference recomputed from the
raw events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kernels import ewm as _k

LN2 = math.log(2.0)

_KINDS = ("none", "exponential", "linear", "power", "gaussian", "step", "function", "weights")


@dataclass(frozen=True)
class Decay:
    """A decay profile: weight as a function of age (seconds), weight 1 at age 0.

    Build one with the class methods; ``weights(n, width_s)`` gives the per-bucket weights.

    ==================================  ==========================================================
    ``Decay.none()``                    ``w = 1`` (plain sliding window)
    ``Decay.exponential(half_life_s)``  ``w = 2 ** (-age / half_life_s)``
    ``Decay.linear(span_s)``            ``w = max(0, 1 - age / span_s)``
    ``Decay.power(exponent, scale_s)``  ``w = (1 + age / scale_s) ** -exponent``
    ``Decay.gaussian(sigma_s)``         ``w = exp(-age**2 / (2 sigma_s**2))``
    ``Decay.step(cutoff_s)``            ``w = 1 if age < cutoff_s else 0``
    ``Decay.function(f)``               ``w = f(age_s)``, ``f`` maps a float64 array to weights
    ``Decay.weights(vector)``           ``w[k] = vector[k]`` for bucket age index ``k``
    ==================================  ==========================================================

    Examples
    --------
    >>> Decay.exponential(half_life_s=60.0).weights(3, width_s=60.0)
    array([1.  , 0.5 , 0.25])
    >>> Decay.step(cutoff_s=120.0).weights(4, width_s=60.0)
    array([1., 1., 0., 0.])
    """

    kind: str = "none"
    param: float = math.inf
    param2: float = 1.0
    func: Callable | None = None
    vector: tuple = ()

    # ---- constructors ---------------------------------------------------------------------
    @classmethod
    def none(cls) -> Decay:
        return cls("none")

    @classmethod
    def exponential(cls, half_life_s: float) -> Decay:
        return cls("exponential", _positive("half_life_s", half_life_s, allow_inf=True))

    @classmethod
    def linear(cls, span_s: float) -> Decay:
        return cls("linear", _positive("span_s", span_s))

    @classmethod
    def power(cls, exponent: float, scale_s: float = 1.0) -> Decay:
        return cls("power", _positive("exponent", exponent), _positive("scale_s", scale_s))

    @classmethod
    def gaussian(cls, sigma_s: float) -> Decay:
        return cls("gaussian", _positive("sigma_s", sigma_s))

    @classmethod
    def step(cls, cutoff_s: float) -> Decay:
        return cls("step", _positive("cutoff_s", cutoff_s))

    @classmethod
    def function(cls, f: Callable) -> Decay:
        if not callable(f):
            raise TypeError(f"Decay.function needs a callable of age_s (array -> weights), got {type(f).__name__}")
        return cls("function", func=f)

    @classmethod
    def weights_of(cls, vector) -> Decay:
        """A user weight vector, ``vector[k]`` for bucket age index ``k`` (0 = current bucket)."""
        v = np.asarray(vector, dtype=np.float64)
        if v.ndim != 1 or len(v) == 0:
            raise ValueError(f"decay weight vector must be a non-empty 1-D array, got shape {v.shape}")
        _check_weights(v, "decay weight vector")
        return cls("weights", vector=tuple(float(x) for x in v))

    # ---- evaluation -----------------------------------------------------------------------
    def weights(self, n: int, width_s: float) -> np.ndarray:
        """Weights of bucket ages ``k = 0..n-1`` (age ``k * width_s`` seconds), float64 ``(n,)``.

        Raises
        ------
        ValueError
            If a user function returns a wrong shape, negative or non-finite weights, or a
            user vector is shorter than ``n``.
        """
        age_s = np.arange(n, dtype=np.float64) * float(width_s)
        k = self.kind
        if k == "none":
            w = np.ones(n)
        elif k == "exponential":
            w = np.exp2(-age_s / self.param)
        elif k == "linear":
            w = np.maximum(0.0, 1.0 - age_s / self.param)
        elif k == "power":
            w = (1.0 + age_s / self.param2) ** (-self.param)
        elif k == "gaussian":
            w = np.exp(-(age_s * age_s) / (2.0 * self.param * self.param))
        elif k == "step":
            w = (age_s < self.param).astype(np.float64)
        elif k == "function":
            w = np.asarray(self.func(age_s), dtype=np.float64)
            if w.shape != (n,):
                raise ValueError(
                    f"the decay function returned shape {w.shape} for {n} bucket ages; "
                    "it must map an array of ages (seconds) to one weight each"
                )
            _check_weights(w, "the decay function's weights")
        elif k == "weights":
            if len(self.vector) < n:
                raise ValueError(
                    f"the decay weight vector has {len(self.vector)} entries but the query "
                    f"spans {n} buckets; pass at least {n} weights or shorten the span"
                )
            w = np.asarray(self.vector[:n], dtype=np.float64)
        else:
            raise ValueError(f"unknown decay kind {k!r}; use one of {_KINDS}")
        return np.ascontiguousarray(w, dtype=np.float64)


def _positive(name: str, v, allow_inf: bool = False) -> float:
    v = float(v)
    if not (v > 0) or (math.isinf(v) and not allow_inf) or math.isnan(v):
        raise ValueError(f"{name} must be a positive finite number{' or inf' if allow_inf else ''}, got {v}")
    return v


def _check_weights(w: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = int(np.flatnonzero(~np.isfinite(w) | (w < 0))[0])
        raise ValueError(f"{what} must be finite and >= 0; entry {bad} is {w[bad]}")


def as_decay(decay) -> Decay:
    """Accept ``None`` (no decay), a :class:`Decay`, a callable of age (s) or a weight vector."""
    if decay is None:
        return Decay.none()
    if isinstance(decay, Decay):
        return decay
    if callable(decay):
        return Decay.function(decay)
    if isinstance(decay, (list, tuple, np.ndarray)):
        return Decay.weights_of(decay)
    raise TypeError(f"decay must be None, a Decay, a callable of age_s or a weight vector; got {type(decay).__name__}")


# ---- continuous exponentially weighted statistics --------------------------------------------

EW_FIELDS = ("weight", "sum", "mean", "var", "std")
EW_DTYPE = np.dtype([(f, "f8") for f in EW_FIELDS])
"""Per (slot, half-life) result of :meth:`EWStats.values`: decayed weight (the exponentially
weighted event count), decayed sum, mean, population variance and standard deviation."""


def half_life_coefs(half_lives_s) -> np.ndarray:
    """``-ln 2 / half_life_ms`` per half-life (0 for ``inf``), validated."""
    hl = np.atleast_1d(np.asarray(half_lives_s, dtype=np.float64))
    if hl.ndim != 1:
        raise ValueError(f"half_lives_s must be a 1-D sequence of seconds, got shape {hl.shape}")
    if np.any(~(hl > 0)) or np.any(np.isnan(hl)):
        raise ValueError(f"half_lives_s must be positive (inf allowed), got {hl.tolist()}")
    return np.ascontiguousarray(-LN2 / (hl * 1000.0))


def decay_table(coef) -> np.ndarray:
    """Decay-factor lookup table of the EW kernels for the coefficients ``coef`` (72 KiB for three
    half-lives): ``exp(coef * dt)`` for an integer gap of ``dt`` ms is a product of three entries
    (see :func:`kernels.ewm.ewm_fold` and its three-half-life path :func:`kernels.ewm.ewm_fold3`)."""
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    table = np.empty((_k.TABLE_LEVELS, 1 << _k.TABLE_BITS, len(coef)))
    _k.ewm_table(coef, table)
    return table


class EWStats:
    """Exponentially weighted mean and variance per slot at several half-lives, O(1) state.

    Every event at time ``t`` counts at time ``T`` with weight ``2 ** (-(T - t) / half_life)``:
    mean ``sum w x / sum w``, variance ``sum w (x - mean)^2 / sum w`` (population form, equal to
    pandas ``ewm(halflife=..., times=..., adjust=True).var(bias=True)``). The result is
    independent of arrival order, exact for irregular spacing, and an infinite half-life gives
    plain count / mean / variance.

    Parameters
    ----------
    n_slots : int
    half_lives_s : sequence of float, e.g. ``(60, 3600, 86400)``; ``inf`` allowed

    Notes
    -----
    Memory: ``nbytes = n_slots * (1 + 3 * n_half_lives) * 8`` bytes (reference time, then weight,
    mean and weighted M2 per half-life) plus the decay-factor table of the update kernel,
    ``3 * 1024 * n_half_lives * 8`` bytes (24 KiB per half-life, independent of the slots). Values are NaN-aware: non-finite values are skipped and
    reported with status 3. See :mod:`kernels.ewm` for the update, out-of-order and merge formulas.

    Examples
    --------
    >>> ew = EWStats(n_slots=2, half_lives_s=(60.0,))
    >>> _ = ew.update(np.array([0, 60_000]), np.array([0, 0]), np.array([1.0, 3.0]))
    >>> v = ew.values(60_000)
    >>> round(float(v["weight"][0, 0]), 12), round(float(v["mean"][0, 0]), 12)
    (1.5, 2.333333333333)
    """

    def __init__(self, n_slots: int, half_lives_s=(60.0, 3600.0, 86400.0)):
        n_slots = int(n_slots)
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        self.n_slots = n_slots
        self.half_lives_s = np.atleast_1d(np.asarray(half_lives_s, dtype=np.float64)).copy()
        self.coef = half_life_coefs(self.half_lives_s)
        self.table = decay_table(self.coef)
        self.state = np.zeros((n_slots, 1 + 3 * len(self.half_lives_s)))
        self.state[:, 0] = np.nan
        self.n_events = 0
        self.n_invalid = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the state array and the decay-factor table (see Notes)."""
        return int(self.state.nbytes + self.table.nbytes)

    def update(self, ts_ms, slot, value) -> np.ndarray:
        """Fold a batch in; returns the status per event (0 folded, 3 non-finite value)."""
        ts, sl, val = check_batch(ts_ms, slot, value, self.n_slots)
        status = np.empty(len(ts), dtype=np.int8)
        n_ok = _k.ewm_update(ts, sl, val, self.coef, self.table, self.state, status)
        self.n_events += int(n_ok)
        self.n_invalid += len(ts) - int(n_ok)
        return status

    def values(self, t_query_ms: int, slots=None) -> np.ndarray:
        """EW statistics at ``t_query_ms``: ``EW_DTYPE`` array of shape ``(n_q, n_half_lives)``.

        Empty slots give ``weight = sum = 0`` and NaN mean/var/std.
        """
        sl = check_slots(slots, self.n_slots)
        out = np.empty((len(sl), len(self.coef), len(EW_FIELDS)))
        _k.ewm_values(self.state, sl, float(int(t_query_ms)), self.coef, out)
        return out.view(EW_DTYPE).reshape(len(sl), len(self.coef))

    def merge(self, other: EWStats) -> EWStats:
        """Merge ``other`` (same slots and half-lives) into this state in place; returns self."""
        self._check_compatible(other)
        _k.ewm_merge(other.state, np.arange(self.n_slots, dtype=np.int64), self.coef, self.state)
        self.n_events += other.n_events
        self.n_invalid += other.n_invalid
        return self

    def rollup(self, group_of_slot, n_groups: int) -> EWStats:
        """A new state with one slot per group, merging the slots of each group."""
        g = check_groups(group_of_slot, self.n_slots, n_groups)
        out = EWStats(n_groups, self.half_lives_s)
        _k.ewm_merge(self.state, g, self.coef, out.state)
        out.n_events, out.n_invalid = self.n_events, self.n_invalid
        return out

    def _check_compatible(self, other):
        if not isinstance(other, EWStats):
            raise TypeError(f"can only merge EWStats, got {type(other).__name__}")
        if other.n_slots != self.n_slots or not np.array_equal(other.half_lives_s, self.half_lives_s):
            raise ValueError(
                f"cannot merge EWStats with {other.n_slots} slots / half-lives "
                f"{other.half_lives_s.tolist()} into {self.n_slots} slots / "
                f"{self.half_lives_s.tolist()}; both need the same slots and half-lives"
            )

    def to_state(self) -> dict:
        return {
            "kind": "EWStats",
            "n_slots": self.n_slots,
            "half_lives_s": self.half_lives_s.copy(),
            "state": self.state.copy(),
            "n_events": self.n_events,
            "n_invalid": self.n_invalid,
        }

    @classmethod
    def from_state(cls, d: dict) -> EWStats:
        if d.get("kind") != "EWStats":
            raise ValueError(f"not an EWStats state (kind={d.get('kind')!r})")
        ew = cls(int(d["n_slots"]), d["half_lives_s"])
        st = np.asarray(d["state"], dtype=np.float64)
        if st.shape != ew.state.shape:
            raise ValueError(f"state array has shape {st.shape}, expected {ew.state.shape}")
        ew.state[...] = st
        ew.n_events, ew.n_invalid = int(d["n_events"]), int(d["n_invalid"])
        return ew


# ---- boundary validation shared with windows and sketch --------------------------------------


def check_batch(ts_ms, slot, value, n_slots: int):
    """Coerce ``(ts_ms int64, slot int64, value float64)`` and check lengths and slot range."""
    ts = np.asarray(ts_ms)
    sl = np.asarray(slot)
    if ts.ndim != 1 or sl.ndim != 1:
        raise ValueError(f"ts_ms and slot must be 1-D arrays, got shapes {ts.shape} and {sl.shape}")
    if ts.dtype.kind not in "iu":
        raise ValueError(
            f"ts_ms must be integer milliseconds (int64), got dtype {ts.dtype}; "
            "convert with (t_s * 1000).astype('int64')"
        )
    if sl.dtype.kind not in "iu":
        raise ValueError(f"slot must hold integer slot indices, got dtype {sl.dtype}")
    val = np.ascontiguousarray(value, dtype=np.float64)
    if val.shape != ts.shape or sl.shape != ts.shape:
        raise ValueError(
            f"ts_ms, slot and value must have the same length, got {len(ts)}, {len(sl)}, "
            f"{val.shape[0] if val.ndim else 'scalar'}"
        )
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    sl = np.ascontiguousarray(sl, dtype=np.int64)
    if len(sl):
        lo, hi = int(sl.min()), int(sl.max())
        if lo < 0 or hi >= n_slots:
            row = int(np.flatnonzero((sl < 0) | (sl >= n_slots))[0])
            raise ValueError(
                f"slot[{row}] = {int(sl[row])} is outside 0..{n_slots - 1}; map element ids "
                "with Topology.index_of and quarantine unknown ones before windowing"
            )
    return ts, sl, val


def check_slots(slots, n_slots: int) -> np.ndarray:
    if slots is None:
        return np.arange(n_slots, dtype=np.int64)
    sl = np.atleast_1d(np.asarray(slots))
    if sl.dtype.kind not in "iu" or sl.ndim != 1:
        raise ValueError(f"slots must be a 1-D integer array, got dtype {sl.dtype} shape {sl.shape}")
    sl = np.ascontiguousarray(sl, dtype=np.int64)
    if len(sl) and (sl.min() < 0 or sl.max() >= n_slots):
        raise ValueError(f"slots must lie in 0..{n_slots - 1}, got values {int(sl.min())}..{int(sl.max())}")
    return sl


def check_groups(group_of_slot, n_slots: int, n_groups: int) -> np.ndarray:
    g = np.asarray(group_of_slot)
    n_groups = int(n_groups)
    if g.shape != (n_slots,) or g.dtype.kind not in "iu":
        raise ValueError(
            f"group_of_slot must be an integer array of length n_slots={n_slots}, got dtype {g.dtype} shape {g.shape}"
        )
    g = np.ascontiguousarray(g, dtype=np.int64)
    if n_groups < 1 or (len(g) and (g.min() < 0 or g.max() >= n_groups)):
        raise ValueError(
            f"group_of_slot must lie in 0..n_groups-1 = 0..{n_groups - 1}, got {int(g.min())}..{int(g.max())}"
        )
    return g


class BatchStatus(NamedTuple):
    """Per-event outcome of an update: the side output. ``status`` codes: 0 accepted, 1 late
    (behind the watermark), 2 duplicate record id, 3 non-finite value (missing)."""

    status: np.ndarray

    def idx(self, code: int) -> np.ndarray:
        return np.flatnonzero(self.status == code)

    @property
    def accepted_idx(self) -> np.ndarray:
        return self.idx(0)

    @property
    def late_idx(self) -> np.ndarray:
        return self.idx(1)

    @property
    def duplicate_idx(self) -> np.ndarray:
        return self.idx(2)

    @property
    def invalid_idx(self) -> np.ndarray:
        return self.idx(3)
