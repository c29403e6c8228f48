"""KPIs from raw records: per-minute counter rings per element, KPI definitions as data.

One :class:`CounterStore` holds every counter the KPIs need, per element (and per service for
call counters), in rings of minute buckets aligned to wall-clock minutes, plus an optional
coarser hour ring for the few counters that long windows and error-budget periods need.
A :class:`~telcoanalytics.kpi.calculator.KpiCalculator` turns window sums of counters into KPI values at any topology level,
always as ratios of sums (3GPP TS 32.401 aggregation), each with the sample count it rests on
and a status (ok / insufficient samples / collection gap / out of scope).

Memory
------
With ``n`` elements, ``M`` minutes in the ring, ``S`` services, ``B`` latency buckets, ``H`` hours
and ``J`` hour columns, all float32::

    n * M * (S * 9 + 22 + B) * 4  +  n * H * J * 4   bytes

The minute rings are read as ``ring[minute_slot, element, column]`` (``store.cdr``, ``store.elem``,
``store.hist``) and stored as column planes, ``[minute_slot, column, element]`` (the attributes are
transposed views): a sliding window sum reads just the columns it holds, one contiguous vector per
column and minute, instead of every cell row of the entering and leaving minute; a batch's rows
(sorted by time, then element or metric) write each column in element order. Checkpoints hold
the ``[minute_slot, element, column]`` order, as before. The hour ring is ``[hour_slot, element, j]``.

For 20,000 elements, M = 90, S = 4, B = 35 and a 30-day ring for one SLO (H = 721, J = 2):
20,000 * 90 * 92 * 4 = 662 MB plus 115 MB. :meth:`CounterStore.memory_bytes` reports it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from kernels import kpi as K
from telcoanalytics.kpi.definitions import (
    COUNTERS,
    HOUR_MS,
    REJECT_NAMES,
    cause_class_table,
    topology_from_state,
    topology_to_state,
)
from telcoanalytics.kpi.reads import _WindowReads
from telcoanalytics.kpi.running import PLANE_GROUPS, _RunningAggregates
from telcoanalytics.records import (
    DTYPES,
    ELEMENT_FIELD,
    SERVICE_CODE,
    SERVICES,
    TIME_FIELD,
)
from telcoanalytics.topology.model import Topology


@dataclass
class AddResult:
    """What :meth:`CounterStore.add` did with a batch."""

    accepted: int
    rejected: dict = field(default_factory=dict)
    elem: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # accepted rows' elements
    minute: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # accepted rows' minutes


class CounterStore(_WindowReads, _RunningAggregates):
    """Per-minute counters per element from raw canonical records.

    Parameters
    ----------
    topology : Topology
    minute_ring : int
        Minutes kept (the longest minute-resolution window plus the lateness to absorb).
    pm_interval_s : float
        Equipment reporting period: each ``unavailable_s`` report covers this many seconds.
    hour_columns : sequence of (counter name, service name or "")
        Counters also kept per hour (for windows longer than the minute ring, SLO periods). A
        minute moves into the hour ring when it leaves the minute ring.
    hour_ring : int
        Hours kept when ``hour_columns`` is given (at least ``minute_ring / 60 + 2``).
    hist_lo_ms, hist_bins_per_octave, hist_octaves
        Latency histogram buckets: ``[0, lo)``, then ``bins_per_octave * octaves`` log buckets,
        then ``[lo * 2**octaves, inf)``.
    max_ahead_ms : int
        Rows more than this ahead of the last watermark are rejected as "future" (so one bad
        clock cannot recycle the whole ring).

    Notes
    -----
    Slots are aligned to wall-clock minutes (``slot = minute % minute_ring``), so late rows add
    to the right minute and two stores merge by slot-wise addition (:meth:`merge`).
    """

    def __init__(
        self,
        topology: Topology,
        minute_ring: int = 90,
        pm_interval_s: float = 300.0,
        hour_columns=(),
        hour_ring: int = 0,
        hist_lo_ms: float = 1.0,
        hist_bins_per_octave: int = 3,
        hist_octaves: int = 11,
        max_ahead_ms: int = HOUR_MS,
        _alloc: bool = True,
    ):
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a telcoanalytics.topology.model.Topology, got {type(topology).__name__}")
        self.topology = topology
        self.minute_ring = _int_at_least("minute_ring", minute_ring, 2)
        if not (math.isfinite(pm_interval_s) and pm_interval_s > 0):
            raise ValueError(f"pm_interval_s must be a positive number of seconds, got {pm_interval_s}")
        self.pm_interval_s = float(pm_interval_s)
        self.hour_columns = tuple((str(c), str(s)) for c, s in hour_columns)
        for c, s in self.hour_columns:
            if c not in COUNTERS:
                raise ValueError(f"hour_columns counter {c!r} is unknown; known counters: {', '.join(COUNTERS)}")
            if s and s not in SERVICE_CODE:
                raise ValueError(f"hour_columns service {s!r} is not one of {SERVICES}")
            if s and COUNTERS[c].group != "cdr":
                raise ValueError(f"hour_columns: service {s!r} given for element counter {c!r}")
        need_h = self.minute_ring // 60 + 2
        if self.hour_columns and hour_ring < need_h:
            raise ValueError(
                f"hour_ring={hour_ring} is too short for a {self.minute_ring}-minute ring; use at least {need_h} hours"
            )
        self.hour_ring = int(hour_ring) if self.hour_columns else 1
        self.hist_lo_ms = float(hist_lo_ms)
        self.hist_bins_per_octave = _int_at_least("hist_bins_per_octave", hist_bins_per_octave, 1)
        self.hist_octaves = _int_at_least("hist_octaves", hist_octaves, 1)
        if not (math.isfinite(self.hist_lo_ms) and self.hist_lo_ms > 0):
            raise ValueError(f"hist_lo_ms must be > 0, got {hist_lo_ms}")
        self.n_bins = self.hist_bins_per_octave * self.hist_octaves + 2
        self.max_ahead_ms = int(max_ahead_ms)
        self.n_services = len(SERVICES)
        n, m = topology.n_elements, self.minute_ring
        self._cause_class = cause_class_table()
        self._hour_cols()
        self._build_index()
        self._running: dict = {}  # key -> _Running (derived state, rebuilt after a restore)
        self._runs_cache: dict = {}  # lists of the running aggregates the add path uses (_runs_of)
        # per minute slot and ring: may hold non-zero counters (False only for slots known empty, so
        # running aggregates skip reading them; PM / probe rings are empty 4 minutes in 5)
        self._slot_used = {g: np.ones(self.minute_ring, bool) for g in ("cdr", "elem", "hist")}
        # per minute slot and element: may hold non-zero counters (running sums move only those rows)
        self._row_used = {g: np.ones((self.minute_ring, n), bool) for g in ("cdr", "elem", "hist")}
        self._planes: dict = {}  # minute rings, stored [minute_slot, column, element] (see _MinutePlanes)
        if _alloc:
            self._planes = {
                "cdr": np.zeros((m, self.n_services * K.N_CDR, n), np.float32),
                "elem": np.zeros((m, K.N_ELEM, n), np.float32),
                "hist": np.zeros((m, self.n_bins, n), np.float32),
            }
            self.hour = np.zeros((self.hour_ring, n, len(self.hour_columns)), np.float32)
            self.slot_minute = np.full(m, -1, np.int64)
            self.slot_hour = np.full(self.hour_ring, -1, np.int64)
            self.head_minute = -1
            self.first_minute = -1
            self.watermark_ms = -1
            self.rejected = np.zeros(K.N_REASONS, np.int64)
            self.version = 0
            for used in self._slot_used.values():
                used[:] = False  # fresh rings: every slot known empty
            for used in self._row_used.values():
                used[:] = False

    # the minute rings as [minute_slot, element, column] views of their column planes
    cdr = property(
        lambda self: self._planes["cdr"].transpose(0, 2, 1), doc="CDR counters, [minute_slot, element, column]."
    )
    elem = property(
        lambda self: self._planes["elem"].transpose(0, 2, 1), doc="Element counters, [minute_slot, element, column]."
    )
    hist = property(
        lambda self: self._planes["hist"].transpose(0, 2, 1), doc="Latency histograms, [minute_slot, element, bucket]."
    )

    def _build_index(self):
        """Hash table element id -> dense index (faster than a binary search per row)."""
        ids = self.topology.ids[self.topology.element_level]
        self._hashed = bool(len(ids) == 0 or ids.min() >= 0)
        size = 1 << max(1, int(math.ceil(math.log2(max(2 * len(ids), 2)))))
        self._tkeys = np.full(size, -1, np.int64)
        self._tvals = np.zeros(size, np.int64)
        if self._hashed:
            K.kpi_index_build(ids, self._tkeys, self._tvals)

    def index_of(self, element_ids) -> np.ndarray:
        """Dense element index of each id, -1 where unknown (same as ``Topology.index_of``)."""
        q = np.ascontiguousarray(element_ids, dtype=np.int64)
        if not self._hashed:
            return self.topology.index_of(q)
        out = np.empty(len(q), np.int64)
        K.kpi_index_lookup(q, self._tkeys, self._tvals, out)
        return out

    def set_topology(self, topology: Topology, element_map: np.ndarray | None = None):
        """Follow a new topology version: counter rows move with their elements.

        Parameters
        ----------
        topology : Topology
            The new version.
        element_map : int64 array, optional
            New dense index of each old element (-1: removed by ``Topology.compact``, its counters
            are dropped); default: the identity (elements only appended, as ``add_elements``,
            ``retire_elements`` and ``rehome_elements`` do). New elements start with zero counters.

        Raises
        ------
        TypeError, ValueError
            Not a Topology; a map of the wrong length or pointing outside the new elements.

        Notes
        -----
        Counters are kept per element, so a re-homed element's counters count toward its new
        ancestors in every window evaluated after the change. Retired elements keep their rows
        (rows arriving for them still count; the SLA monitor takes them out of scope).
        """
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a telcoanalytics.topology.model.Topology, got {type(topology).__name__}")
        n_old, n_new = self.topology.n_elements, topology.n_elements
        if element_map is None:
            element_map = np.arange(n_old, dtype=np.int64)
        o2n = np.asarray(element_map, dtype=np.int64)
        if o2n.shape != (n_old,) or np.any(o2n >= n_new) or np.any(o2n < -1):
            raise ValueError(
                f"element_map must hold one new index in -1..{n_new - 1} per old element "
                f"({n_old}), got shape {o2n.shape}; pass the TopologyChange maps of this change"
            )
        identity = n_new == n_old and np.array_equal(o2n, np.arange(n_old))
        if not identity:
            keep = np.flatnonzero(o2n >= 0)
            for a, old in self._planes.items():
                new = np.zeros(old.shape[:2] + (n_new,), old.dtype)
                new[:, :, o2n[keep]] = old[:, :, keep]
                self._planes[a] = new
            new = np.zeros((self.hour.shape[0], n_new, self.hour.shape[2]), self.hour.dtype)
            new[:, o2n[keep]] = self.hour[:, keep]
            self.hour = new
            for g, used in self._row_used.items():
                new = np.zeros((used.shape[0], n_new), bool)
                new[:, o2n[keep]] = used[:, keep]
                self._row_used[g] = new
            for r in self._running.values():
                # the order a fresh one has (_Running): column planes' sums by column, the others by row;
                # a restored store builds them fresh, and the kernels reading them are specialised per layout
                order = "F" if r.out.ndim == 2 and r.group in PLANE_GROUPS else "C"
                r.out = np.zeros((n_new,) + r.out.shape[1:], r.out.dtype, order=order)
                r.lo = r.hi = None  # rebuilt from the rings at the next use
            self._runs_changed()
        self.topology = topology
        self._build_index()
        self.version += 1

    def _hour_cols(self):
        self._hour_kernel = None  # the spec as kpi_flush_hour takes it (False: numpy path), built at first use
        self._hour_spec = []  # per hour column: (ring group, ring columns summed)
        for c, svc in self.hour_columns:
            self._hour_spec.append((COUNTERS[c].group, self.columns(c, svc)))

    # ---- sizes ---------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes held by the counter rings."""
        return int(self.cdr.nbytes + self.elem.nbytes + self.hist.nbytes + self.hour.nbytes)

    def hour_column(self, counter: str, service: str = "") -> int:
        """Index of ``(counter, service)`` in the hour ring, -1 if not kept."""
        try:
            return self.hour_columns.index((counter, service))
        except ValueError:
            return -1

    # ---- ring maintenance ----------------------------------------------------------------
    def _advance_minutes(self, new_head: int):
        m = self.minute_ring
        start = max(self.head_minute + 1, new_head - m + 1)
        for mi in range(start, new_head + 1):
            s = mi % m
            if self.slot_minute[s] >= 0 and self._running:
                self._running_evict(s, int(self.slot_minute[s]))
            if self.slot_minute[s] >= 0 and self.hour_columns:
                self._flush(self, s, int(self.slot_minute[s]))
            for g, used in self._slot_used.items():
                if used[s]:  # a slot known empty is not written (nor its pages touched)
                    self._planes[g][s] = 0
                    used[s] = False
                    self._row_used[g][s] = False
            self.slot_minute[s] = mi if mi >= self.first_minute else -1
        self.head_minute = new_head

    def _hour_slot(self, hour: int) -> int:
        """Slot of ``hour`` in the hour ring (recycled when it held an older hour), -1 if too old."""
        hs = hour % self.hour_ring
        cur = self.slot_hour[hs]
        if cur > hour or hour <= self.head_minute // 60 - self.hour_ring:
            return -1
        if cur != hour:
            if cur >= 0 and self._running:
                self._running_evict_hour(hs, int(cur))
            self.hour[hs] = 0
            self.slot_hour[hs] = hour
        return hs

    def _flush(self, src: CounterStore, s: int, minute: int):
        """Add minute ``minute`` (slot ``s`` of ``src``'s minute ring) into this hour ring."""
        hs = self._hour_slot(minute // 60)
        if hs < 0:
            self.rejected[K.R_TOO_LATE] += int(bool(src.cdr[s].any() or src.elem[s].any()))
            return
        hour_runs = [
            r for r in self._running.values() if r.group == "hour" and r.lo is not None and r.lo <= minute // 60 < r.hi
        ]
        if self._hour_kernel is None:
            spec = self._hour_spec
            ptr = np.zeros(len(spec) + 1, np.int64)
            np.cumsum([len(c) for _, c in spec], out=ptr[1:])
            grp = np.array([0 if g == "cdr" else 1 for g, _ in spec], np.int64)
            cols = np.concatenate([np.asarray(c, np.int64) for _, c in spec]) if spec else np.zeros(0, np.int64)
            # sums of fewer than 8 columns: numpy adds them left to right, as the kernel does
            ok = all(g in ("cdr", "elem") and 0 < len(c) < 8 for g, c in spec)
            self._hour_kernel = (grp, ptr, cols) if ok else False
        if self._hour_kernel:
            if hour_runs:
                colmap = np.full((len(hour_runs), len(self._hour_spec)), -1, np.int64)
                for k, r in enumerate(hour_runs):
                    colmap[k, r.cols] = np.arange(len(r.cols))
                runs = (colmap, tuple(r.out for r in hour_runs))
            else:
                runs = (np.full((0, len(self._hour_spec)), -1, np.int64), (np.zeros((0, 0)),))
            used = (src._row_used["cdr"][s], src._row_used["elem"][s])
            K.kpi_flush_hour(src.cdr, src.elem, s, used, self._hour_kernel, self.hour, hs, runs)
            return
        before = self.hour[hs].astype(np.float64) if hour_runs else None
        for j, (grp, cols) in enumerate(self._hour_spec):
            ring = src.cdr if grp == "cdr" else src.elem
            self.hour[hs, :, j] += ring[s][:, cols].sum(axis=1)
        for r in hour_runs:
            r.out += (self.hour[hs].astype(np.float64) - before)[:, r.cols]

    def set_watermark(self, watermark_ms: int):
        """Record the pipeline watermark (bounds how far ahead rows may be)."""
        self.watermark_ms = max(self.watermark_ms, int(watermark_ms))

    # ---- ingestion -----------------------------------------------------------------------
    def add(self, source: str, batch: np.ndarray, element_index: np.ndarray | None = None) -> AddResult:
        """Add one canonical batch of ``source`` ("cdr", "equip", "qos"; "flow" is ignored).

        ``element_index``, when given, is each row's dense topology index as the ingest resolved
        it (a pipeline's routed batch): the ids are then not looked up again.

        Returns
        -------
        AddResult
            Accepted count, rejected counts by reason, and the element index and minute of each
            accepted row (for late-data tracking).

        Raises
        ------
        ValueError
            If ``source`` is unknown or ``batch`` lacks the canonical fields.
        """
        if source not in DTYPES:
            raise ValueError(f"source {source!r} is unknown; expected one of {', '.join(DTYPES)}")
        batch = np.asarray(batch)
        missing = [f for f in DTYPES[source].names if f not in (batch.dtype.names or ())]
        if missing:
            raise ValueError(
                f"{source} batch lacks canonical fields {missing}; convert it with telcoanalytics.ingest.ingestor first"
            )
        if source == "flow" or len(batch) == 0:
            return AddResult(0, {"ignored": len(batch)} if source == "flow" and len(batch) else {})
        if batch.dtype != DTYPES[source]:
            batch = batch.astype(DTYPES[source])  # one cast; canonical batches pass as views
        if element_index is None:
            elem = self.index_of(batch[ELEMENT_FIELD[source]])
        else:
            elem = np.ascontiguousarray(element_index, dtype=np.int64)
            if elem.shape != (len(batch),):
                raise ValueError(f"element_index has shape {elem.shape}, the batch {len(batch)} rows")
        # pass 1: minutes, unknown elements, rows too far ahead; the accepted rows' minute range
        t = batch[TIME_FIELD[source]]
        minute = np.empty(len(batch), np.int64)
        reason = np.zeros(len(batch), np.int8)
        n_ok, lo, hi = K.kpi_add_scan(
            t, elem, self.watermark_ms >= 0, self.watermark_ms + self.max_ahead_ms, minute, reason
        )
        n_ok, lo, hi = int(n_ok), int(lo), int(hi)  # numpy integers without JIT
        if n_ok:
            if self.head_minute < 0:
                self.first_minute = lo
                self.head_minute = lo - 1
            elif lo < self.first_minute:
                self.first_minute = max(lo, self.head_minute - self.minute_ring + 1)
            if hi > self.head_minute:
                self._advance_minutes(hi)
        late_bound = self.head_minute - self.minute_ring
        act = self._running_snapshot_act(source, reason, elem, minute, late_bound, lo, hi) if n_ok else None
        # pass 2: slot, checks, counters, histogram bin and running sums of each row together
        acc = (np.empty(n_ok, np.int64), np.empty(n_ok, np.int64))
        route = (late_bound, lo, lo % self.minute_ring)
        g0 = self._SOURCE_GROUPS[source][0]
        used = (self.slot_minute, self._slot_used[g0], self._row_used[g0])
        if not n_ok:
            n = 0
        elif source == "cdr":
            fields = (batch["start_ms"], batch["answer_ms"], batch["end_ms"], batch["service"], batch["cause"])
            runs = self._running_args("cdr")
            n = K.kpi_add_cdr(elem, minute, route, used, fields, self._cause_class, reason, self.cdr, runs, acc)
        elif source == "equip":
            fields = (batch["metric_id"], batch["value"])
            runs = self._running_args("elem")
            n = K.kpi_add_equip(elem, minute, route, used, fields, self.pm_interval_s, reason, self.elem, runs, acc)
        else:
            fields = (batch["latency_ms"], batch["jitter_ms"], batch["loss_pct"], batch["mos"])
            hp = (self.hist_lo_ms, float(self.hist_bins_per_octave))
            runs = (self._running_args("elem"), self._running_args("hist"))
            used = (used, (self._slot_used["hist"], self._row_used["hist"]))
            n = K.kpi_add_qos(elem, minute, route, used, fields, hp, reason, self.elem, self.hist, runs, acc)
        if act is not None:
            self._running_apply(act)
        rej = {}
        if n < len(batch):  # rows rejected: their reasons counted (the usual batch has none)
            counts = np.bincount(reason, minlength=K.N_REASONS)
            self.rejected += counts
            self.rejected[0] = 0
            rej = {REJECT_NAMES[i]: int(counts[i]) for i in range(1, K.N_REASONS) if counts[i]}
        if n:
            self.version += 1
        return AddResult(int(n), rej, acc[0][:n], acc[1][:n])

    # ---- merge / checkpoint --------------------------------------------------------------
    def merge(self, other: CounterStore) -> CounterStore:
        """Add ``other``'s counters into this store (same topology size and configuration).

        Minutes of ``other`` that fall outside this ring after aligning heads go to the hour ring
        (or, without hour columns, are counted as ``too_late``: in a merge that count is of
        minutes / hours with data, not rows). Returns ``self``.
        """
        cfg = (
            "minute_ring",
            "pm_interval_s",
            "hour_columns",
            "hour_ring",
            "hist_lo_ms",
            "hist_bins_per_octave",
            "hist_octaves",
        )
        for a in cfg:
            if getattr(self, a) != getattr(other, a):
                raise ValueError(
                    f"cannot merge counter stores with different {a}: {getattr(self, a)!r} vs {getattr(other, a)!r}"
                )
        if self.topology.n_elements != other.topology.n_elements:
            raise ValueError(
                f"cannot merge stores over {self.topology.n_elements} and {other.topology.n_elements} elements"
            )
        if other.head_minute < 0:
            return self
        if self.hour_columns:
            for s in np.argsort(other.slot_hour, kind="stable"):
                hi = int(other.slot_hour[s])
                if hi < 0:
                    continue
                hs = self._hour_slot(hi)
                if hs < 0:
                    self.rejected[K.R_TOO_LATE] += 1
                    continue
                self.hour[hs] += other.hour[s]
        if self.head_minute < 0:
            self.first_minute = other.first_minute
            self.head_minute = other.first_minute - 1
        self.first_minute = min(self.first_minute, other.first_minute)
        if other.head_minute > self.head_minute:
            self._advance_minutes(other.head_minute)
        for s in np.argsort(other.slot_minute, kind="stable"):
            mi = int(other.slot_minute[s])
            if mi < 0:
                continue
            if mi <= self.head_minute - self.minute_ring:
                if self.hour_columns:
                    self._flush(other, s, mi)  # already left this ring: straight to hours
                else:
                    self.rejected[K.R_TOO_LATE] += int(bool(other.cdr[s].any() or other.elem[s].any()))
                continue
            self.cdr[s] += other.cdr[s]
            self.elem[s] += other.elem[s]
            self.hist[s] += other.hist[s]
            self.slot_minute[s] = mi
        self.rejected += other.rejected
        self.watermark_ms = max(self.watermark_ms, other.watermark_ms)
        self.version += 1
        for r in self._running.values():
            r.lo = r.hi = None  # recomputed from the rings at the next use
        self._runs_changed()
        for used in self._slot_used.values():
            used[:] = True
        for used in self._row_used.values():
            used[:] = True
        return self

    _STATE_ARRAYS = ("cdr", "elem", "hist", "hour", "slot_minute", "slot_hour", "rejected")
    _STATE_SCALARS = ("head_minute", "first_minute", "watermark_ms", "version")
    _RINGS = ("cdr", "elem", "hist", "hour")
    _SPARSE_RINGS = ("cdr", "elem", "hist")
    """Rings stored as their non-zero cells: the minute rings, full after ``minute_ring`` minutes, so
    their stored size follows the traffic, not the run's age. The hour ring is stored at its full
    size: it fills for ``hour_ring`` hours (30 days for a 30-day SLO period), so a sparse copy
    would grow for a month (``"::store.hour"`` is among the checkpoint's fixed-size entries)."""

    def to_state(self) -> dict:
        """Checkpoint: numpy arrays and plain scalars/strings only."""
        d = topology_to_state(self.topology)
        d.update(
            {
                "minute_ring": self.minute_ring,
                "pm_interval_s": self.pm_interval_s,
                "hour_columns": json.dumps(self.hour_columns),
                "hour_ring": self.hour_ring,
                "hist_lo_ms": self.hist_lo_ms,
                "hist_bins_per_octave": self.hist_bins_per_octave,
                "hist_octaves": self.hist_octaves,
                "max_ahead_ms": self.max_ahead_ms,
            }
        )
        for a in self._STATE_ARRAYS:
            if a in self._SPARSE_RINGS:  # mostly zero (sparse traffic, PM every 5 min)
                d.update({f"{a}.{k}": v for k, v in _sparse_planes(self._planes[a]).items()})
            else:
                d[a] = getattr(self, a).copy()
        for a in self._STATE_SCALARS:
            d[a] = int(getattr(self, a))
        return d

    @classmethod
    def from_state(cls, d: dict) -> CounterStore:
        """Restore a store written by :meth:`to_state`."""
        st = cls(
            topology_from_state(d),
            int(d["minute_ring"]),
            float(d["pm_interval_s"]),
            [tuple(x) for x in json.loads(d["hour_columns"])],
            int(d["hour_ring"]),
            float(d["hist_lo_ms"]),
            int(d["hist_bins_per_octave"]),
            int(d["hist_octaves"]),
            int(d["max_ahead_ms"]),
            _alloc=False,
        )
        width = {"cdr": st.n_services * K.N_CDR, "elem": K.N_ELEM, "hist": st.n_bins}
        for a in cls._STATE_ARRAYS:
            dense = a not in cls._RINGS or a in d  # minute rings sparse since format 3; hour ring sparse in format 4
            if a in st._SPARSE_RINGS:
                # [minute_slot, element, column] in the checkpoint -> column planes; counters appended
                # since it was written (elem: outage_reports) start at zero
                if dense:
                    st._planes[a] = _planes_of_dense(np.asarray(d[a], np.float32), width[a])
                else:
                    st._planes[a] = _planes_of_sparse({k: d[f"{a}.{k}"] for k in ("shape", "at", "value")}, width[a])
            else:
                setattr(
                    st, a, np.array(d[a]) if dense else _dense({k: d[f"{a}.{k}"] for k in ("shape", "at", "value")})
                )
        for a in cls._STATE_SCALARS:
            setattr(st, a, int(d[a]))
        for g, planes in st._planes.items():  # slots known empty (running sums and ring advances skip them)
            st._row_used[g] = planes.any(axis=1)
            st._slot_used[g] = st._row_used[g].any(axis=1)
        return st


def _int_at_least(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _sparse(ring: np.ndarray) -> dict:
    """A float32 counter ring as its non-zero cells: shape, flat positions (uint32 when they fit), values."""
    flat = ring.reshape(-1)
    at = np.flatnonzero(flat)
    return {
        "shape": np.array(ring.shape, np.int64),
        "at": at.astype(np.uint32) if flat.size <= 2**32 else at,
        "value": flat[at],
    }


def _sparse_planes(planes: np.ndarray) -> dict:
    """:func:`_sparse` of the ``[minute_slot, element, column]`` ring stored as ``planes``
    (``[minute_slot, column, element]``): the same arrays, one slot at a time (no copy of the whole ring)."""
    m, w, n = planes.shape
    size = m * n * w
    at, value = [], []
    for s in range(m):
        flat = planes[s].T.reshape(-1)  # slot s in [element, column] order (a copy of one slot)
        nz = np.flatnonzero(flat)
        at.append(nz + s * n * w)
        value.append(flat[nz])
    at = np.concatenate(at)
    return {
        "shape": np.array((m, n, w), np.int64),
        "at": at.astype(np.uint32) if size <= 2**32 else at,
        "value": np.concatenate(value).astype(np.float32, copy=False),
    }


def _planes_of_sparse(d: dict, width: int) -> np.ndarray:
    """Column planes ``[minute_slot, column, element]`` (``width`` columns, the ones the
    checkpoint lacks zero) of the ring :func:`_sparse` encoded."""
    m, n, w = (int(x) for x in np.asarray(d["shape"]))
    if w > width:
        raise ValueError(f"a counter ring with {w} columns cannot be restored into {width}")
    at = np.asarray(d["at"], np.int64)
    s, rest = np.divmod(at, n * w)
    e, c = np.divmod(rest, w)
    planes = np.zeros((m, width, n), np.float32)
    planes[s, c, e] = np.asarray(d["value"], np.float32)
    return planes


def _planes_of_dense(ring: np.ndarray, width: int) -> np.ndarray:
    """Column planes of a dense ``[minute_slot, element, column]`` ring (checkpoint formats 1-2)."""
    m, n, w = ring.shape
    if w > width:
        raise ValueError(f"a counter ring with {w} columns cannot be restored into {width}")
    planes = np.zeros((m, width, n), np.float32)
    planes[:, :w] = ring.transpose(0, 2, 1)
    return planes


def _dense(d: dict) -> np.ndarray:
    """The ring :func:`_sparse` encoded."""
    shape = tuple(int(x) for x in np.asarray(d["shape"]))
    out = np.zeros(int(np.prod(shape)), np.float32)
    out[np.asarray(d["at"], np.int64)] = np.asarray(d["value"], np.float32)
    return out.reshape(shape)
