"""SLA rules and SLOs as validated data (dicts, JSON, TOML), lifecycle events, and the default
rule set calibrated on the normal synthetic network."""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kernels import kpi as K
from telcoanalytics.kpi import (
    KpiDef,
    kpi_registry,
)
from telcoanalytics.records import EQUIPMENT_CLASS_CODE, SERVICE_CODE, SERVICES, TECHNOLOGIES, VENDORS
from telcoanalytics.topology.model import Topology

SEVERITIES = ("page", "ticket", "critical", "major", "minor", "warning")
COMPARATORS = ("<", "<=", ">", ">=")


def threshold_params(ev) -> tuple:
    """A threshold rule's scalars in the order the SLA kernels take them: minimum samples to fire
    and to clear, comparator index, threshold and clear threshold."""
    return (
        float(ev.min_samples),
        float(ev.clear_min_samples),
        COMPARATORS.index(ev.comparator),
        float(ev.threshold),
        float(ev.clear_threshold),
    )


EVENT_STATES = {K.EV_PENDING: "pending", K.EV_FIRING: "firing", K.EV_RESOLVED: "resolved", K.EV_CANCELLED: "resolved"}

SRE_BURN_WINDOWS = (
    {"severity": "page", "factor": 14.4, "long": "1h", "short": "5m"},
    {"severity": "page", "factor": 6.0, "long": "6h", "short": "30m"},
    {"severity": "ticket", "factor": 1.0, "long": "3d", "short": "6h"},
)
"""Multi-window multi-burn-rate alerts of the Google SRE workbook (ch. 5, table 5-8)."""

_ATTR_CODES = {
    "equipment_class": EQUIPMENT_CLASS_CODE,
    "vendor": {v: i for i, v in enumerate(VENDORS)},
    "technology": {v: i for i, v in enumerate(TECHNOLOGIES)},
}


@dataclass
class SlaEvent:
    """One lifecycle transition of an SLA rule on one scope node."""

    rule: str
    kpi: str
    severity: str
    state: str  # "pending" | "firing" | "resolved"
    scope_level: str
    scope_id: int
    service: str
    t_ms: int  # time of this transition (the evaluation tick)
    start_ms: int  # when the violation began (first breaching tick)
    end_ms: int  # -1 unless resolved
    value: float  # KPI value (burn rate for SLO alerts) at the transition
    threshold: float
    worst_value: float
    summary: str
    window_min: int = 0  # the rule's window (the short window of a burn-rate pair)
    comparator: str = ""  # the rule's comparator (">=" for burn rates)
    unit: str = ""  # unit of value and threshold ("x" for burn rates)
    kind: str = "threshold"  # "threshold" | "burn"

    def to_dict(self) -> dict:
        return asdict(self)


# ---- durations / validation helpers --------------------------------------------------------
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration_s(v, where: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"30d"``; ``ValueError`` names ``where``."""
    if isinstance(v, bool):
        raise ValueError(f"{where}: expected a duration such as '5m' or seconds, got {v!r}")
    if isinstance(v, (int, float, np.integer, np.floating)):
        s = float(v)
    elif isinstance(v, str) and _DUR.match(v):
        num, unit = _DUR.match(v).groups()
        s = float(num) * _UNIT_S[unit]
    else:
        raise ValueError(f"{where}: expected a duration such as '5m', '1h', '30d' or seconds, got {v!r}")
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"{where}: duration must be >= 0, got {v!r}")
    return s


def _minutes(v, where: str, min_minutes: int = 0) -> int:
    s = parse_duration_s(v, where)
    if s % 60 != 0:
        raise ValueError(f"{where}: rules are evaluated once a minute, so durations must be whole minutes; got {v!r}")
    m = int(s // 60)
    if m < min_minutes:
        raise ValueError(f"{where}: must be at least {min_minutes} minute(s), got {v!r}")
    return m


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError(f"{where}: expected a finite number, got {v!r}")
    return float(v)


def _check_keys(d: dict, allowed: set, where: str):
    extra = set(d) - allowed
    if extra:
        raise ValueError(f"{where}: unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}")


def _scope_filter(flt, where: str) -> dict:
    if flt is None:
        return {}
    if not isinstance(flt, dict):
        raise ValueError(f"{where}.filter: expected a dict such as {{'equipment_class': 'macro_cell'}}, got {flt!r}")
    out = {}
    for k, v in flt.items():
        vals = v if isinstance(v, (list, tuple)) else [v]
        codes = []
        for x in vals:
            if isinstance(x, str):
                table = _ATTR_CODES.get(k)
                if table is None or x not in table:
                    raise ValueError(
                        f"{where}.filter[{k!r}]: value {x!r} is not a known name"
                        + (f"; known: {sorted(table)}" if table else "; use integer codes or ids")
                    )
                codes.append(int(table[x]))
            elif isinstance(x, (int, np.integer)) and not isinstance(x, bool):
                codes.append(int(x))
            else:
                raise ValueError(f"{where}.filter[{k!r}]: expected names or integer codes, got {x!r}")
        out[str(k)] = codes
    return out


# ---- rules ---------------------------------------------------------------------------------
@dataclass
class SlaRule:
    """A threshold rule: ``kpi comparator threshold`` over ``window`` sustained ``for``.

    Fields (dict keys): name, kpi, level ("element"), filter ({attribute or level: values}),
    service (""), comparator, threshold, window ("5m"), for ("0m"), clear_threshold (default:
    threshold), clear_for ("0m"), min_samples (default: the KPI's), clear_min_samples (samples
    enough to *resolve*, default min_samples: a cell whose traffic falls back after congestion
    can then resolve on fewer calls than it needs to fire), severity ("major"), description.
    """

    name: str
    kpi: str
    comparator: str
    threshold: float
    level: str = "element"
    filter: dict = field(default_factory=dict)
    service: str = ""
    window_min: int = 5
    for_min: int = 0
    clear_threshold: float | None = None
    clear_for_min: int = 0
    min_samples: float | None = None
    severity: str = "major"
    description: str = ""
    clear_min_samples: float | None = None

    KEYS = {
        "type",
        "name",
        "kpi",
        "comparator",
        "threshold",
        "level",
        "filter",
        "service",
        "window",
        "for",
        "clear_threshold",
        "clear_for",
        "min_samples",
        "clear_min_samples",
        "severity",
        "description",
        "scope",
    }

    @classmethod
    def from_dict(cls, d: dict, kpis: dict) -> SlaRule:
        name, where, d = _named(d, "an SLA rule", "rule", cls.KEYS)
        for req in ("kpi", "comparator", "threshold"):
            if req not in d:
                raise ValueError(f"{where}: missing required field {req!r}")
        if d["kpi"] not in kpis:
            raise ValueError(f"{where}.kpi: unknown KPI {d['kpi']!r}; known: {', '.join(sorted(kpis))}")
        comp = d["comparator"]
        if comp not in COMPARATORS:
            raise ValueError(f"{where}.comparator: {comp!r} is not one of {COMPARATORS}")
        thr = _number(d["threshold"], f"{where}.threshold")
        clr = (
            _number(d["clear_threshold"], f"{where}.clear_threshold") if d.get("clear_threshold") is not None else None
        )
        if clr is not None and ((comp in ("<", "<=") and clr < thr) or (comp in (">", ">=") and clr > thr)):
            raise ValueError(
                f"{where}.clear_threshold: {clr} lies on the breaching side of threshold {thr} "
                f"for comparator {comp!r}; hysteresis needs it on the healthy side"
            )
        sev = d.get("severity", "major")
        if sev not in SEVERITIES:
            raise ValueError(f"{where}.severity: {sev!r} is not one of {SEVERITIES}")
        svc = d.get("service", "") or ""
        _check_service(svc, kpis[d["kpi"]], where)
        ms = d.get("min_samples")
        if ms is not None and (_number(ms, f"{where}.min_samples") < 0):
            raise ValueError(f"{where}.min_samples: must be >= 0, got {ms}")
        cms = d.get("clear_min_samples")
        if cms is not None and (_number(cms, f"{where}.clear_min_samples") < 0):
            raise ValueError(f"{where}.clear_min_samples: must be >= 0, got {cms}")
        return cls(
            name,
            d["kpi"],
            comp,
            thr,
            str(d.get("level", "element")),
            _scope_filter(d.get("filter"), where),
            svc,
            _minutes(d.get("window", "5m"), f"{where}.window", 1),
            _minutes(d.get("for", 0), f"{where}.for"),
            clr,
            _minutes(d.get("clear_for", 0), f"{where}.clear_for"),
            None if ms is None else float(ms),
            sev,
            str(d.get("description", "")),
            None if cms is None else float(cms),
        )

    def to_dict(self) -> dict:
        return {
            "type": "threshold",
            "name": self.name,
            "kpi": self.kpi,
            "comparator": self.comparator,
            "threshold": self.threshold,
            "level": self.level,
            "filter": self.filter,
            "service": self.service,
            "window": self.window_min * 60,
            "for": self.for_min * 60,
            "clear_threshold": self.clear_threshold,
            "clear_for": self.clear_for_min * 60,
            "min_samples": self.min_samples,
            "clear_min_samples": self.clear_min_samples,
            "severity": self.severity,
            "description": self.description,
        }


@dataclass
class SloRule:
    """An error-budget SLO over a ratio KPI (numerator = good events, denominator = all events).

    Fields (dict keys, with ``type = "slo"``): name, kpi, objective (0 < o < 1), period ("30d"),
    level, filter, service, min_samples (per window, default 1), windows (list of {severity,
    factor, long, short[, min_samples]}; default :data:`SRE_BURN_WINDOWS`; a window's own
    ``min_samples`` overrides the rule's for that pair, e.g. to give a 1x ticket the hundreds of
    events a 1x burn needs to stand out from binomial noise), clear_for (burn below the factor
    this long before resolving, default "0m"), description.
    """

    name: str
    kpi: str
    objective: float
    period_min: int = 30 * 1440
    level: str = "element"
    filter: dict = field(default_factory=dict)
    service: str = ""
    min_samples: float = 1.0
    windows: tuple = ()  # tuples (severity, factor, long_min, short_min)
    description: str = ""
    clear_for_min: int = 0
    windows_min_samples: tuple = ()  # per window: min samples or None (= min_samples)

    KEYS = {
        "type",
        "name",
        "kpi",
        "objective",
        "period",
        "level",
        "filter",
        "service",
        "min_samples",
        "windows",
        "description",
        "scope",
        "clear_for",
    }

    @classmethod
    def from_dict(cls, d: dict, kpis: dict) -> SloRule:
        name, where, d = _named(d, "an SLO", "slo", cls.KEYS)
        for req in ("kpi", "objective"):
            if req not in d:
                raise ValueError(f"{where}: missing required field {req!r}")
        kd = kpis.get(d["kpi"])
        if kd is None:
            raise ValueError(f"{where}.kpi: unknown KPI {d['kpi']!r}; known: {', '.join(sorted(kpis))}")
        if kd.kind != "ratio":
            raise ValueError(
                f"{where}.kpi: {d['kpi']!r} is a {kd.kind} KPI; an SLO needs a ratio KPI of "
                "good events over all events (e.g. call_setup_success_pct)"
            )
        obj = _number(d["objective"], f"{where}.objective")
        if not 0.0 < obj < 1.0:
            raise ValueError(f"{where}.objective: must be a fraction in (0, 1) such as 0.999, got {obj}")
        svc = d.get("service", "") or ""
        _check_service(svc, kd, where)
        wins, wms = [], []
        for i, w in enumerate(d.get("windows", SRE_BURN_WINDOWS)):
            ww = f"{where}.windows[{i}]"
            if not isinstance(w, dict):
                raise ValueError(f"{ww}: expected a dict with severity, factor, long, short; got {w!r}")
            _check_keys(w, {"severity", "factor", "long", "short", "min_samples"}, ww)
            if w.get("min_samples") is not None:
                if _number(w["min_samples"], f"{ww}.min_samples") < 0:
                    raise ValueError(f"{ww}.min_samples: must be >= 0, got {w['min_samples']}")
                wms.append(float(w["min_samples"]))
            else:
                wms.append(None)
            sev = w.get("severity", "page")
            if sev not in SEVERITIES:
                raise ValueError(f"{ww}.severity: {sev!r} is not one of {SEVERITIES}")
            f = _number(w.get("factor"), f"{ww}.factor")
            if f <= 0:
                raise ValueError(f"{ww}.factor: must be > 0, got {f}")
            lo = _minutes(w.get("long"), f"{ww}.long", 1)
            sh = _minutes(w.get("short"), f"{ww}.short", 1)
            if sh > lo:
                raise ValueError(f"{ww}: the short window ({sh} min) must not be longer than the long one ({lo} min)")
            wins.append((sev, f, lo, sh))
        if not wins:
            raise ValueError(f"{where}.windows: needs at least one burn-rate window")
        ms = _number(d.get("min_samples", 1.0), f"{where}.min_samples")
        return cls(
            name,
            d["kpi"],
            obj,
            _minutes(d.get("period", "30d"), f"{where}.period", 1),
            str(d.get("level", "element")),
            _scope_filter(d.get("filter"), where),
            svc,
            ms,
            tuple(wins),
            str(d.get("description", "")),
            _minutes(d.get("clear_for", 0), f"{where}.clear_for"),
            tuple(wms) if any(m is not None for m in wms) else (),
        )

    def window_min_samples(self, i: int) -> float:
        """Minimum samples of burn-rate window pair ``i``."""
        m = self.windows_min_samples[i] if i < len(self.windows_min_samples) else None
        return self.min_samples if m is None else m

    def to_dict(self) -> dict:
        return {
            "type": "slo",
            "name": self.name,
            "kpi": self.kpi,
            "objective": self.objective,
            "period": self.period_min * 60,
            "level": self.level,
            "filter": self.filter,
            "service": self.service,
            "min_samples": self.min_samples,
            "description": self.description,
            "clear_for": self.clear_for_min * 60,
            "windows": [
                dict(
                    {"severity": s, "factor": f, "long": lo * 60, "short": sh * 60},
                    **(
                        {"min_samples": self.windows_min_samples[i]}
                        if i < len(self.windows_min_samples) and self.windows_min_samples[i] is not None
                        else {}
                    ),
                )
                for i, (s, f, lo, sh) in enumerate(self.windows)
            ],
        }


def _named(d: dict, what: str, label: str, keys) -> tuple[str, str, dict]:
    """``(name, where, d)`` of a rule or SLO dict: its non-empty name, how errors name it, and the
    dict with its scope flattened and its keys checked against ``keys``."""
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} needs a non-empty 'name', got keys {sorted(d)}")
    where = f"{label} {name!r}"
    d = _flatten_scope(d, where)
    _check_keys(d, keys, where)
    return name, where, d


def _flatten_scope(d: dict, where: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a dict, got {type(d).__name__}")
    d = dict(d)
    sc = d.pop("scope", None)
    if sc is not None:
        if not isinstance(sc, dict):
            raise ValueError(f"{where}.scope: expected a dict with level/filter/service, got {sc!r}")
        _check_keys(sc, {"level", "filter", "service"}, f"{where}.scope")
        for k, v in sc.items():
            if k in d:
                raise ValueError(f"{where}: {k!r} given both in scope and at top level")
            d[k] = v
    return d


def _check_service(svc: str, kd: KpiDef, where: str):
    if svc and svc not in SERVICE_CODE:
        raise ValueError(f"{where}.service: {svc!r} is not one of {SERVICES}")
    if svc and kd.group != "cdr":
        raise ValueError(f"{where}.service: KPI {kd.name!r} is not a call KPI; a service filter does not apply")


def load_rules(src, kpis=None) -> list:
    """Parse and validate rules from a list of dicts, a dict ``{"rules": [...], "slos": [...]}``
    or a ``.json`` / ``.toml`` file (TOML: ``[[rule]]`` and ``[[slo]]`` tables).

    Parameters
    ----------
    src : list, dict, str or Path
    kpis : dict name -> KpiDef, optional
        Known KPIs (default: built-ins).

    Returns
    -------
    list of SlaRule and SloRule

    Raises
    ------
    ValueError
        On any invalid rule, naming the rule and field; on duplicate rule names; on an
        unreadable file.
    """
    kpis = kpis if kpis is not None else kpi_registry()
    if isinstance(src, (str, Path)):
        p = Path(src)
        if p.suffix not in (".json", ".toml"):
            raise ValueError(f"rules file {p} must end in .json or .toml")
        try:
            text = p.read_text()
            src = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read rules file {p}: {e}") from None
    items: list = []
    if isinstance(src, dict):
        _check_keys(src, {"rule", "rules", "slo", "slos"}, "rules document")
        for k in ("rule", "rules"):
            items += [dict(r, type=r.get("type", "threshold")) if isinstance(r, dict) else r for r in src.get(k, [])]
        for k in ("slo", "slos"):
            items += [dict(r, type="slo") if isinstance(r, dict) else r for r in src.get(k, [])]
    elif isinstance(src, (list, tuple)):
        items = list(src)
    else:
        raise ValueError(
            f"rules must be a list of dicts, a dict with 'rules'/'slos', or a file path; got {type(src).__name__}"
        )
    out = []
    for i, r in enumerate(items):
        if isinstance(r, (SlaRule, SloRule)):
            out.append(r)
            continue
        if not isinstance(r, dict):
            raise ValueError(f"rule #{i}: expected a dict, got {type(r).__name__}")
        typ = r.get("type", "threshold")
        if typ == "threshold":
            out.append(SlaRule.from_dict(r, kpis))
        elif typ == "slo":
            out.append(SloRule.from_dict(r, kpis))
        else:
            raise ValueError(f"rule #{i} ({r.get('name', '?')!r}).type: {typ!r} is not 'threshold' or 'slo'")
    names = [r.name for r in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"rule names must be unique; duplicated: {sorted(dup)}")
    return out


LATENCY_P95_THRESHOLDS_MS = {"5g": 66.0, "4g": 170.0, "3g": 300.0, "2g": 800.0, "ip": 10.0}
"""Latency p95 alert line per technology of :func:`default_rules`: above the highest 30-minute p95
a healthy cell of that technology holds for the rule's 15 minutes on the normal synthetic network,
busy hours included (see the calibration in :func:`default_rules`; cells of one technology differ
~4x, and the p95 comes from histogram bins about 1.22x apart)."""


OUTAGE_INTERVALS_THRESHOLD_PCT = 40.0
"""``element_availability`` of :func:`default_rules` fires when more than this share of an element's
reporting intervals in 30 minutes had unavailable time: 3 of the last 6 five-minute intervals (3 of
5 when one report is missing). Chosen from the synthetic generator's outage model, not fitted: a
healthy element has an outage in an interval with probability p = 0.0005, so a 6-interval window
holds 3 or more with probability C(6,3) p^3 ~ 2.5e-9, i.e. 288 windows x 10,000 elements x 2.5e-9
~ 0.007 chance firings per day at 10,000 elements (one in ~140 days), while "2 of 6" would fire
~10 a day (15 p^2 x 2.88M). A failing element (outage in 60 % of its intervals) reaches 3 of 6 in
a median 25 minutes; a failure of 30-120 minutes with fewer than 3 outages in any 6 intervals
(~3 % of them, by simulation of that model) is left to the loss rule and the detector."""


def default_rules(topology: Topology | None = None) -> list:
    """A rule set for the synthetic network (see Notes): call KPIs per cell and site, availability,
    latency p95 per technology and a 98 % call-success SLO per site with SRE burn-rate alerts (the
    synthetic network's baseline share of failed setups is about 0.7 %, so 99.9 % would burn
    constantly).

    Parameters
    ----------
    topology : Topology, optional
        When given and it has no ``technology`` attribute, one latency rule (p95 > 400 ms) replaces
        the per-technology ones.

    Returns
    -------
    list of SlaRule and SloRule

    Notes
    -----
    Tuned on seeded synthetic days (2,000 elements x 12 h, seeds 7 and 11) so that firing alerts
    match injected scenarios (``tests/test_sla_synthetic.py`` holds the precision/recall check):

    * Call rules need 20 attempts to fire but resolve on 3 once traffic falls back.
    * Availability counts outages, not their length (KPI ``outage_interval_pct``): the generator
      gives every element a glitch of 1-300 unavailable seconds in 0.05 % of PM intervals, a
      failing element 5-120 s in 60 % of its intervals. No threshold on unavailable time separates
      two chance glitches from a failure's glitches (the earlier rule, availability < 99 % over
      20 minutes for 25 minutes, fired on two glitches within 20 minutes: ~2.6 a day on 10,000
      elements, 3 of the 4 false incidents of the default day). The number of intervals with an
      outage does: more than 40 % of the last 30 minutes' reports (3 of 6) fires by chance ~0.007
      times a day on 10,000 elements (:data:`OUTAGE_INTERVALS_THRESHOLD_PCT`), and a failure
      reaches it in a median 25 minutes. A hard outage (every interval down) fires at its third
      interval.
    * Packet loss: healthy elements stay below ~0.1 % over 15 minutes (before the generator kept
      undisturbed load below the congestion onset, a few busy cells reached 0.45-0.67 % in the
      busy hours, which 0.8 % cleared; the threshold was kept). A failing
      element (also a switch, which reports no unavailable seconds) adds 1-4 points, congestion
      adds some too.
    * Latency p95: healthy cells of one technology differ about 4x, so one absolute line either
      misses mild degradations (3-8x drifts of a cell's own baseline, which the anomaly
      detector judges against that baseline) or fires on slow healthy cells in the busy hours;
      one rule per technology (:data:`LATENCY_P95_THRESHOLDS_MS`) above its healthy edge.

    Calibration against the normal network (:mod:`telcoanalytics.sla.calibration`: no scenario,
    2,000 elements x 1 day, busy hours included, each rule's KPI over its window sampled every
    5 minutes on every node with the rule's min_samples). "Held" is the highest level one node
    held for the rule's ``for`` (what can fire it), max over calibration seeds 101 and 102; the
    threshold is the held edge x ~1.1, rounded onto the healthy side of the next p95 bin. The
    thresholds were set with the generator's earlier natural load cap (0.93); "held edge" is
    re-measured with the cap at the congestion onset (0.85, ``synth.scenarios.NATURAL_LOAD_CAP``),
    the earlier value in brackets where it moved; the thresholds were kept:

    =========================  ===========  ===========  ======================================
    rule                       held edge    threshold    note
    =========================  ===========  ===========  ======================================
    element_latency_p95_5g     47.4 (59.7)  66 ms        was 36 ms: 4-5 healthy cells above it
    element_latency_p95_4g     119 (156)    170 ms       was 100 ms; healthy p99 of cells 78 ms
    element_latency_p95_3g     238.9 ms     300 ms       unchanged (next bin 291 ms)
    element_latency_p95_2g     500.3 ms     800 ms       unchanged
    element_latency_p95_ip     4.9 ms       10 ms        unchanged
    element_packet_loss        0.10 (0.66)  0.8 %        was 0.5 %
    cell_blocking              4.8 %        5 %          1 of 21 calls: the next is 9.5 %
    cell_call_setup_success    95.2 %       90 %         unchanged
    cell_call_drop             3.8 %        5 %          unchanged
    site_call_setup_success    no site      95 %         never 50 attempts in 15 min when normal
    element_availability       33.3 %       > 40 %       outage_interval_pct: 2 of 6 intervals
    =========================  ===========  ===========  ======================================

    Held-out normal days (seeds 103, 104) fire none of these rules (see the closing note of
    issue 16; re-checked with the cap at the onset and with the outage count;
    ``tests/sla/test_sla_calibration.py`` checks a smaller normal day). ``element_availability``:
    held edge 33.3 % on seed 101, 20 % on 102 (two or one chance outages in a window; 3 of 6
    never happened), 33.3 % on held-out 103.
    * SLO: the 1x ticket (3 d / 6 h) needs 500 attempts per window; with 50, a site with 50 calls
      reaches a 2 % error ratio with a single failed setup (probability ~30 % at a 0.7 % base),
      which fired ~140 tickets on 2,000 elements in 12 h. The page pairs keep 50.

    Silent failures (a cell stops reporting altogether) are collection gaps / insufficient data
    for every KPI here by design (a gap must neither fire nor resolve); the anomaly detector's
    silence alerts cover them.
    """
    rules = [
        {
            "name": "cell_blocking",
            "kpi": "blocking_pct",
            "level": "element",
            "comparator": ">",
            "threshold": 5.0,
            "clear_threshold": 2.0,
            "window": "10m",
            "for": "5m",
            "clear_for": "10m",
            "min_samples": 20,
            "clear_min_samples": 3,
            "severity": "major",
        },
        {
            "name": "cell_call_setup_success",
            "kpi": "call_setup_success_pct",
            "level": "element",
            "comparator": "<",
            "threshold": 90.0,
            "clear_threshold": 95.0,
            "window": "10m",
            "for": "5m",
            "clear_for": "10m",
            "min_samples": 20,
            "clear_min_samples": 3,
            "severity": "major",
        },
        {
            "name": "cell_call_drop",
            "kpi": "call_drop_pct",
            "level": "element",
            "comparator": ">",
            "threshold": 5.0,
            "clear_threshold": 2.0,
            "window": "15m",
            "for": "5m",
            "clear_for": "10m",
            "min_samples": 20,
            "clear_min_samples": 3,
            "severity": "minor",
        },
        {
            "name": "site_call_setup_success",
            "kpi": "call_setup_success_pct",
            "level": "site",
            "comparator": "<",
            "threshold": 95.0,
            "clear_threshold": 97.0,
            "window": "15m",
            "for": "5m",
            "clear_for": "10m",
            "min_samples": 50,
            "clear_min_samples": 5,
            "severity": "critical",
        },
        {
            "name": "element_availability",
            "kpi": "outage_interval_pct",
            "level": "element",
            "comparator": ">",
            "threshold": OUTAGE_INTERVALS_THRESHOLD_PCT,
            "clear_threshold": 20.0,
            "window": "30m",
            "for": "0m",
            "clear_for": "10m",
            "min_samples": 5,
            "severity": "major",
        },
        {
            "name": "element_packet_loss",
            "kpi": "loss_pct",
            "level": "element",
            "comparator": ">",
            "threshold": 0.8,
            "clear_threshold": 0.4,
            "window": "15m",
            "for": "5m",
            "clear_for": "10m",
            "min_samples": 3,
            "severity": "major",
        },
    ]
    if topology is not None and "technology" not in topology.attributes:
        rules.append(
            {
                "name": "element_latency_p95",
                "kpi": "latency_p95_ms",
                "level": "element",
                "comparator": ">",
                "threshold": 400.0,
                "clear_threshold": 300.0,
                "window": "30m",
                "for": "15m",
                "clear_for": "15m",
                "min_samples": 5,
                "severity": "warning",
            }
        )
    for tech, thr in LATENCY_P95_THRESHOLDS_MS.items():
        if topology is not None and "technology" not in topology.attributes:
            break
        rules.append(
            {
                "name": f"element_latency_p95_{tech}",
                "kpi": "latency_p95_ms",
                "level": "element",
                "filter": {"technology": tech},
                "comparator": ">",
                "threshold": thr,
                "clear_threshold": 0.75 * thr,
                "window": "30m",
                "for": "15m",
                "clear_for": "15m",
                "min_samples": 5,
                "severity": "warning",
            }
        )
    rules.append(
        {
            "type": "slo",
            "name": "call_success_slo",
            "kpi": "call_setup_success_pct",
            "objective": 0.98,
            "period": "30d",
            "level": "site",
            "min_samples": 50,
            "clear_for": "30m",
            "windows": [dict(w, min_samples=500) if w["severity"] == "ticket" else dict(w) for w in SRE_BURN_WINDOWS],
        }
    )
    return load_rules(rules)
