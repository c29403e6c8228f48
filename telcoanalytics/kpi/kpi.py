"""KPIs from raw records: per-minute counter rings per element, KPI definitions as data.

One :class:`CounterStore` holds every counter the KPIs need, per element (and per service for
call counters), in rings of minute buckets aligned to wall-clock minutes, plus an optional
coarser hour ring for the few counters that long windows and error-budget periods need.
A :class:`KpiCalculator` turns window sums of counters into KPI values at any topology level,
always as ratios of sums (3GPP TS 32.401 aggregation), each with the sample count it rests on
and a status (ok / insufficient samples / collection gap / out of scope).

Memory
------
With ``n`` elements, ``M`` minutes in the ring, ``S`` services, ``B`` latency buckets, ``H`` hours
and ``J`` hour columns, all float32::

    n * M * (S * 9 + 21 + B) * 4  +  n * H * J * 4   bytes

laid out slot-major (``[minute_slot, element, column]``).

For 20,000 elements, M = 90, S = 4, B = 35 and a 30-day ring for one SLO (H = 721, J = 2):
20,000 * 90 * 92 * 4 = 662 MB plus 115 MB. :meth:`CounterStore.memory_bytes` reports it.

Running window aggregates
-------------------------
Window sums over all elements come from running aggregates (:meth:`CounterStore.running`), one
per (ring, window length) with the columns in use: each tick adds the minute entering the window
and subtracts the one leaving it (slots known to be empty are skipped), so a tick costs
O(elements x columns) instead of O(window x elements x columns). Rows added later to a minute
inside a running window add the change of each touched ring cell (new - old float32 value), and
a minute leaving the ring (the data runs ahead) is subtracted before its slot is reused, so an
aggregate always equals a fresh sum over the ring's current content. Activity counts (minutes
with data) and the hour-ring part of long SLO windows run the same way. Exactness: sums are
float64 over float32 cells; counts are integers (exact), and sums of non-integer counters
(holding seconds, unavailable seconds, latency sums) are exact as long as every partial sum fits
53 bits at the resolution of the smallest cell (in practice always: cells carry 24 significant
bits, window sums of typical magnitudes need well under 53), so adding and subtracting in any
order gives the same float64 as summing the window afresh.

Late-data re-evaluation
-----------------------
Re-evaluating the last ``L`` ticks for the elements touched by late rows needs, per rule, a
window sum at each of those ticks. Inside a span (:meth:`KpiCalculator.begin_series`) the
counters the rules read are gathered once per ring group into cumulative per-minute sums over
the union of the touched rows (:meth:`CounterStore.prefix_sums`, one read of each ring cell), so
every window of every tick is one difference; other aggregates (latency histograms, activity)
move each tick's window from the previous one's (:meth:`CounterStore.window_series`). The same
exactness argument as above applies.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from kernels import kpi as K
from telcoanalytics.records import (
    CAUSE_CONGESTION,
    CAUSE_FAILURE,
    CAUSE_NORMAL,
    CAUSE_USER,
    METRICS,
    Q850_MAX,
    SERVICE_CODE,
    SERVICES,
)
from telcoanalytics.topology.model import Topology

MINUTE_MS = 60_000
HOUR_MS = 3_600_000

assert METRICS[:6] == (
    "cpu_util_pct",
    "prb_util_pct",
    "throughput_mbps",
    "unavailable_s",
    "error_count",
    "temperature_c",
), "kernels/kpi.py metric codes out of step with records.METRICS"

# ---- counters ------------------------------------------------------------------------------
CDR_COUNTERS: tuple[str, ...] = (
    "attempts",
    "setup_ok",
    "answered",
    "drops",
    "blocked",
    "failures",
    "normal",
    "user",
    "hold_s",
)
ELEM_COUNTERS: tuple[str, ...] = (
    "equip_rows",
    "avail_reports",
    "period_s",
    "up_s",
    "unavailable_s",
    "cpu_util_sum",
    "cpu_util_n",
    "prb_util_sum",
    "prb_util_n",
    "throughput_sum",
    "throughput_n",
    "errors",
    "qos_rows",
    "latency_sum",
    "latency_n",
    "jitter_sum",
    "jitter_n",
    "loss_sum",
    "loss_n",
    "mos_sum",
    "mos_n",
)
assert len(CDR_COUNTERS) == K.N_CDR and len(ELEM_COUNTERS) == K.N_ELEM


@dataclass(frozen=True)
class Counter:
    """Where a counter lives: ring ``group`` ("cdr" or "elem"), column, and the source feeding it."""

    name: str
    group: str
    column: int
    source: str


COUNTERS: dict[str, Counter] = {}
for _i, _n in enumerate(CDR_COUNTERS):
    COUNTERS[_n] = Counter(_n, "cdr", _i, "cdr")
for _i, _n in enumerate(ELEM_COUNTERS):
    COUNTERS[_n] = Counter(_n, "elem", _i, "equip" if _i < K.E_QOS_ROWS else "qos")

ACTIVITY_COUNTER = {"cdr": "attempts", "equip": "equip_rows", "qos": "qos_rows"}
"""Row counter per source: a minute with none of these is a minute without data."""

# ---- statuses ------------------------------------------------------------------------------
STATUS_OK = 0
STATUS_INSUFFICIENT = 1
STATUS_GAP = 2
STATUS_NO_SCOPE = 3
STATUS_NAMES = ("ok", "insufficient", "collection_gap", "no_scope")

REJECT_NAMES = ("ok", "unknown_element", "too_late", "future", "bad_cause", "bad_time", "bad_service", "bad_value")
assert len(REJECT_NAMES) == K.N_REASONS

KINDS = ("ratio", "per_time", "quantile", "mos")


def cause_class_table() -> np.ndarray:
    """Q.850 cause (0..127) -> cause class code (``kernels.kpi.CLS_*``), int8."""
    t = np.zeros(Q850_MAX + 1, dtype=np.int8)
    t[list(CAUSE_NORMAL)] = K.CLS_NORMAL
    t[list(CAUSE_USER)] = K.CLS_USER
    t[list(CAUSE_CONGESTION)] = K.CLS_CONGESTION
    t[list(CAUSE_FAILURE)] = K.CLS_FAILURE
    return t


# ---- KPI definitions -----------------------------------------------------------------------
@dataclass(frozen=True)
class KpiDef:
    """A KPI as data.

    Parameters
    ----------
    name : str
        Identifier of the KPI.
    numerator, denominator : tuple of str
        Counter names (see ``COUNTERS``) summed over the window and the scope.
    kind : {"ratio", "per_time", "quantile", "mos"}
        ``ratio``: ``scale * sum(numerator) / sum(denominator)``; ``per_time``:
        ``scale * sum(numerator) / window_s`` (traffic in Erlangs with ``hold_s``);
        ``quantile``: quantile ``q`` of the latency histogram (ms); ``mos``: the E-model MOS
        from the window's mean latency, jitter and loss (:func:`kernels.kpi.kpi_emodel_mos`).
    scale : float
        Multiplier (100 for percentages).
    samples : str
        Counter giving the sample count; default: first denominator counter (ratio), the
        source's row counter (per_time), ``latency_n`` (quantile, mos).
    min_samples : float
        Fewer samples than this give status "insufficient" (NaN value).
    service : str
        Restrict call counters to one service of ``records.SERVICES`` ("" = all).
    q : float
        Quantile in (0, 1) for ``kind="quantile"``.
    unit, description : str

    Raises
    ------
    ValueError
        Naming the KPI and the field when a counter, kind, service or parameter is invalid.
    """

    name: str
    numerator: tuple = ()
    denominator: tuple = ()
    kind: str = "ratio"
    scale: float = 1.0
    samples: str = ""
    min_samples: float = 1.0
    service: str = ""
    q: float = float("nan")
    unit: str = ""
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "numerator", tuple(self.numerator))
        object.__setattr__(self, "denominator", tuple(self.denominator))
        where = f"KPI {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"KPI name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind {self.kind!r} is not one of {KINDS}")
        for fld in ("numerator", "denominator"):
            for c in getattr(self, fld):
                if c not in COUNTERS:
                    raise ValueError(f"{where}: {fld} counter {c!r} is unknown; known counters: {', '.join(COUNTERS)}")
        if self.kind == "ratio" and (not self.numerator or not self.denominator):
            raise ValueError(f"{where}: a ratio needs numerator and denominator counters")
        if self.kind == "per_time" and (not self.numerator or self.denominator):
            raise ValueError(
                f"{where}: per_time needs numerator counters and no denominator (the window length is the denominator)"
            )
        if self.kind in ("quantile", "mos") and (self.numerator or self.denominator):
            raise ValueError(f"{where}: kind {self.kind!r} takes no numerator/denominator counters")
        if self.kind == "quantile" and not (0.0 < self.q < 1.0):
            raise ValueError(f"{where}: q must be in (0, 1) for a quantile KPI, got {self.q}")
        groups = {COUNTERS[c].group for c in self.numerator + self.denominator}
        if len(groups) > 1:
            raise ValueError(
                f"{where}: counters mix call counters and element counters ({sorted(groups)}); "
                "a KPI's counters must come from one group"
            )
        if self.samples and self.samples not in COUNTERS:
            raise ValueError(f"{where}: samples counter {self.samples!r} is unknown")
        if self.service and self.service not in SERVICE_CODE:
            raise ValueError(f"{where}: service {self.service!r} is not one of {SERVICES}")
        if self.service and self.group != "cdr":
            raise ValueError(f"{where}: service filter only applies to call (CDR) counters")
        if not (math.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"{where}: scale must be finite and non-zero, got {self.scale}")
        if not self.min_samples >= 0:
            raise ValueError(f"{where}: min_samples must be >= 0, got {self.min_samples}")

    @property
    def group(self) -> str:
        """Ring group of the counters ("cdr" or "elem")."""
        cs = self.numerator + self.denominator
        return COUNTERS[cs[0]].group if cs else "elem"

    @property
    def source(self) -> str:
        """The record source whose rows feed this KPI."""
        cs = self.numerator + self.denominator
        return COUNTERS[cs[0]].source if cs else "qos"

    @property
    def samples_counter(self) -> str:
        if self.samples:
            return self.samples
        if self.kind == "ratio":
            return self.denominator[0]
        if self.kind == "per_time":
            return ACTIVITY_COUNTER[self.source]
        return "latency_n"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["numerator"] = list(self.numerator)
        d["denominator"] = list(self.denominator)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> KpiDef:
        """Build from a plain dict (JSON/TOML); unknown keys raise ``ValueError``."""
        if not isinstance(d, dict):
            raise ValueError(f"a KPI definition must be a dict, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValueError(f"KPI {d.get('name', '?')!r}: unknown field(s) {sorted(extra)}; allowed: {sorted(known)}")
        if "name" not in d:
            raise ValueError(f"a KPI definition needs a 'name', got keys {sorted(d)}")
        return cls(**d)


def _ratio(name, num, den, scale=100.0, unit="%", desc=""):
    return KpiDef(name, (num,), (den,), "ratio", scale, unit=unit, description=desc)


BUILTIN_KPIS: dict[str, KpiDef] = {
    k.name: k
    for k in (
        _ratio(
            "call_setup_success_pct",
            "setup_ok",
            "attempts",
            desc="attempts answered or released with a normal/user-side cause, per attempt",
        ),
        _ratio("call_drop_pct", "drops", "answered", desc="answered calls released abnormally, per answered call"),
        _ratio("blocking_pct", "blocked", "attempts", desc="attempts released with congestion causes 34/42/44/47"),
        _ratio("failure_pct", "failures", "attempts", desc="attempts released with failure causes 27/38/41/102"),
        _ratio("normal_clearing_pct", "normal", "attempts", desc="attempts released with causes 16/31"),
        _ratio("user_cause_pct", "user", "attempts", desc="attempts released with user-side causes 17-21"),
        _ratio("asr_pct", "answered", "attempts", desc="answer-seizure ratio"),
        KpiDef(
            "mean_holding_s",
            ("hold_s",),
            ("answered",),
            "ratio",
            1.0,
            unit="s",
            description="mean holding time of answered calls",
        ),
        KpiDef(
            "traffic_erl",
            ("hold_s",),
            (),
            "per_time",
            1.0,
            unit="Erl",
            description="carried traffic: holding seconds per second of window (calls attributed to "
            "their start minute)",
        ),
        KpiDef(
            "availability_pct",
            ("up_s",),
            ("period_s",),
            "ratio",
            100.0,
            samples="avail_reports",
            unit="%",
            description="(period - unavailable time) / period",
        ),
        KpiDef("cpu_util_pct", ("cpu_util_sum",), ("cpu_util_n",), "ratio", 1.0, unit="%"),
        KpiDef(
            "prb_util_pct",
            ("prb_util_sum",),
            ("prb_util_n",),
            "ratio",
            1.0,
            unit="%",
            description="radio / port utilisation",
        ),
        KpiDef("throughput_mbps", ("throughput_sum",), ("throughput_n",), "ratio", 1.0, unit="Mbit/s"),
        KpiDef("errors_per_min", ("errors",), (), "per_time", 60.0, samples="equip_rows", unit="1/min"),
        KpiDef("latency_ms", ("latency_sum",), ("latency_n",), "ratio", 1.0, unit="ms"),
        KpiDef("jitter_ms", ("jitter_sum",), ("jitter_n",), "ratio", 1.0, unit="ms"),
        KpiDef("loss_pct", ("loss_sum",), ("loss_n",), "ratio", 1.0, unit="%"),
        KpiDef("mos_measured", ("mos_sum",), ("mos_n",), "ratio", 1.0, unit="MOS"),
        KpiDef("latency_p50_ms", kind="quantile", q=0.50, unit="ms"),
        KpiDef("latency_p95_ms", kind="quantile", q=0.95, unit="ms"),
        KpiDef("latency_p99_ms", kind="quantile", q=0.99, unit="ms"),
        KpiDef(
            "mos_emodel",
            kind="mos",
            unit="MOS",
            description="ITU-T G.107 E-model MOS from window mean latency, jitter and loss (simplified)",
        ),
    )
}


def kpi_registry(extra=None) -> dict[str, KpiDef]:
    """Built-in KPIs plus user definitions (``KpiDef`` or dicts); a user KPI may replace a built-in."""
    reg = dict(BUILTIN_KPIS)
    for k in extra or ():
        kd = k if isinstance(k, KpiDef) else KpiDef.from_dict(k)
        reg[kd.name] = kd
    return reg


# ---- topology state helpers ----------------------------------------------------------------
def topology_to_state(topo: Topology) -> dict:
    """The topology under ``topology.*`` keys (:meth:`Topology.to_state`: ids, parents,
    attributes, names, active flags, change log)."""
    return {f"topology.{k}": v for k, v in topo.to_state().items()}


def topology_from_state(d: dict) -> Topology:
    """Inverse of :func:`topology_to_state` (also reads the older layout without active flags)."""
    if "topology.attribute_names" in d:
        return Topology.from_state({k[9:]: v for k, v in d.items() if k.startswith("topology.")})
    levels = tuple(d["topology.levels"].split(","))
    attrs = [a for a in d["topology.attributes"].split(",") if a]
    return Topology(
        levels,
        {lv: d[f"topology.ids.{lv}"] for lv in levels},
        {lv: d[f"topology.parent.{lv}"] for lv in levels[1:]},
        {a: d[f"topology.attr.{a}"] for a in attrs},
        int(d["topology.version"]),
    )


# ---- running window aggregates -------------------------------------------------------------
class _Running:
    """A per-element aggregate over a moving interval ``[lo, hi)`` of one ring.

    ``kind`` "sum": float64 sums of ring columns ``cols`` over the minutes (hours for the
    "hour" group) of the interval that the ring holds; "act": per element, the number of those
    minutes in which the sum of ``cols`` is > 0. Derived state only (never checkpointed).
    """

    __slots__ = ("group", "kind", "cols", "colpos", "lo", "hi", "out")

    def __init__(self, group: str, kind: str, cols, n: int):
        self.group, self.kind = group, kind
        self.cols = np.ascontiguousarray(cols, dtype=np.int64)
        self.colpos = {int(c): j for j, c in enumerate(self.cols)}
        self.lo = self.hi = None
        self.out = np.zeros((n, len(self.cols))) if kind == "sum" else np.zeros(n, np.int64)


# ---- the counter store ---------------------------------------------------------------------
@dataclass
class AddResult:
    """What :meth:`CounterStore.add` did with a batch."""

    accepted: int
    rejected: dict = field(default_factory=dict)
    elem: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # accepted rows' elements
    minute: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # accepted rows' minutes


class CounterStore:
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
        # per minute slot and ring: may hold non-zero counters (False only for slots known empty, so
        # running aggregates skip reading them; PM / probe rings are empty 4 minutes in 5)
        self._slot_used = {g: np.ones(self.minute_ring, bool) for g in ("cdr", "elem", "hist")}
        if _alloc:
            self.cdr = np.zeros((m, n, self.n_services * K.N_CDR), np.float32)
            self.elem = np.zeros((m, n, K.N_ELEM), np.float32)
            self.hist = np.zeros((m, n, self.n_bins), np.float32)
            self.hour = np.zeros((self.hour_ring, n, len(self.hour_columns)), np.float32)
            self.slot_minute = np.full(m, -1, np.int64)
            self.slot_hour = np.full(self.hour_ring, -1, np.int64)
            self.head_minute = -1
            self.first_minute = -1
            self.watermark_ms = -1
            self.rejected = np.zeros(K.N_REASONS, np.int64)
            self.version = 0

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
            for a in ("cdr", "elem", "hist", "hour"):
                old = getattr(self, a)
                new = np.zeros((old.shape[0], n_new, old.shape[2]), old.dtype)
                new[:, o2n[keep]] = old[:, keep]
                setattr(self, a, new)
            for r in self._running.values():
                r.out = np.zeros((n_new,) + r.out.shape[1:], r.out.dtype)
                r.lo = r.hi = None  # rebuilt from the rings at the next use
        self.topology = topology
        self._build_index()
        self.version += 1

    def _hour_cols(self):
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
            self.cdr[s] = 0
            self.elem[s] = 0
            self.hist[s] = 0
            for used in self._slot_used.values():
                used[s] = False
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
    def add(self, source: str, batch: np.ndarray) -> AddResult:
        """Add one canonical batch of ``source`` ("cdr", "equip", "qos"; "flow" is ignored).

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
        from telcoanalytics.records import DTYPES, ELEMENT_FIELD, TIME_FIELD

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
        t = np.ascontiguousarray(batch[TIME_FIELD[source]], dtype=np.int64)
        minute = t // MINUTE_MS
        elem = self.index_of(batch[ELEMENT_FIELD[source]])
        reason = np.zeros(len(batch), np.int8)
        reason[elem < 0] = K.R_UNKNOWN_ELEMENT
        if self.watermark_ms >= 0:
            reason[(reason == 0) & (t > self.watermark_ms + self.max_ahead_ms)] = K.R_FUTURE
        ok = reason == 0
        if ok.any():
            lo, hi = int(minute[ok].min()), int(minute[ok].max())
            if self.head_minute < 0:
                self.first_minute = lo
                self.head_minute = lo - 1
            elif lo < self.first_minute:
                self.first_minute = max(lo, self.head_minute - self.minute_ring + 1)
            if hi > self.head_minute:
                self._advance_minutes(hi)
            reason[ok & (minute <= self.head_minute - self.minute_ring)] = K.R_TOO_LATE
        ok = reason == 0
        all_ok = bool(ok.all())
        elem_c = elem if all_ok else np.where(ok, elem, 0)
        slot = minute % self.minute_ring
        if not all_ok:
            slot[~ok] = 0
        if ok.any():
            self.slot_minute[slot[ok]] = minute[ok]
        late = self._running_snapshot(source, ok, elem_c, slot, minute)
        if source == "cdr":
            K.kpi_extract_cdr(
                elem_c,
                slot,
                t,
                batch["answer_ms"],
                batch["end_ms"],
                batch["service"],
                batch["cause"],
                self._cause_class,
                self.n_services,
                reason,
                self.cdr,
            )
        elif source == "equip":
            K.kpi_extract_equip(elem_c, slot, batch["metric_id"], batch["value"], self.pm_interval_s, reason, self.elem)
        else:
            K.kpi_extract_qos(
                elem_c,
                slot,
                batch["latency_ms"],
                batch["jitter_ms"],
                batch["loss_pct"],
                batch["mos"],
                self.hist_lo_ms,
                float(self.hist_bins_per_octave),
                reason,
                self.elem,
                self.hist,
            )
        for g in self._SOURCE_GROUPS[source]:
            self._slot_used[g][slot[ok]] = True
        if late is not None:
            self._running_apply(late)
        counts = np.bincount(reason, minlength=K.N_REASONS)
        self.rejected += counts
        self.rejected[0] = 0
        ok = reason == 0
        if ok.any():
            self.version += 1
        rej = {REJECT_NAMES[i]: int(counts[i]) for i in range(1, K.N_REASONS) if counts[i]}
        return AddResult(int(counts[0]), rej, elem[ok], minute[ok])

    # ---- window access -------------------------------------------------------------------
    def window_slots(self, end_minute: int, window_min: int) -> np.ndarray:
        """Ring slots of the minutes ``[end - window, end)`` that the ring holds."""
        mins = np.arange(end_minute - window_min, end_minute, dtype=np.int64)
        slots = mins % self.minute_ring
        return np.ascontiguousarray(slots[self.slot_minute[slots] == mins])

    def history_slots(self, end_minute: int, window_min: int) -> np.ndarray:
        """Ring slots holding minutes before the window ``[end - window, end)``."""
        mins = np.arange(end_minute - self.minute_ring, end_minute - window_min, dtype=np.int64)
        slots = mins % self.minute_ring
        return np.ascontiguousarray(slots[(self.slot_minute[slots] == mins) & (mins >= 0)])

    def ring_of(self, group: str) -> np.ndarray:
        return self.cdr if group == "cdr" else self.elem

    def columns(self, counter: str, service: str = "") -> np.ndarray:
        """Ring columns holding ``counter`` (all services summed when ``service`` is "")."""
        c = COUNTERS[counter]
        if c.group != "cdr":
            return np.array([c.column], np.int64)
        if service:
            return np.array([SERVICE_CODE[service] * K.N_CDR + c.column], np.int64)
        return np.arange(self.n_services, dtype=np.int64) * K.N_CDR + c.column

    def hour_sums(self, col: int, end_minute: int, n_hours: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Sum of hour column ``col`` over minutes ``[60 * (h - n_hours + 1), end_minute)`` where
        ``h`` is the hour of minute ``end_minute - 1``: whole hours from the hour ring plus the
        minutes still in the minute ring, per element of ``rows`` (all elements when None, from
        running aggregates of both rings, see :meth:`running`)."""
        last_h = (end_minute - 1) // 60
        first_min = (last_h - n_hours + 1) * 60
        grp, cols = self._hour_spec[col]
        m_lo = max(first_min, end_minute - self.minute_ring)
        if rows is None:
            h = self.running(("hour", col, n_hours), "hour", "sum", [col], last_h - n_hours + 1, last_h + 1)
            mkey = ("win", grp, self.minute_ring) if m_lo == end_minute - self.minute_ring else ("hsum", grp, n_hours)
            m = self.running(mkey, grp, "sum", cols, m_lo, end_minute)
            out = h.out[:, 0].copy()
            for c in cols:
                out += m.out[:, m.colpos[int(c)]]
            return out
        mins = np.arange(m_lo, end_minute, dtype=np.int64)
        mslots = mins % self.minute_ring
        live = self.slot_minute[mslots] == mins
        mslots = np.ascontiguousarray(mslots[live])
        hrs = np.arange(last_h - n_hours + 1, last_h + 1, dtype=np.int64)
        hslots = hrs % self.hour_ring
        hslots = np.ascontiguousarray(hslots[self.slot_hour[hslots] == hrs])
        out = np.zeros((len(rows), 1))
        K.kpi_window_sum(self.hour, rows, hslots, np.array([col], np.int64), np.zeros(1, np.int64), out)
        K.kpi_window_sum(self.ring_of(grp), rows, mslots, cols, np.zeros(len(cols), np.int64), out)
        return out[:, 0]

    # ---- window series (late-data re-evaluation) -----------------------------------------
    def _series_plan(self, group: str, lo, hi):
        """Slots and signs moving window ``[lo[k], hi[k])`` to ``[lo[k+1], hi[k+1])`` (see
        :func:`kernels.kpi.kpi_window_series`); tick 0 lists its whole window.

        Per tick ``k > 0`` the pieces are ``[hi[k-1], hi[k])`` (entering, +1) then ``[lo[k-1],
        lo[k])`` (leaving, -1), a reversed piece flipping its sign; each piece lists the units it
        covers that the ring holds, in ascending order. Built with array operations (one pass for
        all ticks instead of a few numpy calls per piece).
        """
        lo = np.asarray(lo, np.int64).reshape(-1)
        hi = np.asarray(hi, np.int64).reshape(-1)
        n_k = len(lo)
        if n_k == 0:
            return np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        # pieces in emission order: tick 0's window, then per tick (hi move, lo move)
        a = np.empty(2 * n_k - 1, np.int64)
        b = np.empty(2 * n_k - 1, np.int64)
        sg = np.ones(2 * n_k - 1, np.int64)
        tk = np.empty(2 * n_k - 1, np.int64)
        a[0], b[0], tk[0] = lo[0], hi[0], 0
        a[1::2], b[1::2] = hi[:-1], hi[1:]
        a[2::2], b[2::2] = lo[:-1], lo[1:]
        sg[2::2] = -1
        tk[1::2] = tk[2::2] = np.arange(1, n_k)
        rev = b < a
        a, b = np.where(rev, b, a), np.where(rev, a, b)
        sg = np.where(rev, -sg, sg)
        a = np.maximum(a, 0)
        ln = np.maximum(b - a, 0)
        tot = int(ln.sum())
        if group == "hour":
            ring_n, held = self.hour_ring, self.slot_hour
        else:
            ring_n, held = self.minute_ring, self.slot_minute
        off = np.cumsum(ln) - ln
        units = np.arange(tot, dtype=np.int64) - np.repeat(off - a, ln)
        slots = units % ring_n
        keep = held[slots] == units
        slots = np.ascontiguousarray(slots[keep])
        signs = np.ascontiguousarray(np.repeat(sg, ln)[keep])
        counts = np.bincount(np.repeat(tk, ln)[keep], minlength=n_k)
        ptr = np.zeros(n_k + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        return ptr, slots, signs

    def window_series(self, group: str, cols, out_col, n_out: int, rows, lo, hi, kind: str = "sum") -> np.ndarray:
        """Per-element window aggregates of ``rows`` for a run of windows ``[lo[k], hi[k])``.

        Parameters
        ----------
        group : {"cdr", "elem", "hist", "hour"}
        cols, out_col : int arrays
            Ring columns and the output column each adds into (``kind="sum"``); for "act", the
            columns whose sum > 0 marks an active minute.
        n_out : int
            Output columns (``kind="sum"``).
        rows : int64 array
            Dense element indices.
        lo, hi : int sequences
            Window of each tick, in minutes (hours for "hour"), both non-decreasing for the
            cheapest plan (any order is correct).
        kind : {"sum", "act"}

        Returns
        -------
        ndarray
            ``(len(lo), len(rows), n_out)`` float64 sums, or ``(len(lo), len(rows))`` int64
            active-minute counts; equal to summing each window afresh (same exactness argument
            as the running aggregates).
        """
        lo = [min(int(a), int(b)) for a, b in zip(lo, hi)]
        ptr, slots, signs = self._series_plan(group, lo, hi)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        ring = self._ring(group)
        if kind == "sum":
            out = np.zeros((len(lo), len(rows), int(n_out)))
            K.kpi_window_series(
                ring,
                rows,
                np.ascontiguousarray(cols, dtype=np.int64),
                np.ascontiguousarray(out_col, dtype=np.int64),
                ptr,
                slots,
                signs,
                out,
            )
        else:
            out = np.zeros((len(lo), len(rows)), np.int64)
            K.kpi_activity_series(ring, rows, np.ascontiguousarray(cols, dtype=np.int64), ptr, slots, signs, out)
        return out

    def prefix_sums(self, group: str, keys, rows, lo: int, hi: int) -> np.ndarray:
        """Cumulative per-minute sums of counters ``keys`` ((counter, service) pairs of ``group``)
        for ``rows`` over minutes ``[lo, hi)``: ``(len(keys), hi - lo + 1, len(rows))`` float64,
        ``[j, k]`` holding key ``j``'s sums of minutes ``lo..lo+k-1`` the ring holds (see
        :func:`kernels.kpi.kpi_prefix_gather`)."""
        mins = np.arange(lo, hi, dtype=np.int64)
        slots = mins % self.minute_ring
        slots = np.ascontiguousarray(np.where((self.slot_minute[slots] == mins) & (mins >= 0), slots, -1))
        cols, outc = [], []
        for j, (c, svc) in enumerate(keys):
            cc = self.columns(c, svc)
            cols.append(cc)
            outc.append(np.full(len(cc), j, np.int64))
        out = np.empty((len(keys), len(mins) + 1, len(rows)))
        K.kpi_prefix_gather(
            self._ring(group),
            np.ascontiguousarray(rows, dtype=np.int64),
            slots,
            np.concatenate(cols),
            np.concatenate(outc),
            out,
        )
        return out

    def hour_sums_series(self, col: int, ticks, n_hours: int, rows, minute_part=None) -> np.ndarray:
        """:meth:`hour_sums` of ``rows`` at each minute of ``ticks`` (consecutive), ``(len(ticks), len(rows))``."""
        grp, cols = self._hour_spec[col]
        ticks = [int(t) for t in ticks]
        last_h = [(t - 1) // 60 for t in ticks]
        h_lo = [h - n_hours + 1 for h in last_h]
        h_hi = [h + 1 for h in last_h]
        m_lo = [max(a * 60, t - self.minute_ring) for a, t in zip(h_lo, ticks)]
        out = self.window_series("hour", [col], [0], 1, rows, h_lo, h_hi)[:, :, 0]
        if minute_part is not None:  # (lo, hi) -> sums of the minute ring part, given by the caller
            out += np.stack([minute_part(a, t) for a, t in zip(m_lo, ticks)])
        else:
            out += self.window_series(grp, cols, np.zeros(len(cols), np.int64), 1, rows, m_lo, ticks)[:, :, 0]
        return out

    # ---- running window aggregates -------------------------------------------------------
    def _ring(self, group: str) -> np.ndarray:
        return {"cdr": self.cdr, "elem": self.elem, "hist": self.hist, "hour": self.hour}[group]

    def _present(self, group: str, lo: int, hi: int) -> np.ndarray:
        """Slots of the minutes (hours for "hour") in ``[lo, hi)`` that the ring holds."""
        lo = max(lo, 0)
        if hi <= lo:
            return np.zeros(0, np.int64)
        units = np.arange(lo, hi, dtype=np.int64)
        if group == "hour":
            slots = units % self.hour_ring
            return np.ascontiguousarray(slots[self.slot_hour[slots] == units])
        slots = units % self.minute_ring
        return np.ascontiguousarray(slots[self.slot_minute[slots] == units])

    def _shift(self, r: _Running, add_slots, sub_slots):
        used = self._slot_used.get(r.group)
        if used is not None:  # an empty slot adds nothing: skip reading it
            add_slots = np.ascontiguousarray(add_slots[used[add_slots]])
            sub_slots = np.ascontiguousarray(sub_slots[used[sub_slots]])
        if len(add_slots) == 0 and len(sub_slots) == 0:
            return
        ring = self._ring(r.group)
        if r.kind == "sum":
            K.kpi_running_shift(ring, add_slots, sub_slots, r.cols, r.out)
        else:
            K.kpi_running_activity(ring, add_slots, sub_slots, r.cols, r.out)

    def running(self, key, group: str, kind: str, cols, lo: int, hi: int) -> _Running:
        """The running aggregate ``key`` moved to ``[lo, hi)``.

        Moving forward costs the minutes entering and leaving the interval (one each per tick
        for a sliding window) instead of the whole window; a backward move, a jump past the
        old interval or new columns recompute it from the ring. Rows added later to minutes
        inside the interval, and minutes leaving the ring, update it as they happen
        (:meth:`add`, ring advance), so it always equals the sum over the ring's current content.

        Parameters
        ----------
        key : hashable
            Identity of the aggregate (one per window family).
        group : {"cdr", "elem", "hist", "hour"}
        kind : {"sum", "act"}
        cols : int array
            Ring columns (summed per column for "sum"; an activity indicator for "act").
        lo, hi : int
            Interval in minutes (hours for the "hour" group).

        Returns
        -------
        _Running
            Its ``out`` (n_elements x len(cols) float64, or n_elements int64 for "act") must be
            treated as read-only by the caller.
        """
        r = self._running.get(key)
        cols = [int(c) for c in cols]
        if (
            r is not None
            and r.lo == lo
            and r.hi == hi
            and lo < hi
            and r.group == group
            and r.kind == kind
            and all(c in r.colpos for c in cols)
        ):
            return r  # already in place (e.g. moved by slide_running): nothing to shift
        if r is None or r.group != group or r.kind != kind or any(c not in r.colpos for c in cols):
            old = list(r.cols) if (r is not None and r.kind == kind and r.group == group and kind == "sum") else []
            allc = old + [c for c in cols if c not in old] if kind == "sum" else cols
            r = self._running[key] = _Running(group, kind, allc, self.topology.n_elements)
        if r.lo is None or lo < r.lo or hi < r.hi or lo >= r.hi or (lo - r.lo) + (hi - r.hi) >= hi - lo:
            r.out[...] = 0
            self._shift(r, self._present(group, lo, hi), np.zeros(0, np.int64))
        else:
            self._shift(r, self._present(group, r.hi, hi), self._present(group, r.lo, lo))
        r.lo, r.hi = lo, hi
        return r

    def slide_running(self, end_minute: int) -> int:
        """Move every sliding window sum (keys ``("win", group, w)``, interval ``[end - w, end)``)
        that ends one minute before ``end_minute`` to end at ``end_minute``: one kernel call per
        ring for all window lengths (:func:`kernels.kpi.kpi_running_shift_many`, the entering
        minute read once) instead of one per window when :meth:`running` asks for them. Each sum
        gets exactly the shift :meth:`running` would apply, so :meth:`running` then finds it in
        place. Returns the number of sums moved."""
        jobs: dict = {}
        for key, r in self._running.items():
            if key[0] != "win" or r.kind != "sum" or r.lo is None:
                continue
            lo, hi = end_minute - key[2], end_minute
            if r.hi != hi - 1 or r.lo != lo - 1 or hi - lo <= 2:
                continue  # not a one-minute move (or running() would sum it afresh)
            jobs.setdefault(r.group, []).append(r)
        n_moved = 0
        for grp, runs in jobs.items():
            add = self._unit_slot(grp, end_minute - 1)
            todo, subs = [], []
            for r in runs:
                sub = self._unit_slot(grp, r.lo)
                r.lo, r.hi = r.lo + 1, r.hi + 1
                n_moved += 1
                if add >= 0 or sub >= 0:
                    todo.append(r)
                    subs.append(sub)
            if not todo:
                continue
            col_ptr = np.zeros(len(todo) + 1, np.int64)
            np.cumsum([len(r.cols) for r in todo], out=col_ptr[1:])
            K.kpi_running_shift_many(
                self._ring(grp),
                add,
                np.array(subs, np.int64),
                col_ptr,
                np.concatenate([r.cols for r in todo]),
                tuple(r.out for r in todo),
            )
        return n_moved

    def _unit_slot(self, group: str, unit: int) -> int:
        """Slot of minute ``unit`` (hour for "hour") when the ring holds it and it may hold data
        (:meth:`_present` of one unit, without the slots known empty), else -1."""
        if unit < 0:
            return -1
        if group == "hour":
            s = unit % self.hour_ring
            return s if self.slot_hour[s] == unit else -1
        s = unit % self.minute_ring
        return s if self.slot_minute[s] == unit and self._slot_used[group][s] else -1

    def _running_evict(self, s: int, minute: int):
        """Minute ``minute`` (slot ``s``) leaves the minute ring: take it out of the aggregates."""
        sub = np.array([s], np.int64)
        for r in self._running.values():
            if r.group != "hour" and r.lo is not None and r.lo <= minute < r.hi:
                self._shift(r, np.zeros(0, np.int64), sub)

    def _running_evict_hour(self, hs: int, hour: int):
        sub = np.array([hs], np.int64)
        for r in self._running.values():
            if r.group == "hour" and r.lo is not None and r.lo <= hour < r.hi:
                self._shift(r, np.zeros(0, np.int64), sub)

    _SOURCE_GROUPS = {"cdr": ("cdr",), "equip": ("elem",), "qos": ("elem", "hist")}

    def _running_snapshot(self, source, ok, elem, slot, minute):
        """Before a batch is extracted: the ring cells its rows for minutes inside a running
        interval will touch, with their current values (None when there are none)."""
        runs = [r for r in self._running.values() if r.group in self._SOURCE_GROUPS[source] and r.lo is not None]
        if not runs:
            return None
        lo, hi = min(r.lo for r in runs), max(r.hi for r in runs)
        sel = ok & (minute >= lo) & (minute < hi)
        if not sel.any():
            return None
        n = self.topology.n_elements
        key = np.unique(slot[sel] * n + elem[sel])
        cs, ce = key // n, key % n
        cm = self.slot_minute[cs]
        old = {g: self._ring(g)[cs, ce].copy() for g in self._SOURCE_GROUPS[source]}
        return runs, cs, ce, cm, old

    def _running_apply(self, late):
        """After the batch: add the change of each touched cell to the aggregates covering it.

        The change is ``new - old`` of the float32 cell (exact in float64), so an aggregate
        stays equal to a fresh sum over the ring."""
        runs, cs, ce, cm, old = late
        for g, before in old.items():
            after = self._ring(g)[cs, ce]
            delta = None
            for r in runs:
                if r.group != g:
                    continue
                m = (cm >= r.lo) & (cm < r.hi)
                if not m.any():
                    continue
                if r.kind == "sum":
                    if delta is None:
                        delta = after.astype(np.float64) - before.astype(np.float64)
                    K.kpi_scatter_rows(
                        r.out.reshape(len(r.out), -1),
                        np.ascontiguousarray(ce[m]),
                        np.ascontiguousarray(delta[m][:, r.cols]),
                    )
                else:
                    d = (after[m][:, r.cols].sum(axis=1) > 0).astype(np.int64) - (
                        before[m][:, r.cols].sum(axis=1) > 0
                    ).astype(np.int64)
                    np.add.at(r.out, ce[m], d)

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
        for used in self._slot_used.values():
            used[:] = True
        return self

    _STATE_ARRAYS = ("cdr", "elem", "hist", "hour", "slot_minute", "slot_hour", "rejected")
    _STATE_SCALARS = ("head_minute", "first_minute", "watermark_ms", "version")

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
        for a in cls._STATE_ARRAYS:
            setattr(st, a, np.array(d[a]))
        for a in cls._STATE_SCALARS:
            setattr(st, a, int(d[a]))
        return st


# ---- KPI evaluation ------------------------------------------------------------------------
@dataclass
class KpiResult:
    """KPI values of every node of one level: value (NaN unless status ok), samples, status."""

    value: np.ndarray
    samples: np.ndarray
    status: np.ndarray


class KpiCalculator:
    """Evaluate KPI definitions over windows of a :class:`CounterStore` at any topology level.

    Window sums per (counter, service, window) are cached per store version, so many rules over
    the same counters and windows cost one pass over the ring.

    Parameters
    ----------
    store : CounterStore
    kpis : dict name -> KpiDef, optional
        Default: :data:`BUILTIN_KPIS`.
    gap_fraction : float
        A window is a collection gap when the scope's elements reported in fewer than
        ``gap_fraction`` of the minutes they would report in at their usual rate (measured over
        the rest of the ring).
    gap_sources : tuple of str
        Sources that report periodically, for which a silent window means a collection gap
        (equipment PM and QoS probes). Call records are excluded by default: no calls is not a
        gap but no traffic, which ``min_samples`` handles.

    Notes
    -----
    Ratios are ratios of sums over the window and over the elements of a node, never means of
    ratios (3GPP TS 32.401 aggregation).
    """

    def __init__(
        self, store: CounterStore, kpis: dict | None = None, gap_fraction: float = 0.5, gap_sources=("equip", "qos")
    ):
        self.store = store
        bad = [s for s in gap_sources if s not in ACTIVITY_COUNTER]
        if bad:
            raise ValueError(f"gap_sources {bad} unknown; choose from {sorted(ACTIVITY_COUNTER)}")
        self.gap_sources = tuple(gap_sources)
        self.kpis = dict(kpis) if kpis is not None else dict(BUILTIN_KPIS)
        if not 0.0 <= gap_fraction < 1.0:
            raise ValueError(f"gap_fraction must be in [0, 1), got {gap_fraction}")
        self.gap_fraction = float(gap_fraction)
        self._cache: dict = {}
        self._cache_version = -1
        self._all_rows = np.arange(store.topology.n_elements, dtype=np.int64)
        self._sizes: dict = {}
        self._plans: dict = {}  # fused ratio path: ring columns and positions per KPI / window
        self._span: tuple | None = None  # (t_from, t_to) of a re-evaluation (see begin_series)
        self._span_cache: dict = {}
        self._span_keys: dict = {}
        self._span_rows: dict = {}

    fused_ratio = True
    """Ratio KPIs over all elements in one kernel call (:meth:`_ratio_all`); False: the step-by-step
    path it equals bit for bit (kept as the reference of the tests)."""

    # ---- re-evaluation spans -------------------------------------------------------------
    prefix_budget_bytes = 512 * 2**20
    """Largest prefix-sum array (bytes) a re-evaluation span builds; beyond it, window series."""

    def begin_series(self, t_from: int, t_to: int, counters: dict | None = None, rows: dict | None = None):
        """Start a re-evaluation of the ticks ``t_from..t_to`` for subsets of rows.

        Until :meth:`end_series`, window sums of a row subset at an end minute in the span are
        computed for the whole span at once (:meth:`CounterStore.window_series`: each window
        moved from the previous tick's instead of summed afresh) and cached per (counters,
        window, rows array); node maps of a row subset are cached too. The store must not
        change inside a span.

        With ``counters`` (ring group -> (counter, service) pairs, e.g. every counter the rules
        read), each row subset's counters of a group are gathered once into cumulative per-minute
        sums over the span and the ``minute_ring`` minutes before it
        (:meth:`CounterStore.prefix_sums`), so every window of every tick is one difference.
        With ``rows`` (ring group -> sorted element indices, the union of the subsets the span
        will ask for), one prefix per group covers every subset of it.
        """
        self._span = (int(t_from), int(t_to))
        self._span_cache = {}
        self._span_keys = {g: dict.fromkeys(v) for g, v in (counters or {}).items()}
        self._span_rows = {g: np.ascontiguousarray(v, dtype=np.int64) for g, v in (rows or {}).items()}

    def end_series(self):
        """End the span started by :meth:`begin_series` (drops its cache)."""
        self._span = None
        self._span_cache = {}
        self._span_keys = {}
        self._span_rows = {}

    def _in_span(self, end_minute: int, rows) -> bool:
        return rows is not None and self._span is not None and self._span[0] <= end_minute <= self._span[1]

    def _span_ticks(self) -> list:
        return list(range(self._span[0], self._span[1] + 1))

    def hour_sums(self, col: int, end_minute: int, n_hours: int, rows=None) -> np.ndarray:
        """:meth:`CounterStore.hour_sums`, from a cached series inside a re-evaluation span."""
        if not self._in_span(end_minute, rows):
            return self.store.hour_sums(col, end_minute, n_hours, rows)
        key = ("hour", col, n_hours, id(rows))
        hit = self._span_cache.get(key)
        if hit is None:
            c, svc = self.store.hour_columns[col]
            part = None
            if self._prefix_for(COUNTERS[c].group, [c], svc, rows) is not None:
                part = lambda a, b: self._prefix_window(COUNTERS[c].group, c, svc, rows, a, b)  # noqa: E731
            hit = self._span_cache[key] = (
                self.store.hour_sums_series(col, self._span_ticks(), n_hours, rows, part),
                rows,
            )
        return hit[0][end_minute - self._span[0]]

    def _prefix_for(self, group: str, names, svc: str, rows):
        """The span's prefix sums of ``group`` for ``rows`` if they hold every (name, svc), else None."""
        if not self._span_keys or group not in self._span_keys:
            return None
        keys = self._span_keys[group]
        if any((c, svc) not in keys for c in names):
            return None
        # one prefix per group over the rows hinted for the span (all row subsets inside it share it)
        base = self._span_rows.get(group)
        if base is None or len(rows) > len(base):
            base = rows
        pkey = ("prefix", group, id(base))
        hit = self._span_cache.get(pkey)
        if hit is None:
            lo = self._span[0] - self.store.minute_ring
            kl = list(keys)
            if (self._span[1] - lo + 1) * len(base) * len(kl) * 8 > self.prefix_budget_bytes:
                return None
            hit = self._span_cache[pkey] = (
                self.store.prefix_sums(group, kl, base, lo, self._span[1]),
                {k: j for j, k in enumerate(kl)},
                lo,
                base,
            )
        rkey = ("prefix_rows", group, id(rows))
        at = self._span_cache.get(rkey)
        if at is None:
            if rows is base or (len(rows) == len(base) and np.array_equal(rows, base)):
                pos = None  # the hinted rows themselves: no gather
            else:
                pos = np.minimum(np.searchsorted(base, rows), len(base) - 1)
                if len(base) == 0 or not np.array_equal(base[pos], rows):
                    return None  # not a subset of the hinted rows
            at = self._span_cache[rkey] = (hit, pos, rows)
        return at

    def _prefix_series(self, group, c, svc, rows, window_min: int) -> np.ndarray:
        """Window sums of ``(c, svc)`` for ``rows`` at every tick of the span, ``(ticks, rows)``."""
        skey = ("prefix_win", group, c, svc, window_min, id(rows))
        hit = self._span_cache.get(skey)
        if hit is None:
            self._prefix_window(group, c, svc, rows, 0, 0)  # builds the column
            col, lo, _ = self._span_cache[("prefix_col", group, c, svc, id(rows))]
            t = np.arange(self._span[0], self._span[1] + 1)
            hit = self._span_cache[skey] = (
                col[np.maximum(t, lo) - lo] - col[np.maximum(t - window_min, lo) - lo],
                rows,
            )
        return hit[0]

    def _prefix_window(self, group, c, svc, rows, a: int, b: int) -> np.ndarray:
        """Sum of counter ``(c, svc)`` over minutes ``[a, b)`` per element of ``rows`` (a span's prefix)."""
        ckey = ("prefix_col", group, c, svc, id(rows))
        hit = self._span_cache.get(ckey)
        if hit is None:  # this counter's cumulative sums for these rows, contiguous per minute
            (P, keypos, lo, _), pos, _ = self._span_cache[("prefix_rows", group, id(rows))]
            col = P[keypos[(c, svc)]]
            hit = self._span_cache[ckey] = (col if pos is None else col[:, pos], lo, rows)
        col, lo, _ = hit
        return col[max(b, lo) - lo] - col[max(a, lo) - lo]

    def get(self, kpi) -> KpiDef:
        if isinstance(kpi, KpiDef):
            return kpi
        try:
            return self.kpis[kpi]
        except KeyError:
            raise ValueError(f"unknown KPI {kpi!r}; known: {', '.join(sorted(self.kpis))}") from None

    def _check_cache(self):
        if self._cache_version != self.store.version:
            self._cache.clear()
            self._cache_version = self.store.version

    def counter_sums(
        self, counters, service: str, end_minute: int, window_min: int, rows: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Window sum of each counter per element of ``rows`` (all elements when None).

        For all elements the sums come from running per-window aggregates of the store
        (:meth:`CounterStore.running`: one minute in and one out per tick); for a subset of
        rows (re-evaluation after late data) they are summed from the ring.
        """
        self._check_cache()
        st = self.store
        out: dict[str, np.ndarray] = {}
        todo: dict[str, list] = {"cdr": [], "elem": []}
        for c in dict.fromkeys(counters):
            key = (c, service if COUNTERS[c].group == "cdr" else "", end_minute, window_min)
            if rows is None and key in self._cache:
                out[c] = self._cache[key]
            else:
                todo[COUNTERS[c].group].append(c)
        if rows is None:
            for grp, names in todo.items():
                if not names:
                    continue
                svc = service if grp == "cdr" else ""
                cols = {c: st.columns(c, svc) for c in names}
                run = st.running(
                    ("win", grp, window_min),
                    grp,
                    "sum",
                    np.concatenate(list(cols.values())),
                    end_minute - window_min,
                    end_minute,
                )
                for c in names:
                    # the counter's columns (one per service) added left to right in one pass
                    v = np.empty(len(run.out))
                    K.kpi_sum_columns(run.out, np.array([run.colpos[int(x)] for x in cols[c]], np.int64), v)
                    out[c] = v
                    self._cache[(c, svc, end_minute, window_min)] = v
            return out
        r = rows
        if self._in_span(end_minute, rows):
            k = end_minute - self._span[0]
            for c, ser in self._span_counter_series(todo, service, window_min, rows).items():
                out[c] = np.ascontiguousarray(ser[k])
            return out
        slots = st.window_slots(end_minute, window_min)
        for grp, names in todo.items():
            if not names:
                continue
            cols, outc = [], []
            for j, c in enumerate(names):
                cc = st.columns(c, service if grp == "cdr" else "")
                cols.append(cc)
                outc.append(np.full(len(cc), j, np.int64))
            res = np.zeros((len(r), len(names)))
            K.kpi_window_sum(st.ring_of(grp), r, slots, np.concatenate(cols), np.concatenate(outc), res)
            for j, c in enumerate(names):
                out[c] = np.ascontiguousarray(res[:, j])
        return out

    def _span_counter_series(self, todo: dict, service: str, window_min: int, rows) -> dict:
        """Inside a span: window sums of the counters ``todo`` (ring group -> names) for ``rows`` at
        every tick of the span, name -> ``(ticks, rows)`` (from the span's prefix sums when they
        hold the counters, else one window series per group, cached)."""
        st = self.store
        out: dict = {}
        for grp, names in todo.items():
            svc = service if grp == "cdr" else ""
            if names and self._prefix_for(grp, names, svc, rows) is not None:
                for c in names:
                    out[c] = self._prefix_series(grp, c, svc, rows, window_min)
                continue
            miss = [c for c in names if (c, svc, window_min, id(rows)) not in self._span_cache]
            if miss:
                cols, outc = [], []
                for j, c in enumerate(miss):
                    cc = st.columns(c, svc)
                    cols.append(cc)
                    outc.append(np.full(len(cc), j, np.int64))
                ticks = self._span_ticks()
                ser = st.window_series(
                    grp,
                    np.concatenate(cols),
                    np.concatenate(outc),
                    len(miss),
                    rows,
                    [t - window_min for t in ticks],
                    ticks,
                )
                for j, c in enumerate(miss):
                    self._span_cache[(c, svc, window_min, id(rows))] = (ser[:, :, j], rows)
            for c in names:
                out[c] = self._span_cache[(c, svc, window_min, id(rows))][0]
        return out

    def hist_sums(self, end_minute: int, window_min: int, rows=None, copy: bool = True) -> np.ndarray:
        """Latency histogram counts over the window per element of ``rows`` (all when None).

        With ``copy=False`` (all elements) the result is the store's running aggregate itself:
        read it before the store changes and never write to it.
        """
        st = self.store
        cols = np.arange(st.n_bins, dtype=np.int64)
        if rows is None:
            res = st.running(("win", "hist", window_min), "hist", "sum", cols, end_minute - window_min, end_minute).out
            return res.copy() if copy else res
        if self._in_span(end_minute, rows):
            return self._span_hist_series(window_min, rows)[end_minute - self._span[0]]
        res = np.zeros((len(rows), st.n_bins))
        K.kpi_window_sum(st.hist, rows, st.window_slots(end_minute, window_min), cols, cols, res)
        return res

    def _span_hist_series(self, window_min: int, rows) -> np.ndarray:
        """Inside a span: latency histograms of ``rows`` at every tick, ``(ticks, rows, bins)`` (cached)."""
        st = self.store
        key = ("hist", window_min, id(rows))
        hit = self._span_cache.get(key)
        if hit is None:
            ticks = self._span_ticks()
            cols = np.arange(st.n_bins, dtype=np.int64)
            hit = self._span_cache[key] = (
                st.window_series("hist", cols, cols, st.n_bins, rows, [t - window_min for t in ticks], ticks),
                rows,
            )
        return hit[0]

    def _span_activity_series(self, source: str, window_min: int, rows):
        """Inside a span: (active minutes, active minutes before the window) of ``rows`` at every
        tick, each ``(ticks, rows)`` int64 (cached)."""
        st = self.store
        skey = ("act", source, window_min, id(rows))
        hit = self._span_cache.get(skey)
        if (
            hit is None
            and self._prefix_for(COUNTERS[ACTIVITY_COUNTER[source]].group, [ACTIVITY_COUNTER[source]], "", rows)
            is not None
        ):
            # from the span's prefix sums: a minute is active when its row count (one difference of
            # the prefix, exact for counts) is > 0; cumulative active minutes give every window
            act = ACTIVITY_COUNTER[source]
            grp = COUNTERS[act].group
            self._prefix_window(grp, act, "", rows, 0, 0)  # builds the column
            col, lo, _ = self._span_cache[("prefix_col", grp, act, "", id(rows))]
            cum = np.zeros(col.shape, np.int64)
            np.cumsum(np.diff(col, axis=0) > 0.0, axis=0, out=cum[1:])
            t = np.arange(self._span[0], self._span[1] + 1)
            at = lambda m: cum[np.maximum(m, lo) - lo]  # noqa: E731
            w0 = at(t - window_min)
            hit = self._span_cache[skey] = (at(t) - w0, w0 - at(np.maximum(t - st.minute_ring, 0)), rows)
        if hit is None:
            grp = COUNTERS[ACTIVITY_COUNTER[source]].group
            act_cols = st.columns(ACTIVITY_COUNTER[source])
            ticks = self._span_ticks()
            a = st.window_series(grp, act_cols, None, 0, rows, [t - window_min for t in ticks], ticks, "act")
            h = st.window_series(
                grp,
                act_cols,
                None,
                0,
                rows,
                [max(t - st.minute_ring, 0) for t in ticks],
                [t - window_min for t in ticks],
                "act",
            )
            hit = self._span_cache[skey] = (a, h, rows)
        return hit[0], hit[1]

    def _expected_factor(self, end_minute: int, window_min: int) -> float:
        """Scale from active minutes before the window to the minutes expected in it (0: too little history)."""
        n_h = len(self.store.history_slots(end_minute, window_min))
        return window_min / n_h if n_h >= window_min else 0.0

    def activity(self, source: str, end_minute: int, window_min: int, rows=None):
        """Active minutes in the window and expected active minutes, per element of ``rows``."""
        self._check_cache()
        key = ("act", source, end_minute, window_min)
        if rows is None and key in self._cache:
            return self._cache[key]
        st = self.store
        grp = COUNTERS[ACTIVITY_COUNTER[source]].group
        act_cols = st.columns(ACTIVITY_COUNTER[source])
        hslots = st.history_slots(end_minute, window_min)
        if rows is None:
            active = st.running(
                ("act", source, window_min), grp, "act", act_cols, end_minute - window_min, end_minute
            ).out.copy()
            hist_active = st.running(
                ("acthist", source, window_min),
                grp,
                "act",
                act_cols,
                max(end_minute - st.minute_ring, 0),
                end_minute - window_min,
            ).out.copy()
        elif self._in_span(end_minute, rows):
            a, h = self._span_activity_series(source, window_min, rows)
            active, hist_active = a[end_minute - self._span[0]], h[end_minute - self._span[0]]
        else:
            active = np.zeros(len(rows), np.int64)
            hist_active = np.zeros(len(rows), np.int64)
            K.kpi_window_activity(
                st.ring_of(grp), rows, act_cols, st.window_slots(end_minute, window_min), hslots, active, hist_active
            )
        if len(hslots) >= window_min:
            expected = hist_active * (window_min / len(hslots))
        else:
            expected = np.zeros(len(active))
        res = (active.astype(np.float64), expected)
        if rows is None:
            self._cache[key] = res
        return res

    def _node_sizes(self, level, seg, n_nodes, cacheable) -> np.ndarray:
        """Elements per node (rows with ``seg >= 0``); cached per level for the unmasked case."""
        key = ("size", level)
        if cacheable and key in self._sizes:
            return self._sizes[key]
        out = np.bincount(seg[seg >= 0], minlength=n_nodes).astype(np.float64)
        if cacheable:
            self._sizes[key] = out
        return out

    def _rollup(self, vecs: list[np.ndarray], seg: np.ndarray, n_nodes: int) -> np.ndarray:
        x = np.ascontiguousarray(np.column_stack(vecs)) if vecs else np.zeros((len(seg), 0))
        out = np.zeros((n_nodes, x.shape[1]))
        K.kpi_segment_sum(x, seg, out)
        return out

    @staticmethod
    def _check_args(kd: KpiDef, window_min: int, service: str) -> str:
        """The effective service of ``kd`` under ``service``; ValueError for a bad window or service."""
        if window_min < 1:
            raise ValueError(f"window_min must be >= 1 minute, got {window_min}")
        svc = service or kd.service
        if svc and svc not in SERVICE_CODE:
            raise ValueError(f"service {svc!r} is not one of {SERVICES}")
        if svc and kd.group != "cdr":
            raise ValueError(f"KPI {kd.name!r} is not a call KPI; a service filter does not apply")
        return svc

    @staticmethod
    def _names(kd: KpiDef) -> list:
        """Counters a KPI reads (its samples counter last unless already among them)."""
        if kd.kind == "mos":
            names = ["latency_sum", "latency_n", "jitter_sum", "jitter_n", "loss_sum", "loss_n"]
        elif kd.kind == "quantile":
            names = []
        else:
            names = list(kd.numerator) + list(kd.denominator)
        return list(dict.fromkeys(names + [kd.samples_counter]))

    def _span_nodes(self, level: str, r: np.ndarray, element_mask, end_minute: int, rows):
        """Roll-up map of a row subset: (segment per row over the touched nodes, -1 outside the
        mask; the touched nodes' dense indices), cached inside a re-evaluation span."""
        nkey = ("nodes", level, id(r), None if element_mask is None else id(element_mask))
        in_span = self._in_span(end_minute, rows)
        hit = self._span_cache.get(nkey) if in_span else None
        if hit is not None:
            return hit[0], hit[1]
        seg = self.store.topology.element_to(level)[r].copy()
        if element_mask is not None:
            seg[~element_mask[r]] = -1
        node_ids, inv = np.unique(seg[seg >= 0], return_inverse=True)
        seg[seg >= 0] = inv
        if in_span:
            self._span_cache[nkey] = (seg, node_ids, r, element_mask)
        return seg, node_ids

    @staticmethod
    def _value(kd: KpiDef, A: dict, window_min: int, shape) -> np.ndarray:
        """Value of a ratio / per_time / mos KPI from its rolled-up counter sums ``A`` (elementwise)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if kd.kind == "ratio":
                num = sum(A[c] for c in kd.numerator)
                den = sum(A[c] for c in kd.denominator)
                return np.where(den != 0, kd.scale * num / np.where(den != 0, den, 1.0), np.nan)
            if kd.kind == "per_time":
                return kd.scale * sum(A[c] for c in kd.numerator) / (window_min * 60.0)
            lat = A["latency_sum"] / A["latency_n"]
            jit = A["jitter_sum"] / A["jitter_n"]
            loss = A["loss_sum"] / A["loss_n"]
            value = np.empty(lat.size)
            K.kpi_emodel_mos(
                np.ascontiguousarray(lat).ravel(),
                np.ascontiguousarray(jit).ravel(),
                np.ascontiguousarray(loss).ravel(),
                np.empty(lat.size),
                value,
            )
            return value.reshape(shape)

    def compute(
        self,
        kpi,
        level: str,
        end_minute: int,
        window_min: int,
        service: str = "",
        element_mask: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        min_samples: float | None = None,
    ) -> KpiResult:
        """Evaluate one KPI for every node of ``level`` over minutes ``[end - window, end)``.

        Parameters
        ----------
        kpi : str or KpiDef
        level : str
            Topology level name.
        end_minute, window_min : int
            Absolute minute where the window ends (exclusive) and its length in minutes.
        service : str
            Call service filter ("" = the KPI's own service, or all).
        element_mask : bool array over elements, optional
            Scope filter; elements outside it contribute nothing.
        rows : int array, optional
            Evaluate only nodes containing these elements (others get status no_scope);
            used to re-evaluate the nodes touched by late data.
        min_samples : float, optional
            Override the KPI's ``min_samples``.

        Returns
        -------
        KpiResult

        Raises
        ------
        ValueError
            Unknown KPI, level or service, or a non-positive window.
        """
        kd = self.get(kpi)
        topo = self.store.topology
        n_nodes = topo.n_nodes(level)
        svc = self._check_args(kd, window_min, service)
        if rows is None and kd.kind == "ratio" and self.fused_ratio:
            return self._ratio_all(kd, level, end_minute, window_min, svc, element_mask, min_samples)
        r = self._all_rows if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        # element level over all elements: the roll-up is the identity (0 + x == x), skip it;
        # elements outside a scope mask become "no scope" nodes with 0 samples, as a roll-up gives
        identity = rows is None and level == topo.element_level
        n_full, node_ids = n_nodes, None
        if rows is not None:
            # a subset (re-evaluation): work on the nodes it touches only, scatter back at the end
            seg, node_ids = self._span_nodes(level, r, element_mask, end_minute, rows)
            n_nodes = len(node_ids)
        else:
            seg = None if identity else topo.element_to(level)[r].copy()
            if element_mask is not None and seg is not None:
                seg[~element_mask[r]] = -1
        samples_c = kd.samples_counter
        names = self._names(kd)
        sums = self.counter_sums(names, svc, end_minute, window_min, rows)
        gap = kd.source in self.gap_sources
        if gap:
            active, expected = self.activity(kd.source, end_minute, window_min, rows)
        if identity:
            A = {n: sums[n] for n in names}
            if element_mask is not None:
                A = {n: np.where(element_mask, v, 0.0) for n, v in A.items()}
            n_el = np.ones(n_nodes) if element_mask is None else element_mask.astype(np.float64)
            n_act, n_exp = (active, expected) if gap else (np.zeros(n_nodes), np.zeros(n_nodes))
        else:
            vecs = [sums[n] for n in names] + ([active, expected] if gap else [])
            agg = self._rollup(vecs, seg, n_nodes)
            A = {n: agg[:, j] for j, n in enumerate(names)}
            n_act, n_exp = (agg[:, -2], agg[:, -1]) if gap else (np.zeros(n_nodes), np.zeros(n_nodes))
            n_el = self._node_sizes(level, seg, n_nodes, rows is None and element_mask is None)
        if kd.kind == "quantile":
            h = self.hist_sums(end_minute, window_min, rows, copy=False)
            value = np.full(n_nodes, np.nan)
            lo_ms, bpo = self.store.hist_lo_ms, float(self.store.hist_bins_per_octave)
            if identity:
                sel = self._all_rows if element_mask is None else np.flatnonzero(element_mask)
                K.kpi_hist_quantile_rows(h, np.ascontiguousarray(sel, dtype=np.int64), kd.q, lo_ms, bpo, value)
            else:
                hn = np.zeros((n_nodes, h.shape[1]))
                K.kpi_segment_sum(h, seg, hn)
                K.kpi_hist_quantile(hn, kd.q, lo_ms, bpo, value)
        else:
            value = self._value(kd, A, window_min, (n_nodes,))
        samples = A[samples_c]
        ms = kd.min_samples if min_samples is None else float(min_samples)
        status = np.empty(n_nodes, np.int8)
        out_value = np.empty(n_nodes)
        K.kpi_status(
            np.ascontiguousarray(value, dtype=np.float64),
            np.ascontiguousarray(samples, dtype=np.float64),
            float(ms),
            np.ascontiguousarray(n_act, dtype=np.float64),
            np.ascontiguousarray(n_exp, dtype=np.float64),
            self.gap_fraction,
            np.ascontiguousarray(n_el, dtype=np.float64),
            status,
            out_value,
        )
        value = out_value
        if node_ids is not None:
            full = KpiResult(np.full(n_full, np.nan), np.zeros(n_full), np.full(n_full, STATUS_NO_SCOPE, np.int8))
            full.value[node_ids], full.samples[node_ids], full.status[node_ids] = value, samples, status
            return full
        return KpiResult(value, samples, status)

    def _ratio_all(
        self, kd: KpiDef, level: str, end_minute: int, window_min: int, svc: str, element_mask, min_samples
    ) -> KpiResult:
        """:meth:`compute` of a ratio KPI over all elements in one kernel call
        (:func:`kernels.kpi.kpi_ratio_nodes`: per-service columns of the running window sums
        added, rolled up, value and status), the same additions in the same order as the
        step-by-step path (:meth:`counter_sums`, :meth:`_rollup`, :meth:`_value`, ``kpi_status``),
        so bit-identical to it, without its per-counter arrays and calls."""
        st = self.store
        topo = st.topology
        n_nodes = topo.n_nodes(level)
        grp = kd.group
        names = self._names(kd)
        key = ("ratio_plan", kd.name, svc, window_min)
        plan = self._plans.get(key)
        if plan is None:
            cols = [st.columns(c, svc if grp == "cdr" else "") for c in names]
            ptr = np.zeros(len(names) + 1, np.int64)
            np.cumsum([len(c) for c in cols], out=ptr[1:])
            pos = {c: j for j, c in enumerate(names)}
            plan = self._plans[key] = (
                np.concatenate(cols),
                ptr,
                np.array([pos[c] for c in kd.numerator], np.int64),
                np.array([pos[c] for c in kd.denominator], np.int64),
                pos[kd.samples_counter],
                None,
                None,
            )
        ring_cols, ptr, num_k, den_k, samp_k, run_ref, js = plan
        run = st.running(("win", grp, window_min), grp, "sum", ring_cols, end_minute - window_min, end_minute)
        if run_ref is not run:  # positions of the columns in this aggregate (fixed while it lives)
            js = np.array([run.colpos[int(c)] for c in ring_cols], np.int64)
            self._plans[key] = plan[:5] + (run, js)
        if level == topo.element_level:
            seg = self._all_rows if element_mask is None else np.where(element_mask, self._all_rows, -1)
        else:
            seg = topo.element_to(level).copy()
            if element_mask is not None:
                seg[~element_mask] = -1
        n_el = self._node_sizes(level, seg, n_nodes, element_mask is None)
        if kd.source in self.gap_sources:
            active, expected = self.activity(kd.source, end_minute, window_min, None)
            extra = np.ascontiguousarray(np.column_stack([active, expected]))
        else:
            extra = np.zeros((len(seg), 0))
        agg = np.zeros((n_nodes, len(names) + extra.shape[1]))
        value, samples, status = np.empty(n_nodes), np.empty(n_nodes), np.empty(n_nodes, np.int8)
        ms = kd.min_samples if min_samples is None else float(min_samples)
        K.kpi_ratio_nodes(
            run.out,
            ptr,
            js,
            extra,
            seg,
            num_k,
            den_k,
            samp_k,
            float(kd.scale),
            float(ms),
            self.gap_fraction,
            n_el,
            agg,
            value,
            samples,
            status,
        )
        return KpiResult(value, samples, status)

    def compute_span(
        self,
        kpi,
        level: str,
        t_from: int,
        t_to: int,
        window_min: int,
        service: str = "",
        element_mask: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        min_samples: float | None = None,
        nodes: np.ndarray | None = None,
    ) -> KpiResult:
        """:meth:`compute` at every end minute ``t_from..t_to`` at once, ``(ticks, nodes)`` arrays.

        Inside a re-evaluation span (:meth:`begin_series`) for a row subset, the window sums of
        all ticks come from the span's series and are rolled up, turned into values and statuses
        in one pass each (one roll-up of ``ticks x counters`` columns instead of one per tick), so
        a re-evaluation costs a few array operations per lifecycle instead of a few per lifecycle
        and tick. Row ``k`` equals ``compute(..., t_from + k, ...)`` exactly (the same operations
        element by element, roll-up sums in the same row order). Elsewhere it stacks
        :meth:`compute` per tick.

        Parameters
        ----------
        nodes : int array, optional
            Return only these nodes' columns (in this order) instead of every node of the
            level (a re-evaluation needs a few nodes of many).

        Returns
        -------
        KpiResult
            ``value``, ``samples``, ``status`` of shape ``(t_to - t_from + 1, n_nodes(level))``
            (``len(nodes)`` columns with ``nodes``).

        Raises
        ------
        ValueError
            As :meth:`compute`; ``t_to < t_from``.
        """
        if t_to < t_from:
            raise ValueError(f"compute_span: t_to ({t_to}) must not be before t_from ({t_from})")
        if rows is None or self._span is None or not self._span[0] <= t_from <= t_to <= self._span[1]:
            res = [
                self.compute(kpi, level, t, window_min, service, element_mask, rows, min_samples)
                for t in range(t_from, t_to + 1)
            ]
            sel = slice(None) if nodes is None else nodes
            return KpiResult(
                np.stack([r.value[sel] for r in res]),
                np.stack([r.samples[sel] for r in res]),
                np.stack([r.status[sel] for r in res]),
            )
        kd = self.get(kpi)
        topo = self.store.topology
        n_full = topo.n_nodes(level)
        svc = self._check_args(kd, window_min, service)
        r = np.ascontiguousarray(rows, dtype=np.int64)
        seg, node_ids = self._span_nodes(level, r, element_mask, t_from, rows)
        n_nodes = len(node_ids)
        n_t = t_to - t_from + 1
        k0 = t_from - self._span[0]
        names = self._names(kd)
        todo: dict[str, list] = {"cdr": [], "elem": []}
        for c in names:
            todo[COUNTERS[c].group].append(c)
        series = self._span_counter_series(todo, svc, window_min, rows)
        vecs = [series[c][k0 : k0 + n_t] for c in names]
        gap = kd.source in self.gap_sources
        if gap:
            a, h = self._span_activity_series(kd.source, window_min, rows)
            active = a[k0 : k0 + n_t].astype(np.float64)
            expected = np.zeros(active.shape)
            for k in range(n_t):
                f = self._expected_factor(t_from + k, window_min)
                if f:
                    expected[k] = h[k0 + k] * f
            vecs += [active, expected]
        # one roll-up for every tick: column block j * n_t + k holds vector j at tick k
        x = np.ascontiguousarray(np.concatenate([v.T for v in vecs], axis=1))
        agg = np.zeros((n_nodes, x.shape[1]))
        K.kpi_segment_sum(x, seg, agg)
        A = {c: agg[:, j * n_t : (j + 1) * n_t].T for j, c in enumerate(names)}
        if gap:
            n_act, n_exp = agg[:, -2 * n_t : -n_t].T, agg[:, -n_t:].T
        else:
            n_act = n_exp = np.zeros((n_t, n_nodes))
        n_el = self._node_sizes(level, seg, n_nodes, False)
        if kd.kind == "quantile":
            hs = self._span_hist_series(window_min, rows)
            value = np.full((n_t, n_nodes), np.nan)
            lo_ms, bpo = self.store.hist_lo_ms, float(self.store.hist_bins_per_octave)
            for k in range(n_t):
                hn = np.zeros((n_nodes, hs.shape[2]))
                K.kpi_segment_sum(hs[k0 + k], seg, hn)
                K.kpi_hist_quantile(hn, kd.q, lo_ms, bpo, value[k])
        else:
            value = self._value(kd, A, window_min, (n_t, n_nodes))
        samples = A[kd.samples_counter]
        ms = kd.min_samples if min_samples is None else float(min_samples)
        status = np.empty(n_t * n_nodes, np.int8)
        out_value = np.empty(n_t * n_nodes)
        K.kpi_status(
            np.ascontiguousarray(value, dtype=np.float64).ravel(),
            np.ascontiguousarray(samples, dtype=np.float64).ravel(),
            float(ms),
            np.ascontiguousarray(n_act, dtype=np.float64).ravel(),
            np.ascontiguousarray(n_exp, dtype=np.float64).ravel(),
            self.gap_fraction,
            np.tile(n_el, n_t),
            status,
            out_value,
        )
        out_value, status = out_value.reshape(n_t, n_nodes), status.reshape(n_t, n_nodes)
        if nodes is not None:
            # the asked nodes' columns; nodes without a row of the subset are out of scope
            pos = np.minimum(np.searchsorted(node_ids, nodes), max(n_nodes - 1, 0))
            hit = (node_ids[pos] == nodes) if n_nodes else np.zeros(len(nodes), bool)
            if hit.all():
                return KpiResult(out_value[:, pos], samples[:, pos], status[:, pos])
            node_ids, n_full = nodes[hit], len(nodes)
            out_value, samples, status = out_value[:, pos[hit]], samples[:, pos[hit]], status[:, pos[hit]]
            cols = np.flatnonzero(hit)
        else:
            cols = node_ids
        full = KpiResult(
            np.full((n_t, n_full), np.nan), np.zeros((n_t, n_full)), np.full((n_t, n_full), STATUS_NO_SCOPE, np.int8)
        )
        full.value[:, cols] = out_value
        full.samples[:, cols] = samples
        full.status[:, cols] = status
        return full


def _int_at_least(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)
