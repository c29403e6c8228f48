"""KPI definitions as data: the counters kept per element and minute, statuses, reject reasons,
:class:`KpiDef` and the built-in registry.

Counters live in ring groups ("cdr": per service, "elem": equipment and QoS probes); a KPI is a
ratio of window sums of counters (3GPP TS 32.401 aggregation), a rate per unit of time, a
latency quantile from the latency histogram, or the E-model MOS (:func:`emodel_mos`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from kernels import kpi as K
from kernels.emodel import kpi_emodel_mos
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
    "outage_reports",
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
    COUNTERS[_n] = Counter(_n, "elem", _i, "equip" if _i < K.E_QOS_ROWS or _i == K.E_OUTAGE_REPORTS else "qos")

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


# ---- E-model -----------------------------------------------------------------------------
EMODEL_G711_PLC = (0.0, 25.1)
"""Equipment impairment ``Ie`` and packet-loss robustness ``Bpl`` of G.711 with packet loss
concealment under random loss (ITU-T G.113 Appendix I): the codec ``mos_emodel`` assumes."""


def emodel(latency_ms, jitter_ms, loss_pct, ie: float = EMODEL_G711_PLC[0], bpl: float = EMODEL_G711_PLC[1]):
    """R-factor and MOS of the simplified ITU-T G.107 E-model (:func:`kernels.emodel.kpi_emodel_mos`).

    Parameters
    ----------
    latency_ms, jitter_ms, loss_pct : float or array
        Mean one-way latency, jitter (ms) and packet loss (percent); broadcast together.
    ie, bpl : float
        The codec's equipment impairment and packet-loss robustness (ITU-T G.113 Appendix I;
        default G.711 with packet loss concealment: 0 and 25.1; G.729A with VAD: 11 and 19).

    Returns
    -------
    r, mos : float64 arrays
        The R-factor and the MOS (1 for R < 0, 4.5 for R > 100, NaN where an input is NaN).

    Raises
    ------
    ValueError
        If ``ie`` is outside ``[0, 95)`` or ``bpl`` is not positive.

    Examples
    --------
    >>> r, mos = emodel(0.0, 0.0, 0.0)  # no impairment: the G.107 default R = 93.2
    >>> round(float(r[0]), 1), round(float(mos[0]), 2)
    (93.2, 4.41)
    """
    if not (math.isfinite(ie) and 0.0 <= ie < 95.0):
        raise ValueError(f"ie must be in [0, 95), got {ie}; see ITU-T G.113 Appendix I for codec values")
    if not (math.isfinite(bpl) and bpl > 0.0):
        raise ValueError(f"bpl must be a positive number, got {bpl}; see ITU-T G.113 Appendix I for codec values")
    lat, jit, loss = (
        np.ascontiguousarray(a, dtype=np.float64).ravel()
        for a in np.broadcast_arrays(
            np.atleast_1d(np.asarray(latency_ms, dtype=np.float64)),
            np.atleast_1d(np.asarray(jitter_ms, dtype=np.float64)),
            np.atleast_1d(np.asarray(loss_pct, dtype=np.float64)),
        )
    )
    r, mos = np.empty(lat.size), np.empty(lat.size)
    kpi_emodel_mos(lat, jit, loss, float(ie), float(bpl), r, mos)
    return r, mos


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
        ``quantile``: quantile ``q`` of the latency histogram (ms), within a factor
        ``2 ** (1 / hist_bins_per_octave)`` (26 % relative error at the default 3 bins per octave) of
        the exact order statistic of rank ``ceil(q n)`` (``np.quantile(..., method="inverted_cdf")``)
        for latencies in ``[hist_lo_ms, hist_lo_ms * 2 ** hist_octaves)``, within ``hist_lo_ms``
        (absolute) below that range; ``mos``: the E-model MOS
        from the window's mean latency, jitter and loss (:func:`emodel`, G.711 with loss concealment).
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
        KpiDef(
            "outage_interval_pct",
            ("outage_reports",),
            ("avail_reports",),
            "ratio",
            100.0,
            samples="avail_reports",
            unit="%",
            description="reporting intervals with any unavailable time, per reporting interval (counts "
            "outages, not their length: a failing element's repeated glitches, not one chance outage)",
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


# ---- KPI results ------------------------------------------------------------------------
@dataclass
class KpiResult:
    """KPI values of every node of one level: value (NaN unless status ok), samples, status."""

    value: np.ndarray
    samples: np.ndarray
    status: np.ndarray
