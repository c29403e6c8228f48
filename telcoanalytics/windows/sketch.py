"""Percentiles over windows: a mergeable DDSketch-style log-bucket histogram per slot and bucket.

Why per slot *and* time bucket, and what it costs
-------------------------------------------------
Percentiles over a window cannot be assembled from window aggregates, so the sketch keeps its
own ring of time buckets (one resolution, e.g. 5 min x 12 for a one-hour p95 that slides every
5 minutes). A per-slot-only sketch (``n_buckets=1`` and no ``width_ms``) covers the whole
stream. Memory is exactly ``n_slots * n_buckets * (4 * n_bins + 8)`` bytes with
``n_bins = ceil(ln(max_value / min_value) / ln(gamma)) + 2``: with the defaults (1 % accuracy,
range 0.01 .. 1e5, 800 bins) that is 3.2 kB per slot and bucket, so it is meant for the
latency-like metrics (one slot per element or site), not for every counter; widen ``alpha`` or
narrow the range to shrink it (2 % halves it).

Guarantee
---------
Every value in ``[min_value, max_value]`` is represented within relative error ``alpha``; the
quantile returned for ``q`` is the representative of the order statistic of rank
``floor(q (n - 1))`` (NumPy ``method="lower"``), hence within ``alpha`` of it. Zeros and values
below ``min_value`` are represented by 0 (absolute error < ``min_value``); values above
``max_value`` by ``max_value`` (counted in ``n_overflow``). The sketch is for non-negative
quantities (latency, jitter, loss, durations): negative and non-finite values are rejected into
the side output (status 3, ``n_invalid``), never silently. Sketches merge exactly (bin counts add).
"""

from __future__ import annotations

import math

import numpy as np

from kernels import sketch as _ks
from telcoanalytics.windows.decay import as_decay, check_batch, check_groups, check_slots

_HUGE_WIDTH_MS = 1 << 62


class QuantileSketch:
    """Mergeable relative-error quantile sketch per slot, optionally per time bucket.

    Parameters
    ----------
    n_slots : int
    alpha : float
        Relative accuracy, ``0 < alpha < 1`` (0.01 = 1 %).
    min_value, max_value : float
        Range represented with relative accuracy (``0 < min_value < max_value``).
    width_ms : int, optional
        Bucket width; None for one bucket covering all time.
    n_buckets : int
        Ring length (1 when ``width_ms`` is None).

    Raises
    ------
    ValueError
        For parameters out of range.

    Examples
    --------
    >>> sk = QuantileSketch(n_slots=1, alpha=0.01, min_value=0.1, max_value=1000.0)
    >>> _ = sk.update(np.zeros(100, dtype=np.int64), np.zeros(100, dtype=np.int64), np.arange(1.0, 101.0))
    >>> q = sk.quantiles([0.5, 0.99])
    >>> bool(abs(q[0, 0] - 50) <= 0.5 and abs(q[0, 1] - 99) <= 0.99)
    True
    """

    def __init__(
        self,
        n_slots: int,
        alpha: float = 0.01,
        min_value: float = 0.01,
        max_value: float = 1e5,
        width_ms: int | None = None,
        n_buckets: int = 1,
    ):
        n_slots = int(n_slots)
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        alpha = float(alpha)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha (relative accuracy) must be in (0, 1), e.g. 0.01; got {alpha}")
        min_value, max_value = float(min_value), float(max_value)
        if not (0.0 < min_value < max_value < math.inf):
            raise ValueError(f"need 0 < min_value < max_value < inf, got {min_value}, {max_value}")
        if width_ms is None:
            if int(n_buckets) != 1:
                raise ValueError("n_buckets > 1 needs a bucket width: pass width_ms")
            width = _HUGE_WIDTH_MS
        else:
            width = int(width_ms)
            if width <= 0:
                raise ValueError(f"width_ms must be positive, got {width}")
        n_buckets = int(n_buckets)
        if n_buckets < 1:
            raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
        self.n_slots, self.alpha, self.min_value, self.max_value = n_slots, alpha, min_value, max_value
        self.width_ms, self.n_buckets = width, n_buckets
        self.gamma = (1.0 + alpha) / (1.0 - alpha)
        self.inv_log_gamma = 1.0 / math.log(self.gamma)
        n_log = int(math.ceil(math.log(max_value / min_value) * self.inv_log_gamma))
        self.n_bins = n_log + 2
        i = np.arange(self.n_bins, dtype=np.float64)
        self.bin_value = min_value * 2.0 * self.gamma**i / (self.gamma + 1.0)
        self.bin_value[0] = 0.0
        self.bin_value[-1] = max_value
        self.bucket_of = np.full(n_buckets * n_slots, _ks.NO_BUCKET, dtype=np.int64)
        self.counts = np.zeros((n_buckets * n_slots, self.n_bins), dtype=np.uint32)
        self.clock = np.array([_ks.NO_BUCKET], dtype=np.int64)
        self.n_counted = 0
        self.n_invalid = 0
        self.n_expired = 0

    @property
    def nbytes(self) -> int:
        """``n_slots * n_buckets * (4 * n_bins + 8)`` bytes."""
        return int(self.counts.nbytes + self.bucket_of.nbytes)

    @property
    def n_overflow(self) -> int:
        """Values above ``max_value`` currently held (represented by ``max_value``)."""
        live = self.bucket_of != _ks.NO_BUCKET
        return int(self.counts[live, -1].sum())

    def _state(self) -> tuple:
        """A plain tuple laid out as ``kernels.sketch.SketchState`` (Numba's fast dispatch path)."""
        return (self.clock, self.bucket_of, self.counts)

    def _params(self) -> tuple:
        """A plain tuple laid out as ``kernels.sketch.SketchParams``."""
        return (
            int(self.width_ms),
            int(self.n_buckets),
            int(self.n_slots),
            float(self.min_value),
            float(self.inv_log_gamma),
        )

    def update(self, ts_ms, slot, value, active=None) -> np.ndarray:
        """Count a batch in. ``active`` (bool) restricts to accepted events, e.g.
        ``windows_status.status == 0``. Returns the status per event: 0 counted, 3 invalid
        (NaN/inf/negative), 4 expired (older than the ring span), 5 not active."""
        ts, sl, val = check_batch(ts_ms, slot, value, self.n_slots)
        if active is None:
            act = np.ones(len(ts), dtype=np.bool_)
        else:
            act = np.ascontiguousarray(active, dtype=np.bool_)
            if act.shape != ts.shape:
                raise ValueError(f"active must be a boolean array of length {len(ts)}, got shape {act.shape}")
        status = np.empty(len(ts), dtype=np.int8)
        n = _ks.sketch_update(self._state(), self._params(), ts, sl, val, act, status)
        self.n_counted += int(n)
        self.n_invalid += int(np.count_nonzero(status == _ks.INVALID))
        self.n_expired += int(np.count_nonzero(status == _ks.EXPIRED))
        return status

    def quantiles(
        self,
        qs,
        t_query_ms: int | None = None,
        span_ms: int | None = None,
        decay=None,
        slots=None,
        return_count: bool = False,
    ):
        """Quantiles ``qs`` per slot over the last ``span_ms`` (default: the whole ring).

        Parameters
        ----------
        qs : float or sequence of float in [0, 1]
        t_query_ms : int, optional
            Default: the newest time bucket seen.
        span_ms : int, optional
            A multiple of ``width_ms`` up to the ring length; default the whole ring.
        decay : Decay, callable or weight vector, optional
            Weight per bucket age as in :meth:`SlidingWindows.query`.
        slots : int array, optional
        return_count : bool
            Also return the (weighted) count per slot.

        Returns
        -------
        float64 array ``(n_q, n_qs)`` (NaN for empty slots)[, float64 counts ``(n_q,)``]
        """
        q = np.atleast_1d(np.asarray(qs, dtype=np.float64))
        if q.ndim != 1 or np.any(~((q >= 0) & (q <= 1))):
            raise ValueError(f"quantiles must lie in [0, 1], got {q.tolist()}")
        if span_ms is None:
            n_span = self.n_buckets
        else:
            span_ms = int(span_ms)
            if (
                self.width_ms == _HUGE_WIDTH_MS
                or span_ms <= 0
                or span_ms % self.width_ms
                or span_ms // self.width_ms > self.n_buckets
            ):
                raise ValueError(
                    f"span_ms={span_ms} must be a positive multiple of width_ms up to "
                    f"{self.n_buckets} buckets (a sketch without width_ms takes no span)"
                )
            n_span = span_ms // self.width_ms
        if t_query_ms is None:
            bq = int(self.clock[0]) if self.clock[0] != _ks.NO_BUCKET else 0
            t = bq * self.width_ms
        else:
            t = int(t_query_ms)
        w = as_decay(decay).weights(n_span, self.width_ms / 1000.0)
        sl = check_slots(slots, self.n_slots)
        out = np.empty((len(sl), len(q)))
        cnt = np.empty(len(sl))
        _ks.sketch_query(self._state(), self._params(), t, w, sl, np.ascontiguousarray(q), self.bin_value, out, cnt)
        return (out, cnt) if return_count else out

    def _check_compatible(self, other):
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"can only merge QuantileSketch, got {type(other).__name__}")
        mine = (self.alpha, self.min_value, self.max_value, self.width_ms, self.n_buckets)
        theirs = (other.alpha, other.min_value, other.max_value, other.width_ms, other.n_buckets)
        if mine != theirs:
            raise ValueError(
                f"cannot merge sketches with (alpha, min, max, width_ms, n_buckets) = {theirs} "
                f"into {mine}; both need the same parameters"
            )

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """Add another partition's counts (same parameters and slots) into this sketch; returns self."""
        self._check_compatible(other)
        if other.n_slots != self.n_slots:
            raise ValueError(
                f"cannot merge a sketch over {other.n_slots} slots into {self.n_slots} slots; use rollup()"
            )
        _ks.sketch_merge(
            other.bucket_of,
            other.counts,
            other.n_slots,
            np.arange(self.n_slots, dtype=np.int64),
            self.n_buckets,
            self.n_slots,
            self.bucket_of,
            self.counts,
        )
        self.clock[0] = max(int(self.clock[0]), int(other.clock[0]))
        self.n_counted += other.n_counted
        self.n_invalid += other.n_invalid
        self.n_expired += other.n_expired
        return self

    def rollup(self, group_of_slot, n_groups: int) -> QuantileSketch:
        """A new sketch with one slot per group, merging the slots of each group."""
        g = check_groups(group_of_slot, self.n_slots, n_groups)
        out = QuantileSketch(
            n_groups,
            self.alpha,
            self.min_value,
            self.max_value,
            None if self.width_ms == _HUGE_WIDTH_MS else self.width_ms,
            self.n_buckets,
        )
        _ks.sketch_merge(
            self.bucket_of, self.counts, self.n_slots, g, self.n_buckets, n_groups, out.bucket_of, out.counts
        )
        out.clock[0] = self.clock[0]
        out.n_counted, out.n_invalid, out.n_expired = self.n_counted, self.n_invalid, self.n_expired
        return out

    def to_state(self) -> dict:
        return {
            "kind": "QuantileSketch",
            "n_slots": self.n_slots,
            "alpha": self.alpha,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "width_ms": -1 if self.width_ms == _HUGE_WIDTH_MS else self.width_ms,
            "n_buckets": self.n_buckets,
            "bucket_of": self.bucket_of.copy(),
            "counts": self.counts.copy(),
            "clock": self.clock.copy(),
            "n_counted": self.n_counted,
            "n_invalid": self.n_invalid,
            "n_expired": self.n_expired,
        }

    @classmethod
    def from_state(cls, d: dict) -> QuantileSketch:
        if d.get("kind") != "QuantileSketch":
            raise ValueError(f"not a QuantileSketch state (kind={d.get('kind')!r})")
        width = int(d["width_ms"])
        sk = cls(
            int(d["n_slots"]),
            float(d["alpha"]),
            float(d["min_value"]),
            float(d["max_value"]),
            None if width < 0 else width,
            int(d["n_buckets"]),
        )
        counts = np.asarray(d["counts"])
        if counts.shape != sk.counts.shape:
            raise ValueError(f"counts has shape {counts.shape}, expected {sk.counts.shape}")
        sk.counts[...] = counts
        sk.bucket_of[:] = d["bucket_of"]
        sk.clock[:] = d["clock"]
        sk.n_counted, sk.n_invalid, sk.n_expired = int(d["n_counted"]), int(d["n_invalid"]), int(d["n_expired"])
        return sk
