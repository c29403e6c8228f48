"""Duplicate detection by natural key with bounded memory: the key sets behind ``Ingestor``.

Two structures, chosen per source by whether its natural key (``records.NATURAL_KEY``) contains
the event time:

* :class:`TimeBucketKeySet` (equipment counters, flows, QoS probes: the key holds the event
  time, so a duplicate has the same event time as its first copy). Keys are kept in one small
  hash table per event-time bucket (default ``horizon / 24``: 5 min for the 2 h horizon), and a
  row is checked against its own bucket only. The rows of a batch fall in a few recent buckets,
  so their probes hit tables that stay in the CPU caches; buckets older than the horizon behind
  the robust clock are dropped whole.
* :class:`DedupSet` (CDR record ids, complaint ticket ids: the key says nothing of the time).
  Two generations of one hash table on an event-time horizon.

Guarantees (tested against a plain Python set): a key is never reported as a duplicate unless
it was inserted before; see each class for when a duplicate is always caught.
"""

from __future__ import annotations

import numpy as np

from kernels.dedup import (
    BUCKET_SLACK,
    EMPTY,
    M_BUCKET,
    M_COUNT,
    OUT_DUP,
    OUT_OUTSIDE,
    bucketset_insert,
    bucketset_move,
    hashset_contains,
    hashset_insert,
    hashset_rehash,
    recent_clock_observe,
)
from kernels.dedup_batch import (
    D_CODE,
    D_FIELD,
    D_HORIZON,
    D_NEED,
    D_SIZE,
    D_START,
    D_STEP,
    G_ACC,
    G_BUCKET_MS,
    G_CLOCK,
    G_CODE,
    G_EXTEND,
    G_FIELD,
    G_HI,
    G_HORIZON,
    G_KEEP,
    G_LO,
    G_N_OUT,
    G_NEED,
    G_RLO,
    G_SIZE,
    G_STEP,
    MAX_RING_BUCKETS,
    NEED_CAP,
    NEED_EMPTY,
    NEED_RING,
    NEED_ROTATE,
    _clock_batch,
    large_call_stats,
    valid_ends,
)

DEFAULT_DEDUP_HORIZON_MS = 24 * 3600 * 1000
"""Duplicate CDR record ids are remembered for at least this much event time (see DedupSet)."""

_NONE = int(np.iinfo(np.int64).min)

__all__ = ["DEFAULT_DEDUP_HORIZON_MS", "DedupClock", "DedupSet", "TimeBucketKeySet"]


def _check_horizon(horizon_ms):
    if horizon_ms is not None and (
        not isinstance(horizon_ms, (int, np.integer)) or isinstance(horizon_ms, bool) or horizon_ms <= 0
    ):
        raise ValueError(f"dedup_horizon_ms must be a positive int (ms) or None, got {horizon_ms!r}")


class DedupSet:
    """Set of int64 ids seen, with bounded memory through an event-time horizon.

    Two generations of Numba open-addressing hash tables (``kernels.dedup``): new ids go into
    the current one; a lookup checks both. When the largest event time seen passes the current
    generation's start by ``horizon_ms``, the previous generation is forgotten and the current
    becomes the previous. Tables grow (powers of two, load factor <= 0.7) as needed.

    Parameters
    ----------
    horizon_ms : int or None
        None remembers every id for the object's lifetime (memory grows with distinct ids).

    Notes
    -----
    A duplicate is always detected when it arrives before the largest event time seen has
    advanced ``horizon_ms`` past the time at which the first copy was inserted; ids are
    certainly forgotten after ``2 * horizon_ms``. Memory is 8 bytes per slot, 11-23 bytes per
    id seen in the last two horizons.
    """

    def __init__(self, horizon_ms: int | None = DEFAULT_DEDUP_HORIZON_MS, initial_capacity: int = 1 << 12):
        _check_horizon(horizon_ms)
        self.horizon_ms = None if horizon_ms is None else int(horizon_ms)
        cap = 1 << max(4, int(initial_capacity - 1).bit_length())
        self.cur = np.full(cap, EMPTY, dtype=np.int64)
        self.cur_meta = np.zeros(2, dtype=np.int64)
        self.prev = np.full(16, EMPTY, dtype=np.int64)
        self.prev_meta = np.zeros(2, dtype=np.int64)
        self.cur_start_ms: int | None = None
        self._ds = np.zeros(D_SIZE, dtype=np.int64)  # bookkeeping of the compiled path

    def __len__(self) -> int:
        return int(self.cur_meta[0] + self.prev_meta[0])

    def _rotate(self, t_max: int) -> None:
        if self.horizon_ms is None:
            return
        if self.cur_start_ms is None:
            self.cur_start_ms = t_max
            return
        if t_max >= self.cur_start_ms + self.horizon_ms:
            if t_max >= self.cur_start_ms + 2 * self.horizon_ms:
                self.prev = np.full(16, EMPTY, dtype=np.int64)
                self.prev_meta = np.zeros(2, dtype=np.int64)
            else:
                self.prev, self.prev_meta = self.cur, self.cur_meta
            self.cur = np.full(max(16, len(self.prev) // 2), EMPTY, dtype=np.int64)
            self.cur_meta = np.zeros(2, dtype=np.int64)
            self.cur_start_ms = t_max

    EAGER_GROWTH_SLOTS = 1 << 20
    """A table smaller than this grows to at least 4 times its slots (up to this size), not 2: a
    generation filling from the small initial table (a day of record ids) is rebuilt half as
    often (each step a new table and a rehash of every key), for at most 8 MiB of slack."""

    def _reserve(self, n_more: int) -> None:
        need = int(self.cur_meta[0]) + n_more
        if 10 * need > 7 * len(self.cur):  # keep the load factor <= 0.7
            cap = 1 << ((10 * need) // 7).bit_length()
            if len(self.cur) < self.EAGER_GROWTH_SLOTS:
                cap = max(cap, min(4 * len(self.cur), self.EAGER_GROWTH_SLOTS))
            new = np.full(cap, EMPTY, dtype=np.int64)
            hashset_rehash(self.cur, new)
            self.cur = new

    def check_insert(self, keys: np.ndarray, active: np.ndarray, t_max_ms: int | None = None) -> np.ndarray:
        """Mark active keys already seen (before, or earlier in ``keys``), and remember the
        first copies.

        Parameters
        ----------
        keys : int64 array (n,)
        active : bool array (n,)
            Rows to check and insert.
        t_max_ms : int, optional
            Largest event time of the active rows (drives the horizon).

        Returns
        -------
        bool array (n,)
            True for active duplicates.
        """
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        active = np.ascontiguousarray(active, dtype=np.bool_)
        dup = np.zeros(len(keys), dtype=np.bool_)
        n_active = int(np.count_nonzero(active))
        if n_active == 0:
            return dup
        if t_max_ms is not None:
            self._rotate(int(t_max_ms))
        if self.prev_meta[0]:
            hashset_contains(keys, active, self.prev, self.prev_meta, dup)
            active = active & ~dup
        self._reserve(n_active)
        hashset_insert(keys, active, self.cur, self.cur_meta, dup)
        return dup

    def check_rows(self, rows, kernel, clock: DedupClock, mark: tuple, out_code, out_field) -> None:
        """The duplicate check of one batch of records in one compiled call: the same decisions
        as :meth:`check_insert` with the clock of ``clock`` after the batch (``kernel``: the
        source's ``kernels.dedup.idset_dedup_*``; ``mark``, ``out_code``, ``out_field`` as in
        :meth:`TimeBucketKeySet.check_rows`)."""
        ds = self._ds
        ds[D_HORIZON] = -1 if self.horizon_ms is None else self.horizon_ms
        ds[D_START] = EMPTY if self.cur_start_ms is None else self.cur_start_ms
        ds[D_CODE], ds[D_FIELD] = mark
        ds[D_STEP] = 0
        n = len(rows)
        start = 0
        while True:
            args = (clock.a, ds, self.cur, self.cur_meta, self.prev, self.prev_meta, out_code, out_field)
            start = int(kernel(rows, start, *args))
            if start >= n:
                break
            need = int(ds[D_NEED])
            if need == NEED_EMPTY:
                break
            if need == NEED_ROTATE:
                self._rotate(int(clock.a[2]))
                ds[D_START] = self.cur_start_ms
            else:  # NEED_GROW: room for every row left
                self._reserve(n - start)
        if ds[D_START] != EMPTY:
            self.cur_start_ms = int(ds[D_START])

    def contains(self, keys: np.ndarray, active: np.ndarray, t_max_ms: int | None = None) -> np.ndarray:
        """Mark the active keys held, without inserting (``t_max_ms`` moves the horizon first)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        active = np.ascontiguousarray(active, dtype=np.bool_)
        found = np.zeros(len(keys), dtype=np.bool_)
        if t_max_ms is not None:
            self._rotate(int(t_max_ms))
        for table, meta in ((self.prev, self.prev_meta), (self.cur, self.cur_meta)):
            if meta[0]:
                hashset_contains(keys, active, table, meta, found)
        return found

    def to_state(self) -> dict:
        return {
            "horizon_ms": -1 if self.horizon_ms is None else self.horizon_ms,
            "cur_start_ms": np.iinfo(np.int64).min if self.cur_start_ms is None else self.cur_start_ms,
            "cur_keys": self.cur[self.cur != EMPTY],
            "cur_meta": self.cur_meta.copy(),
            "prev_keys": self.prev[self.prev != EMPTY],
            "prev_meta": self.prev_meta.copy(),
        }

    @classmethod
    def from_state(cls, d: dict) -> DedupSet:
        h = int(d["horizon_ms"])
        s = cls(None if h < 0 else h)
        cs = int(d["cur_start_ms"])
        s.cur_start_ms = None if cs == np.iinfo(np.int64).min else cs
        for name in ("cur", "prev"):
            keys = np.asarray(d[f"{name}_keys"], dtype=np.int64)
            meta = np.asarray(d[f"{name}_meta"], dtype=np.int64).copy()
            table = np.full(1 << max(4, (2 * len(keys)).bit_length()), EMPTY, dtype=np.int64)
            m = np.zeros(2, dtype=np.int64)
            hashset_insert(keys, np.ones(len(keys), dtype=np.bool_), table, m, np.zeros(len(keys), dtype=np.bool_))
            m[1] = meta[1]
            m[0] = len(keys) + meta[1]
            setattr(s, name, table)
            setattr(s, f"{name}_meta", m)
        return s


class DedupClock:
    """The event-time clock that moves the duplicate horizon: after each batch, the latest of its
    previous value and the ``outliers + 1``-th largest of the last ``window`` valid event times
    (so up to ``outliers`` rows dated ahead among them cannot move it; the rule of
    ``telcoanalytics.ingest.clock.EventClock``, in one compiled call per batch).

    Examples
    --------
    >>> c = DedupClock(window=4, outliers=1)
    >>> c.observe(np.array([10, 20, 10**9, 30]), np.ones(4, bool))
    30
    """

    def __init__(self, window: int = 64, outliers: int = 7):
        if not 0 <= outliers < window:
            raise ValueError(f"need 0 <= outliers < window, got outliers={outliers!r} window={window!r}")
        self.a = np.zeros(4 + window, dtype=np.int64)  # [n_held, head, clock, outliers, recent times]
        self.a[2] = EMPTY
        self.a[3] = outliers

    @property
    def now_ms(self) -> int | None:
        """The clock (None before ``outliers + 1`` valid rows were seen)."""
        c = int(self.a[2])
        return None if c == EMPTY else c

    def observe(self, t_ms: np.ndarray, ok: np.ndarray) -> int | None:
        """Advance with one batch's event times (arrival order) where ``ok``; returns :attr:`now_ms`."""
        c = int(recent_clock_observe(t_ms, ok, self.a))
        return None if c == EMPTY else c


def _empty_ring(n_ring: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
    meta = np.zeros((n_ring, 3), dtype=np.int64)
    meta[:, M_BUCKET] = EMPTY
    return np.empty((n_ring, cap), dtype=np.int64), meta  # a row is cleared when it takes a bucket


def _pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


class TimeBucketKeySet:
    """Keys that contain their row's event time, kept in one hash table per event-time bucket.

    A row's key is looked up (and inserted) in the table of its own bucket,
    ``t_ms // bucket_ms``: a duplicate has the first copy's event time, so it meets it there.
    The tables are the rows of one 2-D array used as a ring over bucket numbers; a batch's
    rows fall in a few recent buckets, so the probes stay in the CPU caches.

    Parameters
    ----------
    horizon_ms : int
        Keys are kept while their event time is at most this far behind the clock.
    bucket_ms : int, optional
        Bucket width; default ``horizon_ms // 24`` (5 min for a 2 h horizon), at least 1 ms.

    Notes
    -----
    The *clock* is what the caller passes (``Ingestor`` passes its robust event-time clock,
    which a few rows dated far ahead do not move). After each call the buckets that end more
    than ``horizon_ms`` behind the clock are dropped; the ring spans from there to
    ``horizon_ms`` ahead of the clock.

    * A duplicate whose event time is at most ``horizon_ms`` behind the clock is always caught
      (its bucket is still held), whatever the time between the copies.
    * Rows outside the ring when they arrive (older than that, or more than ``horizon_ms``
      ahead of the clock) go to a small :class:`DedupSet` with the same horizon, in arrival
      time: their duplicates are caught when they arrive before the clock advanced
      ``horizon_ms`` (the guarantee of :class:`DedupSet`). A row dated ahead moves into its
      bucket when the clock comes within reach, so a later copy is caught there.
    * Memory: the buckets of about ``2 * horizon_ms`` (all of one size, the largest's capacity
      at load <= 0.35: ``kernels.dedup.BUCKET_SLACK`` times the slots of load 0.7, for cheaper
      probes), plus the rows outside the ring. A call of at least ``LARGE_CALL`` rows
      whose first and last rows are more than the horizon apart (a whole day in one array)
      holds all its rows in the ring, over at most ``MAX_BUCKETS`` buckets (its older rows
      would otherwise go one by one to the side set, a table far beyond the CPU caches): the
      buckets behind the horizon are kept until the clock has moved a horizon on (the side
      set's guarantee), then dropped and the ring shrinks. Before the clock is set (the first
      few rows) the ring starts at the oldest row. Known gap (in both paths): a row that went to
      the side set before the clock was set, because it was older than the first rows' ring, is
      missed when the ring later moves down over its bucket (a duplicate of it is accepted).
    * :meth:`check_rows` (what ``Ingestor`` uses) does a batch in one compiled call: clock,
      natural key, bucket probe and insert, duplicate mark; :meth:`check_insert` takes key
      arrays and decides the same.

    Examples
    --------
    >>> s = TimeBucketKeySet(horizon_ms=3_600_000)
    >>> t = np.array([0, 60_000, 60_000]) + 1_700_000_000_000
    >>> s.check_insert(np.array([7, 8, 8]), t, np.ones(3, bool), clock_ms=int(t[-1])).tolist()
    [False, False, True]
    """

    MAX_BUCKETS = MAX_RING_BUCKETS
    """Most buckets one call may hold (the ring's largest size)."""

    def __init__(self, horizon_ms: int, bucket_ms: int | None = None):
        _check_horizon(horizon_ms)
        if horizon_ms is None:
            raise ValueError("TimeBucketKeySet needs a horizon_ms; use DedupSet(None) to remember keys forever")
        self.horizon_ms = int(horizon_ms)
        self.bucket_ms = int(bucket_ms) if bucket_ms is not None else max(1, self.horizon_ms // 24)
        if self.bucket_ms < 1:
            raise ValueError(f"bucket_ms must be a positive int (ms), got {bucket_ms!r}")
        self.span = 2 * (-(-self.horizon_ms // self.bucket_ms)) + 3  # buckets of the ring in steady state
        self._small = _pow2(self.span)
        self.geo = np.zeros(G_SIZE, dtype=np.int64)  # geometry shared with the compiled path
        self.geo[[G_BUCKET_MS, G_HORIZON, G_LO, G_CLOCK, G_RLO, G_KEEP]] = [self.bucket_ms, self.horizon_ms] + [
            EMPTY
        ] * 4
        self.tables, self.meta = _empty_ring(_pow2(self.span), 16 * BUCKET_SLACK)
        self.side = DedupSet(self.horizon_ms, initial_capacity=16)
        self.legacy: DedupSet | None = None  # keys of a checkpoint from the one-table design
        self._pend = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))  # key, t, clock
        self.kept: int | None = None  # rows gathered by the last check_rows(compact=...) (see there)

    @property
    def lo(self) -> int | None:
        """Lowest bucket held (None before the first row)."""
        v = int(self.geo[G_LO])
        return None if v == EMPTY else v

    @lo.setter
    def lo(self, v: int | None) -> None:
        self.geo[G_LO] = EMPTY if v is None else v

    @property
    def clock_ms(self) -> int | None:
        """The event-time clock that drives the horizon (None before it is set)."""
        v = int(self.geo[G_CLOCK])
        return None if v == EMPTY else v

    @clock_ms.setter
    def clock_ms(self, v: int | None) -> None:
        self.geo[G_CLOCK] = EMPTY if v is None else v

    def _lowest(self) -> int:
        """The lowest bucket id held (buckets kept behind the horizon included)."""
        lo = int(self.geo[G_RLO]) if self.geo[G_RLO] != EMPTY else int(self.geo[G_LO])
        return lo if lo != EMPTY else _NONE + 1

    def __len__(self) -> int:
        live = self.meta[:, M_BUCKET] >= self._lowest()
        n = int(self.meta[live, M_COUNT].sum()) + len(self.side)
        return n + (len(self.legacy) if self.legacy is not None else 0)

    @property
    def nbytes(self) -> int:
        """Memory held by the tables (bytes)."""
        return self.tables.nbytes + self.meta.nbytes + self.side.cur.nbytes + self.side.prev.nbytes

    # ---- ring geometry -------------------------------------------------------------------
    def _resize(self, n_ring: int, cap: int, lo: int) -> None:
        tables, meta = _empty_ring(n_ring, cap)
        bucketset_move(self.tables, self.meta, lo, tables, meta)
        self.tables, self.meta = tables, meta

    def _insert(self, keys, t, active, out, lo: int) -> int:
        """Check and insert into the ring; returns how many active rows fell outside it."""
        geometry = np.array([self.bucket_ms, lo, 0], dtype=np.int64)
        start = 0
        while True:
            start = bucketset_insert(keys, t, active, start, geometry, self.tables, self.meta, out)
            if start >= len(keys):
                return int(geometry[2])
            self._resize(self.tables.shape[0], 2 * self.tables.shape[1], lo)  # a bucket is full

    def check_insert(self, keys, t_ms, active, clock_ms: int | None = None) -> np.ndarray:
        """Mark active keys already seen (before, or earlier in ``keys``); remember the first copies.

        Parameters
        ----------
        keys, t_ms : int64 array (n,)
            Key and event time of each row.
        active : bool array (n,)
            Rows to check and insert.
        clock_ms : int, optional
            The event-time clock after this batch (drives the horizon); None before it is set.

        Returns
        -------
        bool array (n,)
            True for active duplicates.
        """
        keys = np.asarray(keys, dtype=np.int64)
        t = np.asarray(t_ms, dtype=np.int64)
        active = np.asarray(active, dtype=np.bool_)
        n = len(keys)
        out = np.zeros(n, dtype=np.int8)
        if clock_ms is not None:
            self.clock_ms = int(clock_ms) if self.clock_ms is None else max(self.clock_ms, int(clock_ms))
        b_of = self.bucket_ms
        lo = self.lo
        if self.clock_ms is not None:
            hi = (self.clock_ms + self.horizon_ms) // b_of
        elif active.any():
            hi = int(t[active].max()) // b_of
        else:
            return out.view(np.bool_)
        if self.clock_ms is not None:  # the ring spans the horizon behind the clock to the horizon ahead
            lo = (
                (self.clock_ms - self.horizon_ms) // b_of
                if lo is None
                else max(lo, (self.clock_ms - self.horizon_ms) // b_of)
            )
        elif lo is None:  # no clock yet (the first few rows): the ring starts at the oldest
            if not active.any():
                return out.view(np.bool_)
            lo = max(min(int(t[active].min()) // b_of, hi), hi - self.MAX_BUCKETS + 1)
        lo = min(lo, hi)
        need = _pow2(hi - lo + 1)
        cap = self.tables.shape[1]
        if 10 * n > 7 * (cap // BUCKET_SLACK):  # a large call: size the tables once from its rows per bucket
            ta = t[active]
            ta = ta[(ta >= lo * b_of) & (ta < (hi + 1) * b_of)]
            if len(ta):
                span = int(ta.max()) // b_of - int(ta.min()) // b_of + 1
                cap = max(cap, BUCKET_SLACK * _pow2((10 * 2 * len(ta) // span) // 7 + 1))  # twice the mean load
        if need > self.tables.shape[0] or cap > self.tables.shape[1]:
            self._resize(max(need, self.tables.shape[0]), cap, lo)
        if len(self._pend[0]):
            self._migrate(lo, hi)
        n_outside = self._insert(keys, t, active, out, lo)
        if n_outside == 0 and self.legacy is None:
            self._advance(lo)
            return out.view(np.bool_)  # 0 or OUT_DUP (1) only
        outside = out == OUT_OUTSIDE
        dup = out == OUT_DUP
        if n_outside:
            sd = self.side.check_insert(keys, outside, self.clock_ms)
            dup |= sd
            ahead = outside & ~sd & (t // b_of > hi)
            if ahead.any():
                k, tt, c = self._pend
                at = self.clock_ms if self.clock_ms is not None else _NONE
                self._pend = (
                    np.concatenate([k, keys[ahead]]),
                    np.concatenate([tt, t[ahead]]),
                    np.concatenate([c, np.full(int(ahead.sum()), at, np.int64)]),
                )
        if self.legacy is not None:
            dup |= self.legacy.contains(keys, active & ~dup, self.clock_ms)
            if len(self.legacy) == 0:
                self.legacy = None
        self._advance(lo)
        return dup

    def check_rows(
        self, rows, kernel, clock: DedupClock, mark: tuple, out_code, out_field, keys_of, compact=None
    ) -> bool:
        """The duplicate check of one batch of records in one compiled call (clock, natural key,
        bucket probe and insert, mark), the same decisions as :meth:`check_insert` with the
        clock of ``clock`` after the batch.

        Parameters
        ----------
        rows : structured array (n,) of the source's canonical dtype
        kernel : the ring kernel (``kernels.dedup_batch.ring_dedup``, one for every source)
        clock : DedupClock, moved by the batch's rows not rejected yet
        mark : (code, field), what a duplicate gets in ``out_code`` / ``out_field``
        out_code, out_field : int8 (n,), the rows' first failure so far (0: none), updated in place
        keys_of : callable, the natural keys of some rows (for the rare rows outside the ring)
        compact : (eidx, acc, acc_eidx), optional
            Gather the kept rows as they are decided (``kernels.dedup_batch.ring_dedup_compact``,
            ``kernel`` must be it): afterwards :attr:`kept` is the number of rows of ``acc``
            (and ``acc_eidx``) that are the kept rows, -1 when every row was kept, or None when
            ``acc`` is not the answer (no row to check, or rows outside the ring).

        Returns
        -------
        bool
            False (nothing done) when rows wait ahead of the ring or a legacy table is held:
            the caller uses :meth:`check_insert`.
        """
        self.kept = None
        if self.legacy is not None or len(self._pend[0]):
            return False
        extra = () if compact is None else tuple(compact)
        g = self.geo
        g[G_CODE], g[G_FIELD] = mark
        n = len(rows)
        if n >= self.LARGE_CALL and 10 * n > 7 * (self.tables.shape[1] // BUCKET_SLACK):
            self._prepare_large(rows, clock, out_code)
        flag = np.zeros(n, dtype=np.int8)
        start = 0
        while True:
            start = int(kernel(rows, start, clock.a, g, self.tables, self.meta, out_code, out_field, flag, *extra))
            if start >= n:
                break
            need = int(g[G_NEED])
            if need == NEED_EMPTY:
                return True
            rlo = int(g[G_RLO])
            if need == NEED_RING:
                self._resize(max(_pow2(int(g[G_HI]) - rlo + 1), self.tables.shape[0]), self.tables.shape[1], rlo)
            elif need == NEED_CAP:
                self._resize(self.tables.shape[0], 2 * self.tables.shape[1], rlo)
        if g[G_N_OUT]:
            self._outside(rows, flag == OUT_OUTSIDE, int(g[G_HI]), mark, out_code, out_field, keys_of)
        elif compact is not None:
            self.kept = int(g[G_ACC])
        # the kernel moved the horizon (kernels.dedup._ring_end); the side set and the ring's size follow
        if (self.side.cur_meta[0] or self.side.prev_meta[0]) and g[G_CLOCK] != EMPTY:
            self.side._rotate(int(g[G_CLOCK]))
        if self.tables.shape[0] > self._small:
            self._advance(int(g[G_LO]))
        return True

    LARGE_CALL = 1 << 14
    """Calls of at least this many rows whose first and last rows are more than the horizon apart
    hold all their rows in the ring (see :meth:`_prepare_large`)."""

    def _prepare_large(self, rows, clock: DedupClock, out_code) -> None:
        """A large call: the clock first, then a ring that spans the call's rows (not only the
        horizon behind the clock: rows older than that would otherwise go one by one to the side
        set), its tables sized once from the rows per bucket. The buckets behind the horizon are
        kept until the clock has moved a horizon on (the guarantee of the side set)."""
        g = self.geo
        t = rows["ts_ms"]
        _clock_batch(t, out_code, clock.a)  # the batch's clock, once (the kernel does not move it again)
        c = clock.now_ms
        g[G_STEP] = 1
        if c is not None and (g[G_CLOCK] == EMPTY or c > g[G_CLOCK]):
            g[G_CLOCK] = c
        st = np.empty(6, np.int64)
        if not valid_ends(t, out_code, st):
            return  # no row left to check
        if self._sized_for(n=len(t), t_first=int(st[0]), t_last=int(st[1])):
            return  # nothing to extend, tables and ring large enough: no pass over the times
        counts = large_call_stats(t, out_code, self.bucket_ms, st)  # the valid rows' times, one compiled pass
        n_ok, t_min, t_max, t_first, t_last, in_order = (int(x) for x in st)
        if not n_ok:
            return
        b_ms, h = self.bucket_ms, self.horizon_ms
        c = self.clock_ms if self.clock_ms is not None else t_max
        hi = (c + h) // b_ms
        lo = (c - h) // b_ms if self.lo is None else max(self.lo, (c - h) // b_ms)
        first = max(t_min // b_ms, hi - self.MAX_BUCKETS + 1)
        rlo = lo if g[G_RLO] == EMPTY else min(int(g[G_RLO]), lo)
        if abs(t_last - t_first) > h and first < rlo:
            rlo = first
            g[G_RLO] = rlo
            g[G_EXTEND] = 1
        # rows per bucket b0 .. hi (exact for rows in time order; a full bucket grows the tables anyway)
        b0 = max(rlo, t_first // b_ms)
        n_edges = max(0, hi + 2 - b0)
        if n_edges <= 1:
            per = np.zeros(1, np.int64)
        elif in_order:  # the counts from the first row's bucket, cut to b0 .. hi (0 beyond)
            bf = t_first // b_ms
            per = np.append(counts[max(0, b0 - bf) : max(0, hi + 1 - bf)], 0)
        else:  # searchsorted on the times as they are (what it gives for rows out of order)
            per = np.diff(np.searchsorted(t[out_code == 0], np.arange(b0, hi + 2, dtype=np.int64) * b_ms))
        most = max(int(per.max()), n_ok // max(1, n_edges - 1))
        cap = max(self.tables.shape[1], BUCKET_SLACK * _pow2((10 * most) // 7 + 2))
        n_ring = max(self.tables.shape[0], _pow2(hi - min(rlo, lo) + 1))
        if cap > self.tables.shape[1] or n_ring > self.tables.shape[0]:
            self._resize(n_ring, cap, min(rlo, lo))

    def _sized_for(self, n: int, t_first: int, t_last: int) -> bool:
        """Whether a large call whose first and last valid rows have times ``t_first`` and
        ``t_last`` can skip :meth:`_prepare_large`'s pass over its times: they are at most the
        horizon apart (so the ring is not extended behind it: the pass would decide nothing), the
        ring spans the horizon each side of the clock and the tables hold 1.25 times the call's
        mean rows per bucket (a batch of a steady feed after the first; a fuller bucket grows
        its table in the kernel, as for any call)."""
        g = self.geo
        b_ms, h = self.bucket_ms, self.horizon_ms
        c = int(g[G_CLOCK])
        if c == EMPTY or abs(t_last - t_first) > h:
            return False
        lo = (c - h) // b_ms if g[G_LO] == EMPTY else max(int(g[G_LO]), (c - h) // b_ms)
        rlo = lo if g[G_RLO] == EMPTY else min(int(g[G_RLO]), lo)
        if _pow2((c + h) // b_ms - rlo + 1) > self.tables.shape[0]:
            return False
        mean = n // (abs(t_last // b_ms - t_first // b_ms) + 1)
        return 10 * (mean + mean // 4) <= 7 * (self.tables.shape[1] // BUCKET_SLACK)

    def _outside(self, rows, outside, hi: int, mark: tuple, out_code, out_field, keys_of) -> None:
        """Rows of :meth:`check_rows` outside the ring: the side set (and rows ahead wait)."""
        idx = np.flatnonzero(outside)
        keys = keys_of(rows[idx])
        t = rows["ts_ms"][idx]
        sd = self.side.check_insert(keys, np.ones(len(idx), np.bool_), self.clock_ms)
        out_code[idx[sd]] = mark[0]
        out_field[idx[sd]] = mark[1]
        ahead = ~sd & (t // self.bucket_ms > hi)
        if ahead.any():
            k, tt, c = self._pend
            at = self.clock_ms if self.clock_ms is not None else _NONE
            n_a = int(ahead.sum())
            self._pend = (
                np.concatenate([k, keys[ahead]]),
                np.concatenate([tt, t[ahead]]),
                np.concatenate([c, np.full(n_a, at, np.int64)]),
            )

    def _migrate(self, lo: int, hi: int) -> None:
        """Rows that arrived dated ahead of the ring and are now within it: into their buckets."""
        k, t, c = self._pend
        b = t // self.bucket_ms
        now = (b >= lo) & (b <= hi)
        if now.any():
            self._insert(k[now], t[now], np.ones(int(now.sum()), np.bool_), np.zeros(int(now.sum()), np.int8), lo)
        keep = ~now
        if self.clock_ms is not None:
            keep &= c >= self.clock_ms - self.horizon_ms  # the side set forgets them too
        self._pend = (k[keep], t[keep], c[keep])

    def _advance(self, lo: int) -> None:
        """Drop the buckets that end more than the horizon behind the clock (and the side set's
        old generation); shrink the ring."""
        g = self.geo
        c = int(g[G_CLOCK])
        if c != EMPTY:
            lo = max(lo, (c - self.horizon_ms) // self.bucket_ms)
            if self.side.cur_meta[0] or self.side.prev_meta[0]:
                self.side._rotate(c)
        g[G_LO] = lo if g[G_LO] == EMPTY else max(int(g[G_LO]), lo)
        if g[G_KEEP] == EMPTY or (c != EMPTY and c >= g[G_KEEP]):  # nothing kept behind the horizon
            g[G_RLO] = g[G_LO]
            g[G_KEEP] = EMPTY
        small = self._small
        if self.tables.shape[0] > small:
            hi = int(self.meta[:, M_BUCKET].max())  # only after a call that grew the ring
            if hi - int(g[G_RLO]) + 1 <= small:
                self._resize(small, self.tables.shape[1], int(g[G_RLO]))

    # ---- state ---------------------------------------------------------------------------
    def to_state(self) -> dict:
        """The keys held, per bucket, and the side set (for checkpoints)."""
        lo = self.lo if self.lo is not None else _NONE
        live = np.flatnonzero(self.meta[:, M_BUCKET] >= self._lowest())
        rows = self.tables[live]
        st = {
            "kind": "time_buckets",
            "horizon_ms": self.horizon_ms,
            "bucket_ms": self.bucket_ms,
            "lo": lo,
            "clock_ms": _NONE if self.clock_ms is None else self.clock_ms,
            "bucket_meta": self.meta[live].copy(),
            "bucket_n": (rows != EMPTY).sum(axis=1).astype(np.int64),
            "bucket_keys": rows[rows != EMPTY],
            "pending_keys": self._pend[0],
            "pending_t": self._pend[1],
            "pending_clock": self._pend[2],
            "kept_lo": int(self.geo[G_RLO]),
            "kept_until": int(self.geo[G_KEEP]),
        }
        st.update({f"side_{k}": v for k, v in self.side.to_state().items()})
        return st

    @classmethod
    def from_state(cls, d: dict) -> TimeBucketKeySet:
        """Rebuild from :meth:`to_state`."""
        s = cls(int(d["horizon_ms"]), int(d["bucket_ms"]))
        lo, clock = int(d["lo"]), int(d["clock_ms"])
        s.lo = None if lo == _NONE else lo
        s.clock_ms = None if clock == _NONE else clock
        meta = np.asarray(d["bucket_meta"], np.int64).reshape(-1, 3)
        counts = np.asarray(d["bucket_n"], np.int64)
        keys = np.asarray(d["bucket_keys"], np.int64)
        most = int(counts.max()) if len(counts) else 0
        cap = BUCKET_SLACK * max(16, _pow2((10 * most) // 7 + 2))
        n_ring = _pow2(max(s.span, int(meta[:, M_BUCKET].max() - meta[:, M_BUCKET].min() + 1) if len(meta) else 1))
        s.tables, s.meta = _empty_ring(n_ring, cap)
        ends = np.cumsum(counts)
        for j in range(len(meta)):  # one packed table row per bucket, then moved into place
            row = np.full((1, cap), EMPTY, np.int64)
            ks = keys[ends[j] - counts[j] : ends[j]]
            hashset_insert(ks, np.ones(len(ks), np.bool_), row[0], np.zeros(2, np.int64), np.zeros(len(ks), np.bool_))
            bucketset_move(row, meta[j : j + 1], _NONE + 1, s.tables, s.meta)
        s._pend = tuple(np.asarray(d[f"pending_{x}"], np.int64) for x in ("keys", "t", "clock"))
        s.geo[G_RLO] = int(d.get("kept_lo", s.geo[G_LO]))  # (checkpoints before kept buckets: none)
        s.geo[G_KEEP] = int(d.get("kept_until", EMPTY))
        s.side = DedupSet.from_state({k[5:]: v for k, v in d.items() if k.startswith("side_")})
        return s
