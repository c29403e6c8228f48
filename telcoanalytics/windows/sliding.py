"""Sliding windows from seconds to days: multi-resolution ring buffers with decay queries.

:class:`SlidingWindows` keeps, per slot (an element x metric pair or any dense key), one ring
buffer of bucket aggregates per resolution, aligned to wall-clock buckets
(``bucket = ts_ms // width_ms``), plus optionally the continuous exponentially weighted mean and
variance of :class:`telcoanalytics.windows.decay.EWStats` updated in the same pass.

Event time, lateness, duplicates
--------------------------------
The watermark is ``max event time accepted - allowed_lateness_ms``. Events behind it are not
folded in; they are reported in the side output (``status == 1``, ``n_late``). Late events inside
the allowed lateness update the bucket of their own timestamp and every statistic built on it.
When ``allowed_lateness_ms`` exceeds the span of a fine resolution, an accepted event older than
that ring's span cannot enter that ring (no query of it could see the bucket anyway); it is still
in the coarser rings and counted per resolution in ``n_expired``. With record ids, repeated ids
within the allowed lateness are dropped and reported (``status == 2``). Non-finite values are
missing data (``status == 3``). Nothing is dropped silently: every event ends in exactly one of
``n_accepted, n_late, n_duplicate, n_invalid``.

Memory
------
``nbytes = 8 * n_slots * (7 * sum(n_buckets) + [1 + 3 * n_half_lives]) + [24576 * n_half_lives]
+ 16 * dedup_capacity``:
seven float64 aggregates per slot and bucket (bucket index, count, mean, M2, min, max, last
time), the EW state and its decay-factor table when half-lives are given (bracketed terms; the
table is 24 KiB per half-life whatever the slot count), and the record-id table
(capacity 1 when ``dedup=False``; with dedup a power of two at least twice the ids inside the
allowed lateness). All of it is allocated and touched at construction, so the process RSS grows
by exactly this much (the benchmark measures it). Example: 60,000 slots with the default
resolutions (323 buckets) and three half-lives take 1,090 MB; 1 min x 60, 1 h x 24, 1 day x 7
take 311 MB.

Queries
-------
:meth:`SlidingWindows.query` reads every cell of the span: over 60,000 slots, 1 h at 1 min reads
60 x 60,000 cells, about 200 MB, which takes 30-40 ms on one core (memory bandwidth). A query
asked again and again (a dashboard, a tick) is better registered with
:meth:`SlidingWindows.standing_query`: it keeps the buckets no accepted event can change any more
(older than the watermark's bucket) as five float64 per slot, reads only the live buckets per call
(about 1-3 ms over 60,000 slots), prepares the next query bucket a few buckets per call, and gives
the same bits as :meth:`~SlidingWindows.query`.

Typical use
-----------
>>> import numpy as np
>>> w = SlidingWindows(n_slots=4, resolutions=((60_000, 60), (3_600_000, 24)),
...                    allowed_lateness_ms=30_000, half_lives_s=(60.0, 3600.0))
>>> side = w.update(np.array([0, 1_000, 2_000]), np.array([0, 1, 0]), np.array([1.0, 2.0, 3.0]))
>>> side.late_idx.tolist(), float(w.query(2_000, 3_600_000, decay=Decay.exponential(600.0))["mean"][0])
([], 2.0)
"""

from __future__ import annotations

import numpy as np

from kernels import ewm as _ke
from kernels import windows as _kw
from telcoanalytics.windows.decay import BatchStatus, Decay, EWStats, as_decay, check_batch, check_groups, check_slots

STAT_FIELDS = ("count", "sum", "mean", "var", "std", "min", "max", "rate_per_s", "sum_per_s")
STATS_DTYPE = np.dtype([(f, "f8") for f in STAT_FIELDS])
"""Result of :meth:`SlidingWindows.query`, one row per slot: weighted count, sum, mean,
population variance and std; min and max (unweighted, over buckets with weight > 0); events per
second and value per second over the weighted exposure. Empty: count/sum/rates 0, others NaN."""

DEFAULT_RESOLUTIONS = ((1_000, 120), (60_000, 120), (3_600_000, 48), (86_400_000, 35))
"""1 s x 120, 1 min x 120, 1 h x 48, 1 day x 35."""

_MIN_DEDUP_CAPACITY = 1024


class SlidingWindows:
    """Per-slot sliding windows at several resolutions, with decay queries and side output.

    Parameters
    ----------
    n_slots : int
        Number of dense slots (e.g. ``n_elements * n_metrics``).
    resolutions : sequence of (width_ms, n_buckets)
        One ring per pair, e.g. ``((60_000, 120), (3_600_000, 48))``.
    allowed_lateness_ms : int
        Events older than ``max event time - allowed_lateness_ms`` go to the side output.
    half_lives_s : sequence of float
        Half-lives of the continuous EW statistics updated together with the rings (may be
        empty). ``inf`` gives plain running sums.
    dedup : bool
        Track record ids (passed to :meth:`update`) and drop repeats within the lateness.

    Raises
    ------
    ValueError
        For non-positive sizes, widths or lateness, or malformed resolutions.

    Examples
    --------
    >>> w = SlidingWindows(n_slots=2, resolutions=((60_000, 10),), allowed_lateness_ms=0)
    >>> st = w.update(np.array([0, 30_000, 90_000]), np.array([0, 0, 1]), np.array([1.0, 3.0, 5.0]))
    >>> q = w.query(t_query_ms=90_000, span_ms=120_000)
    >>> q["count"].tolist(), q["mean"].tolist()
    ([2.0, 1.0], [2.0, 5.0])
    """

    def __init__(
        self,
        n_slots: int,
        resolutions=DEFAULT_RESOLUTIONS,
        allowed_lateness_ms: int = 0,
        half_lives_s=(),
        dedup: bool = False,
    ):
        n_slots = int(n_slots)
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        res = np.asarray(resolutions, dtype=np.float64)
        if res.ndim != 2 or res.shape[1] != 2 or res.shape[0] < 1:
            raise ValueError(f"resolutions must be a sequence of (width_ms, n_buckets) pairs, got {resolutions!r}")
        if np.any(res <= 0) or np.any(res != np.round(res)):
            raise ValueError(f"resolution widths and bucket counts must be positive integers, got {res.tolist()}")
        lateness = int(allowed_lateness_ms)
        if lateness < 0:
            raise ValueError(f"allowed_lateness_ms must be >= 0, got {lateness}")
        self.n_slots = n_slots
        self.width_ms = np.ascontiguousarray(res[:, 0], dtype=np.int64)
        self.n_buckets = np.ascontiguousarray(res[:, 1], dtype=np.int64)
        self.offset = np.ascontiguousarray(
            np.concatenate([[0], np.cumsum(self.n_buckets * n_slots)[:-1]]), dtype=np.int64
        )
        self.allowed_lateness_ms = lateness
        self.dedup = bool(dedup)
        self.ew = EWStats(n_slots, half_lives_s) if len(np.atleast_1d(half_lives_s)) else None
        self.cells = np.zeros((int(self.n_buckets.sum()) * n_slots, _kw.N_AGG))
        self.cells[:, _kw.BUCKET] = np.nan
        self.clock = np.array([_kw.NO_TIME, 0], dtype=np.int64)
        self.counters = np.zeros(4, dtype=np.int64)
        self.expired = np.zeros(len(self.width_ms), dtype=np.int64)
        cap = _MIN_DEDUP_CAPACITY if self.dedup else 1
        self.dedup_keys = np.zeros(cap, dtype=np.int64)
        self.dedup_ts = np.full(cap, _kw.NO_TIME, dtype=np.int64)
        self._version = 0
        """Bumped by every change of cells other than :meth:`update` (which only writes buckets
        at or after the watermark's); standing queries rebuild when it moved."""

    # ---- properties ---------------------------------------------------------------------------
    @property
    def resolutions(self) -> list[tuple[int, int]]:
        return [(int(w), int(n)) for w, n in zip(self.width_ms, self.n_buckets)]

    @property
    def half_lives_s(self) -> np.ndarray:
        return self.ew.half_lives_s if self.ew is not None else np.zeros(0)

    @property
    def nbytes(self) -> int:
        """Bytes of all state arrays (see the module docstring for the formula)."""
        n = self.cells.nbytes + self.dedup_keys.nbytes + self.dedup_ts.nbytes
        return int(n + (self.ew.nbytes if self.ew is not None else 0))

    @property
    def max_ts_ms(self) -> int | None:
        """Largest accepted event time, None before the first event."""
        t = int(self.clock[_kw.CLOCK_MAX_TS])
        return None if t == _kw.NO_TIME else t

    @property
    def watermark_ms(self) -> int | None:
        t = self.max_ts_ms
        return None if t is None else t - self.allowed_lateness_ms

    n_accepted = property(lambda self: int(self.counters[_kw.N_ACCEPTED]))
    n_late = property(lambda self: int(self.counters[_kw.N_LATE]))
    n_duplicate = property(lambda self: int(self.counters[_kw.N_DUPLICATE]))
    n_invalid = property(lambda self: int(self.counters[_kw.N_INVALID]))

    @property
    def n_expired(self) -> np.ndarray:
        """Per resolution: accepted events older than that ring's span (see module docstring)."""
        return self.expired.copy()

    # ---- update ---------------------------------------------------------------------------------
    def update(self, ts_ms, slot, value, record_id=None) -> BatchStatus:
        """Fold a batch of events ``(ts_ms, slot, value)`` in arrival order.

        Parameters
        ----------
        ts_ms : int array (n,), event time in ms UTC
        slot : int array (n,), dense slot indices in ``0..n_slots-1``
        value : float array (n,), NaN/inf are missing data
        record_id : int array (n,), optional; required when the object was built with ``dedup=True``

        Returns
        -------
        BatchStatus
            The side output: ``status`` per event (0 accepted, 1 late, 2 duplicate, 3 invalid) with
            ``late_idx``, ``duplicate_idx``, ``invalid_idx``.

        Raises
        ------
        ValueError
            Mismatched lengths, non-integer times or slots, slots out of range, or record ids
            missing although ``dedup=True`` (or given although it is False).
        """
        ts, sl, val = check_batch(ts_ms, slot, value, self.n_slots)
        n = len(ts)
        if self.dedup:
            if record_id is None:
                raise ValueError("this SlidingWindows was built with dedup=True: pass record_id")
            rid = np.asarray(record_id)
            if rid.shape != ts.shape or rid.dtype.kind not in "iu":
                raise ValueError(
                    f"record_id must be an integer array of length {n}, got dtype {rid.dtype} shape {rid.shape}"
                )
            rid = np.ascontiguousarray(rid, dtype=np.int64)
            self._reserve_dedup(n)
        else:
            if record_id is not None:
                raise ValueError(
                    "record_id given but this SlidingWindows was built with dedup=False; "
                    "build it with dedup=True to drop duplicates"
                )
            rid = ts
        status = np.empty(n, dtype=np.int8)
        self._fold(ts, sl, val, rid, status)
        return BatchStatus(status)

    def _fold(self, ts, sl, val, rid, status) -> int:
        """The kernel call of :meth:`update` on checked arrays (contiguous int64 times and slots
        in range, float64 values, ``rid`` the record ids or any int64 array of the same length
        without dedup); ``status`` (int8, same length) receives the outcomes. Returns the
        accepted events."""
        ew_state = self.ew.state if self.ew is not None else np.zeros((1, 1))
        coef = self.ew.coef if self.ew is not None else np.zeros(0)
        table = self.ew.table if self.ew is not None else np.zeros((3, 1, 0))
        # plain tuples laid out as kernels.windows.WindowState / WindowParams / WindowBatch
        state = (self.cells, ew_state, self.clock, self.counters, self.expired, self.dedup_keys, self.dedup_ts)
        params = (
            self.width_ms,
            self.n_buckets,
            self.offset,
            self.n_slots,
            self.allowed_lateness_ms,
            self.dedup,
            coef,
            table,
        )
        n_ok = _kw.window_update(state, params, (ts, sl, val, rid), status)
        if self.ew is not None:
            self.ew.n_events += int(n_ok)
        return n_ok

    def _reserve_dedup(self, n: int) -> None:
        """Keep the record-id table at load <= 1/2 after a batch of ``n``: forget ids behind the
        watermark, then grow to a power of two if still needed."""
        cap = len(self.dedup_keys)
        fill = int(self.clock[_kw.CLOCK_DEDUP_FILL])
        if 2 * (fill + n) <= cap:
            return
        wm = self.watermark_ms
        min_ts = _kw.NO_TIME if wm is None else wm
        need = 2 * (fill + n)
        new_cap = max(_MIN_DEDUP_CAPACITY, 1 << int(need - 1).bit_length())
        keys = np.zeros(new_cap, dtype=np.int64)
        tss = np.full(new_cap, _kw.NO_TIME, dtype=np.int64)
        kept = _kw.dedup_rebuild(self.dedup_keys, self.dedup_ts, min_ts, keys, tss)
        # shrink again when pruning freed most of it
        if 4 * (kept + n) < new_cap and new_cap > _MIN_DEDUP_CAPACITY:
            small = max(_MIN_DEDUP_CAPACITY, 1 << int(2 * (kept + n) - 1).bit_length())
            k2 = np.zeros(small, dtype=np.int64)
            t2 = np.full(small, _kw.NO_TIME, dtype=np.int64)
            _kw.dedup_rebuild(keys, tss, min_ts, k2, t2)
            keys, tss = k2, t2
        self.dedup_keys, self.dedup_ts = keys, tss
        self.clock[_kw.CLOCK_DEDUP_FILL] = kept

    # ---- queries ---------------------------------------------------------------------------------
    def resolution_for(self, span_ms: int) -> int:
        """Index of the finest resolution whose ring covers ``span_ms`` in whole buckets."""
        for r in np.argsort(self.width_ms, kind="stable"):
            w, nb = int(self.width_ms[r]), int(self.n_buckets[r])
            if span_ms % w == 0 and span_ms // w <= nb:
                return int(r)
        raise ValueError(
            f"no resolution covers span_ms={span_ms} in whole buckets; resolutions are "
            f"{self.resolutions} (width_ms, n_buckets); use a span that is a multiple of a width "
            "and at most width * n_buckets, or add a resolution"
        )

    def query(self, t_query_ms: int, span_ms: int, decay=None, slots=None, resolution: int | None = None) -> np.ndarray:
        """Weighted statistics per slot over the last ``span_ms`` up to ``t_query_ms``.

        Parameters
        ----------
        t_query_ms : int
            Query time; its bucket is the current one (age 0, counted up to ``t_query_ms``).
        span_ms : int
            Length of the span, a multiple of the resolution's width and at most its ring length.
        decay : Decay, callable of age_s, weight vector, or None
            Weight per bucket age; see :mod:`telcoanalytics.windows.decay` for how ages are defined.
        slots : int array, optional
            Slots to report (default all).
        resolution : int, optional
            Resolution index; default :meth:`resolution_for` ``(span_ms)``.

        Returns
        -------
        numpy structured array of ``STATS_DTYPE``, one row per requested slot.

        Raises
        ------
        ValueError
            Span not covered, resolution out of range, invalid slots or decay weights.

        Notes
        -----
        Buckets are whole: a query time before the newest event still counts the events of its
        own bucket after it. Buckets older than a ring's span relative to the newest event have
        been recycled and count as empty.
        """
        r, n_span = self._span_resolution(span_ms, resolution)
        w = int(self.width_ms[r])
        weights = as_decay(decay).weights(n_span, w / 1000.0)
        sl = check_slots(slots, self.n_slots)
        out = np.empty((len(sl), len(STAT_FIELDS)))
        _kw.window_query(
            self.cells, int(self.offset[r]), int(self.n_buckets[r]), self.n_slots, w, int(t_query_ms), weights, sl, out
        )
        return out.view(STATS_DTYPE).reshape(len(sl))

    def _span_resolution(self, span_ms, resolution) -> tuple[int, int]:
        """Validated ``(resolution index, number of buckets)`` of a query span."""
        span_ms = int(span_ms)
        if span_ms <= 0:
            raise ValueError(f"span_ms must be positive, got {span_ms}")
        if resolution is None:
            r = self.resolution_for(span_ms)
        else:
            r = int(resolution)
            if not 0 <= r < len(self.width_ms):
                raise ValueError(f"resolution {r} out of range 0..{len(self.width_ms) - 1}")
            w, nb = int(self.width_ms[r]), int(self.n_buckets[r])
            if span_ms % w or span_ms // w > nb:
                raise ValueError(
                    f"span_ms={span_ms} is not a whole number of buckets of resolution {r} (width {w} ms, {nb} buckets)"
                )
        return r, span_ms // int(self.width_ms[r])

    def standing_query(
        self, span_ms: int, decay=None, slots=None, resolution: int | None = None, spread_buckets: int = 4
    ) -> StandingQuery:
        """Register a query that is asked again and again (a dashboard, an SLA tick).

        The returned :class:`StandingQuery` ``sq(t_query_ms)`` gives exactly (bit for bit) what
        ``query(t_query_ms, span_ms, decay, slots, resolution)`` gives, without reading the whole
        span per call: the buckets no accepted event can change any more (older than the
        watermark's bucket) are kept as per-slot partial aggregates, each call reads only the
        live buckets, and folds at least ``spread_buckets`` settled buckets ahead for the next
        query bucket. See :class:`StandingQuery`.
        """
        return StandingQuery(
            self, span_ms, decay=decay, slots=slots, resolution=resolution, spread_buckets=spread_buckets
        )

    def ew_values(self, t_query_ms: int, slots=None) -> np.ndarray:
        """Continuous EW statistics (``EW_DTYPE``, shape ``(n_q, n_half_lives)``)."""
        if self.ew is None:
            raise ValueError("this SlidingWindows has no continuous EW state; pass half_lives_s=(...)")
        return self.ew.values(t_query_ms, slots)

    # ---- merge / roll-up / checkpoint ------------------------------------------------------------
    def _check_compatible(self, other) -> None:
        if not isinstance(other, SlidingWindows):
            raise TypeError(f"can only merge SlidingWindows, got {type(other).__name__}")
        if other.resolutions != self.resolutions or not np.array_equal(other.half_lives_s, self.half_lives_s):
            raise ValueError(
                f"cannot merge windows with resolutions {other.resolutions} / half-lives "
                f"{other.half_lives_s.tolist()} into {self.resolutions} / "
                f"{self.half_lives_s.tolist()}"
            )

    def merge(self, other: SlidingWindows) -> SlidingWindows:
        """Merge another partition's state (same slots, resolutions, half-lives) into this one.

        Cells of the same bucket combine (Chan), the newer bucket wins otherwise; clocks take the
        maximum; counters add; record-id tables are united. Returns self.
        """
        self._check_compatible(other)
        self._version += 1  # settled buckets change: standing queries rebuild
        if other.n_slots != self.n_slots:
            raise ValueError(
                f"cannot merge windows over {other.n_slots} slots into {self.n_slots} slots; "
                "use rollup() to change the slot space"
            )
        ident = np.arange(self.n_slots, dtype=np.int64)
        _kw.window_merge(
            other.cells, other.n_slots, ident, self.n_buckets, other.offset, self.offset, self.n_slots, self.cells
        )
        if self.ew is not None:
            _ke.ewm_merge(other.ew.state, ident, self.ew.coef, self.ew.state)
            self.ew.n_events += other.ew.n_events
        mt = max(int(self.clock[0]), int(other.clock[0]))
        self.clock[_kw.CLOCK_MAX_TS] = mt
        self.counters += other.counters
        self.expired += other.expired
        if self.dedup and other.dedup:
            self._reserve_dedup(int(other.clock[_kw.CLOCK_DEDUP_FILL]))
            live = other.dedup_ts != _kw.NO_TIME
            k, t = other.dedup_keys[live], other.dedup_ts[live]
            st = np.empty(len(k), dtype=np.int8)
            _kw.dedup_insert(k, t, self.dedup_keys, self.dedup_ts, self.clock, st)
        return self

    def rollup(self, group_of_slot, n_groups: int) -> SlidingWindows:
        """A new windows object with one slot per group (e.g. site from elements), merging the
        slots of each group; ``group_of_slot[s]`` is the group of slot ``s``.

        Examples
        --------
        With slots ``element * n_metrics + metric`` and a topology ``topo``::

            site = topo.element_to("site")
            g = site[np.arange(w.n_slots) // n_metrics] * n_metrics + np.arange(w.n_slots) % n_metrics
            sites = w.rollup(g, topo.n_nodes("site") * n_metrics)
        """
        g = check_groups(group_of_slot, self.n_slots, n_groups)
        out = SlidingWindows(n_groups, self.resolutions, self.allowed_lateness_ms, self.half_lives_s, dedup=False)
        _kw.window_merge(self.cells, self.n_slots, g, self.n_buckets, self.offset, out.offset, out.n_slots, out.cells)
        if self.ew is not None:
            _ke.ewm_merge(self.ew.state, g, self.ew.coef, out.ew.state)
            out.ew.n_events = self.ew.n_events
        out.clock[_kw.CLOCK_MAX_TS] = self.clock[_kw.CLOCK_MAX_TS]
        out.counters[:] = self.counters
        out.expired[:] = self.expired
        return out

    def to_state(self) -> dict:
        """Checkpoint as a dict of numpy arrays and plain scalars."""
        d = {
            "kind": "SlidingWindows",
            "n_slots": self.n_slots,
            "width_ms": self.width_ms.copy(),
            "n_buckets": self.n_buckets.copy(),
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "dedup": self.dedup,
            "cells": self.cells.copy(),
            "clock": self.clock.copy(),
            "counters": self.counters.copy(),
            "expired": self.expired.copy(),
            "dedup_keys": self.dedup_keys.copy(),
            "dedup_ts": self.dedup_ts.copy(),
            "half_lives_s": self.half_lives_s.copy(),
        }
        if self.ew is not None:
            d["ew_state"] = self.ew.state.copy()
            d["ew_n_events"] = self.ew.n_events
        return d

    @classmethod
    def from_state(cls, d: dict) -> SlidingWindows:
        """Restore from :meth:`to_state`."""
        if d.get("kind") != "SlidingWindows":
            raise ValueError(f"not a SlidingWindows state (kind={d.get('kind')!r})")
        res = list(zip(np.asarray(d["width_ms"]).tolist(), np.asarray(d["n_buckets"]).tolist()))
        w = cls(int(d["n_slots"]), res, int(d["allowed_lateness_ms"]), d["half_lives_s"], bool(d["dedup"]))
        cells = np.asarray(d["cells"], dtype=np.float64)
        if cells.shape != w.cells.shape:
            raise ValueError(f"cells has shape {cells.shape}, expected {w.cells.shape} for these resolutions")
        w.cells[...] = cells
        w.clock[:] = d["clock"]
        w.counters[:] = d["counters"]
        w.expired[:] = d["expired"]
        w.dedup_keys = np.array(d["dedup_keys"], dtype=np.int64)
        w.dedup_ts = np.array(d["dedup_ts"], dtype=np.int64)
        if w.ew is not None:
            w.ew.state[...] = np.asarray(d["ew_state"], dtype=np.float64)
            w.ew.n_events = int(d["ew_n_events"])
        return w


class StandingQuery:
    """A registered query over one span of :class:`SlidingWindows`, fast when asked repeatedly.

    Build it with :meth:`SlidingWindows.standing_query`. ``sq(t_query_ms)`` returns the same
    ``STATS_DTYPE`` rows as ``windows.query(t_query_ms, span_ms, decay, slots, resolution)``, bit
    for bit, whatever happened in between (updates, late events, merges).

    How
    ---
    An accepted event is never older than ``watermark = max event time - allowed_lateness_ms``,
    and the watermark only moves forward. So once the buckets of a query older than the
    watermark's bucket ``s0`` have been folded (oldest first, as :meth:`SlidingWindows.query`
    folds them), that partial aggregate (weighted count, mean, M2, min, max: five float64 per
    slot) stays valid. Each call then reads only the live buckets ``s0 .. bq`` (one or two when
    the lateness is shorter than a bucket) and continues the fold from the kept aggregate.

    When the query time moves to the next bucket, every bucket's age (so its weight) changes.
    To avoid reading the whole span at that moment, each call also folds settled buckets,
    oldest first, into the aggregate for the *next* query bucket: at least ``spread_buckets``,
    and as many as needed to be done when half of the current bucket has passed (so the work
    spreads over the calls whatever their rate). The first call in the next bucket finishes it
    (the few buckets left) instead of starting over. A full read of the span (``n_builds``
    counts them) remains for a first call, a jump of more than one bucket, a
    :meth:`SlidingWindows.merge` (it may change settled buckets), or a ring that has recycled a
    kept bucket.

    Memory: ``nbytes = 80 * n_q`` (``n_q`` the reported slots: two sets of five float64), beside
    the windows' own state.

    Parameters
    ----------
    windows : SlidingWindows
    span_ms, decay, slots, resolution
        As for :meth:`SlidingWindows.query`.
    spread_buckets : int
        Settled buckets folded ahead at least per call for the next query bucket (0: no
        look-ahead at all).

    Notes
    -----
    Writing into ``windows.cells`` directly (not through ``update``/``merge``) is not seen; call
    :meth:`invalidate` after doing so. A query time ahead of the newest event reads its
    future buckets live, as they may still receive events.

    Examples
    --------
    >>> w = SlidingWindows(n_slots=2, resolutions=((60_000, 60),), allowed_lateness_ms=5_000)
    >>> _ = w.update(np.array([0, 70_000]), np.array([0, 1]), np.array([1.0, 3.0]))
    >>> sq = w.standing_query(3_600_000, decay=Decay.exponential(600.0))
    >>> _ = w.update(np.array([80_000]), np.array([0]), np.array([5.0]))
    >>> bool(np.array_equal(sq(80_000), w.query(80_000, 3_600_000, decay=Decay.exponential(600.0))))
    True
    """

    def __init__(
        self, windows: SlidingWindows, span_ms: int, decay=None, slots=None, resolution=None, spread_buckets: int = 4
    ):
        if not isinstance(windows, SlidingWindows):
            raise TypeError(f"windows must be a SlidingWindows, got {type(windows).__name__}")
        spread = int(spread_buckets)
        if spread < 0:
            raise ValueError(f"spread_buckets must be >= 0, got {spread_buckets}")
        self.windows = windows
        self.span_ms = int(span_ms)
        self.resolution, self.n_span = windows._span_resolution(span_ms, resolution)
        self.width_ms = int(windows.width_ms[self.resolution])
        self.decay = as_decay(decay)
        self.weights = self.decay.weights(self.n_span, self.width_ms / 1000.0)
        self.slots = check_slots(slots, windows.n_slots)
        self.spread_buckets = spread
        self._acc = np.empty((5, len(self.slots)))
        self._key = None  # (query bucket, windows version) of the kept aggregate
        self._k_live = self.n_span  # ages below this are read at each call
        self._nxt = np.empty((5, len(self.slots)))
        self._nxt_key = None  # (next query bucket, version) being folded ahead
        self._nxt_b = 0  # next absolute bucket to fold into _nxt
        self.n_builds = 0
        self.n_calls = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the kept per-slot aggregates (``80 * n_q``)."""
        return int(self._acc.nbytes + self._nxt.nbytes)

    def invalidate(self) -> None:
        """Forget the kept aggregates: the next call reads the whole span again."""
        self._key = None
        self._nxt_key = None

    def _fold(self, acc, bq: int, b_from: int, b_to: int) -> None:
        """Fold the buckets ``b_from .. b_to`` (ages relative to ``bq``) into ``acc``, oldest first."""
        if b_to < b_from:
            return
        w = self.windows
        r = self.resolution
        _kw.window_accumulate(
            w.cells,
            int(w.offset[r]),
            int(w.n_buckets[r]),
            w.n_slots,
            bq,
            bq - b_from + 1,
            bq - b_to,
            self.weights,
            self.slots,
            acc,
        )

    @staticmethod
    def _reset(acc) -> None:
        acc[...] = np.array(_kw.ACC_EMPTY)[:, None]

    def __call__(self, t_query_ms: int) -> np.ndarray:
        """Statistics per slot at ``t_query_ms`` (``STATS_DTYPE``, see :meth:`SlidingWindows.query`)."""
        w = self.windows
        r = self.resolution
        t = int(t_query_ms)
        bq = t // self.width_ms
        nb = int(w.n_buckets[r])
        key = (bq, w._version)
        wm = w.watermark_ms
        # buckets older than s0 (the watermark's bucket) can no longer change
        s0 = None if wm is None else wm // self.width_ms
        k_live = self.n_span if s0 is None else int(min(self.n_span, max(0, bq - s0 + 1)))
        settled_to = bq - k_live  # newest bucket of the kept part
        # the ring recycles the position of bucket b when a bucket b + nb arrives
        recycled = s0 is not None and (wm + w.allowed_lateness_ms) // self.width_ms - nb >= bq - self.n_span + 1
        if recycled or self._key != key:
            if not recycled and self._nxt_key == key and self._nxt_b <= settled_to + 1:
                # prepared during the previous bucket: fold the settled buckets still missing
                self._fold(self._nxt, bq, self._nxt_b, settled_to)
                self._acc, self._nxt = self._nxt, self._acc
            else:
                self._reset(self._acc)
                self._fold(self._acc, bq, bq - self.n_span + 1, settled_to)
                self.n_builds += 1
            self._k_live = k_live
            self._nxt_key = None
            # a kept bucket that the ring has already recycled must be read again next time
            self._key = None if recycled else key
        if self._key is not None and self.spread_buckets and s0 is not None:
            nxt = bq + 1
            if self._nxt_key != (nxt, key[1]):
                self._reset(self._nxt)
                self._nxt_key = (nxt, key[1])
                self._nxt_b = nxt - self.n_span + 1
            # at least spread_buckets per call, and enough to be done by mid-bucket whatever the
            # call rate (calls every 10 s on 1 min buckets fold 20 buckets each, not 60 at once)
            elapsed = (t - bq * self.width_ms) / self.width_ms
            due = nxt - self.n_span + int(np.ceil(min(1.0, 2.0 * elapsed) * self.n_span))
            b_to = min(s0 - 1, nxt, max(self._nxt_b + self.spread_buckets - 1, due))
            self._fold(self._nxt, nxt, self._nxt_b, b_to)
            self._nxt_b = max(self._nxt_b, b_to + 1)
        self.n_calls += 1
        # the live buckets continue a copy of the kept fold, in the same kernel as a full query
        live = self._acc.copy()
        self._fold(live, bq, bq - self._k_live + 1, bq)
        out = np.empty((len(self.slots), len(STAT_FIELDS)))
        _kw.window_finish(live, _kw.window_exposure_ms(self.width_ms, t, self.weights), out)
        return out.view(STATS_DTYPE).reshape(len(self.slots))


def topology_groups(topology, level: str, n_metrics: int = 1) -> tuple[np.ndarray, int]:
    """Slot -> group mapping for rolling ``element * n_metrics + metric`` slots up to ``level``.

    Returns ``(group_of_slot, n_groups)`` with groups ``node * n_metrics + metric`` for the
    dense nodes of ``level``; pass them to ``rollup`` of :class:`SlidingWindows`,
    :class:`~telcoanalytics.windows.decay.EWStats` or :class:`~telcoanalytics.windows.sketch.QuantileSketch`.

    Examples
    --------
    >>> from telcoanalytics.topology.model import Topology
    >>> topo = Topology.from_columns(np.array([11, 12, 13]), {"site": np.array([1, 1, 2])})
    >>> g, n = topology_groups(topo, "site", n_metrics=2)
    >>> g.tolist(), n
    ([0, 1, 0, 1, 2, 3], 4)
    """
    n_metrics = int(n_metrics)
    if n_metrics < 1:
        raise ValueError(f"n_metrics must be >= 1, got {n_metrics}")
    node = topology.element_to(level)
    slots = np.arange(topology.n_elements * n_metrics, dtype=np.int64)
    g = node[slots // n_metrics] * n_metrics + slots % n_metrics
    return np.ascontiguousarray(g, dtype=np.int64), topology.n_nodes(level) * n_metrics


def busiest_summary(
    windows: SlidingWindows,
    topology=None,
    k: int = 5,
    span_ms: int | None = None,
    t_query_ms: int | None = None,
    decay: Decay | None = None,
    n_metrics: int = 1,
    metric_names=None,
) -> list[str]:
    """One line of windowed statistics for each of the ``k`` busiest slots (largest count).

    Parameters
    ----------
    windows : SlidingWindows
    topology : Topology, optional
        When given, slot ``s`` is shown as element id ``topology.ids[element][s // n_metrics]``.
    k : int
    span_ms : int, optional
        Default: the whole ring of the coarsest resolution.
    t_query_ms : int, optional
        Default: the newest accepted event time.
    decay : Decay, optional
    n_metrics : int
        Metrics per element in the slot layout ``element * n_metrics + metric``.
    metric_names : sequence of str, optional
        Names of the metric codes (e.g. ``records.METRICS``).

    Returns
    -------
    list of str, busiest first (empty when nothing was accepted).
    """
    t = windows.max_ts_ms if t_query_ms is None else int(t_query_ms)
    if t is None:
        return []
    if span_ms is None:
        r = int(np.argmax(windows.width_ms * windows.n_buckets))
        span_ms = int(windows.width_ms[r] * windows.n_buckets[r])
    q = windows.query(t, span_ms, decay=decay)
    order = np.argsort(-q["count"], kind="stable")[: int(k)]
    lines = []
    for s in order:
        if q["count"][s] <= 0:
            break
        e, m = divmod(int(s), int(n_metrics))
        who = f"element {int(topology.ids[topology.element_level][e])}" if topology is not None else f"slot {int(s)}"
        if n_metrics > 1 or metric_names is not None:
            who += f" {metric_names[m] if metric_names is not None else 'metric ' + str(m)}"
        row = q[s]
        lines.append(
            f"{who}: n={row['count']:.0f} mean={row['mean']:.4g} std={row['std']:.4g} "
            f"min={row['min']:.4g} max={row['max']:.4g} rate={row['rate_per_s']:.4g}/s "
            f"over {span_ms / 1000:g}s"
        )
    return lines
