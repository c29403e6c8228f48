"""A seeded, reproducible synthetic telecom network: topology, four sources, scenarios, stream.

>>> from telcoanalytics.synth.network import SynthConfig, generate
>>> day = generate(SynthConfig(n_elements=300, n_regions=4, days=0.25, seed=1))
>>> day.topology.n_elements
300
>>> day.scenario_counts
{'congestion': 5, 'failure': 5, 'degradation': 4, 'crowd': 2, 'collection_gap': 2}
>>> n = sum(len(rows) for source, rows in day.raw_batches(60_000))
>>> n == sum(day.stats["n_arrived"].values())
True

What is generated
-----------------
* **Topology** (:mod:`telcoanalytics.synth.topology`): regions of radio sites (macro sites with
  ``cells_per_site`` sectors, small-cell sites) clustered around regional centres, an
  aggregation switch per ~25 sites, a core site with two core routers and a packet gateway.
* **Load** (:mod:`telcoanalytics.synth.load`): one load ratio per (PM interval, element) with
  diurnal/weekly seasonality, lognormal per-cell baselines (quiet rural vs busy urban), AR(1)
  noise and day-to-day factors; every source derives from it.
* **Sources** (:mod:`telcoanalytics.synth.sources`): CDRs (non-homogeneous Poisson attempts,
  service mix, lognormal holding and answer times, Q.850 causes), equipment metrics per PM
  interval for the metrics of each class (``CLASS_METRICS``; temperature every
  ``env_interval_ms``), flows cell -> switch -> core router -> packet gateway, QoS with E-model MOS.
* **Scenarios** (:mod:`telcoanalytics.synth.scenarios`) with ground-truth ``labels``.
* **Stream** (:mod:`telcoanalytics.synth.stream`): arrival delays, duplicates, corrupted rows;
  :meth:`SynthDay.raw_batches` and :meth:`SynthDay.write`.

Default size (10,000 elements, one day): about 2M CDRs, 12M equipment rows, 2.8M flows and
2.8M QoS rows (~20M events); raise ``scale`` (elements and volume) or ``days`` to run bigger.

Labels
------
One ``LABEL_DTYPE`` row per scenario: ``scenario``, ``scope_level`` ("element" | "site" |
"region"), ``scope_id`` (external id at that level), ``element_id`` (-1 unless the scope is one
element), ``source`` and ``metric`` where the effect is primary, ``start_ms``/``end_ms``
(the whole scenario, ramps included, on the PM grid):

==============  ============  =======  ================  ====================================
scenario        scope_level   source   metric            window
==============  ============  =======  ================  ====================================
congestion      element       equip    prb_util_pct      ramp start .. recovery end
failure         element       all      "" (silent)       element produces no records
failure         element       equip    error_count       error step (mode "errors")
degradation     element       qos      latency_ms        drift start .. repair
crowd           site (venue)  cdr      ""                ramp start .. ramp end (many sites)
collection_gap  region        equip    ""                no equipment metrics from the region
==============  ============  =======  ================  ====================================

``day.scenarios`` holds the details (all affected element ids, plateau times, parameters).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from telcoanalytics.records import ELEMENT_FIELD, SOURCES, TIME_FIELD, empty
from telcoanalytics.synth.load import DAY_MS, ar1_lognoise, business_share, busy_hour_util, day_factors, diurnal_profile
from telcoanalytics.synth.scenarios import NATURAL_LOAD_CAP, Scenario, inject
from telcoanalytics.synth.sources import (
    CLASS_METRICS,
    cdr_rows,
    cell_capacity_mbps,
    equip_rows,
    flow_rows,
    mix63,
    qos_rows,
    transport_load,
)
from telcoanalytics.synth.stream import (
    CORRUPT_KINDS,
    ORIGIN_CLEAN,
    ORIGIN_CORRUPTED,
    ORIGIN_DUPLICATE,
    SOURCE_CORRUPTIONS,
    SourceStream,
    arrival_edges,
    build_streams,
    iter_source,
    write_dataset,
)
from telcoanalytics.synth.topology import SMALL, build_topology
from telcoanalytics.topology.model import Topology

__all__ = [
    "LABEL_DTYPE",
    "SynthConfig",
    "SynthDay",
    "generate",
    "read_labels",
    "CLASS_METRICS",
    "CORRUPT_KINDS",
    "SOURCE_CORRUPTIONS",
    "ORIGIN_CLEAN",
    "ORIGIN_DUPLICATE",
    "ORIGIN_CORRUPTED",
    "diurnal_profile",
]

LABEL_DTYPE = np.dtype(
    [
        ("scenario", "U16"),  # congestion | failure | degradation | crowd | collection_gap
        ("scope_level", "U8"),  # element | site | region
        ("scope_id", "i8"),  # external id at scope_level
        ("element_id", "i8"),  # the element, -1 if the scope is not one element
        ("source", "U8"),  # cdr | equip | flow | qos | all
        ("metric", "U24"),  # field or METRICS name affected, "" if many
        ("start_ms", "i8"),
        ("end_ms", "i8"),
    ]
)

DEFAULT_SCENARIOS = {"congestion": 6, "failure": 6, "degradation": 4, "crowd": 2, "collection_gap": 2}
AUTO_SCENARIO_SITES = 120  # radio sites from which the automatic counts are full
DEFAULT_START_MS = 1_772_409_600_000  # Monday 2026-03-02 00:00 UTC
SANE_START_MS = 946_684_800_000  # 2000-01-01: ingest treats earlier times as corrupt
BASE_SOURCES = ("cdr", "equip", "flow", "qos")  # always generated; "complaint" with SynthConfig.complaints
_OPTIONAL_DEFAULTS = {
    "n_root_cause": 0,
    "complaints": 0.0,
    "n_changes": 0,
}  # options that leave a run unchanged at these values
_ROOT_CAUSE_STREAM = 15  # seed-sequence keys of the optional draws (independent of the others)
_COMPLAINT_STREAM = 16
_CHANGE_STREAM = 17


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic network run (all have defaults; see :func:`generate`).

    Parameters
    ----------
    n_elements : int
        Elements in the topology before ``scale`` (default 10,000).
    n_regions : int or None
        Regions; None (default) picks ``clip(round(elements / 1000), 1, 12)``, i.e. 10 for the
        default 10,000 elements.
    days : float
        Span in days (> 0; default 1.0); rounded up to whole PM intervals.
    seed : int
        Seed of every random draw; same config -> same bytes.
    scale : float
        Multiplies ``n_elements`` (and so every source's volume) to run bigger.
    start_ms : int
        Start of the span, ms UTC (default Monday 2026-03-02 00:00); must be >= 2000-01-01.
    cells_per_site : int
        Sectors of a macro site (default 3).
    pm_interval_ms : int
        PM / flow / QoS reporting interval (default 5 min).
    env_interval_ms : int
        Reporting interval of environment metrics (temperature), a multiple of ``pm_interval_ms``.
    cdr_per_cell_day : float
        Mean call/session attempts per cell per day on the undisturbed network.
    utc_offset_h : float
        Local time of the network relative to UTC (the diurnal shape is in local time).
    n_congestion, n_failure, n_degradation, n_crowd, n_collection_gap : int or None
        Scenarios of each kind. None (default) means 6, 6, 4, 2, 2 on a network of >= 120 radio
        sites and proportionally fewer (rounded) on smaller ones, so tiny test networks work; an
        explicit number is placed exactly or raises ValueError when the network is too small.
        ``SynthDay.scenario_counts`` holds the numbers used.
    p_out_of_order, p_late, p_very_late : float
        Shares of rows delivered 5-60 s late, 1 min - ``max_late_ms`` late, 1-6 h late.
    max_late_ms : int
        Upper bound of the "late" delay (default 15 min).
    p_duplicate : float
        Share of CDRs delivered twice (default 0.1%).
    p_corrupt : float
        Share of corrupted extra rows per source (default 0.05%; at least one of each kind).
    cdr_arrival : str
        "start" (default): a CDR's delivery delay counts from its event time ``start_ms``, so
        the lateness mix above holds for event time. "end": from its release ``end_ms``, as a
        switch writes CDRs at release; then calls longer than the pipeline's allowed lateness
        (~1% of CDRs last over 15 min) arrive late by their duration.
    csv_unparseable : int
        Extra rows per source with a non-numeric cell in CSV output.
    n_root_cause : int
        Root-cause faults (:mod:`telcoanalytics.synth.rootcause`) applied to the CDRs: a
        combination of site / equipment class / vendor / technology / service in a region drops
        more calls for 1-3 hours; the truth is in ``SynthDay.root_causes``. 0 (default): none,
        and nothing else changes.
    complaints : float
        Customer complaints (:mod:`telcoanalytics.synth.complaints`, source ``"complaint"``) that
        follow the degradations with a lag; the value multiplies the nominal rates (1.0). 0
        (default): no complaint stream, and nothing else changes.
    n_changes : int
        Software upgrades of known effect (:mod:`telcoanalytics.synth.changes`) on the cells of a
        vendor at a few scenario-free sites, alternately on QoS latency (x 0.75-0.9 or 1.1-1.25) and
        equipment PRB utilisation (x 0.8-0.92), with control cells; the truth is in ``SynthDay.changes``. 0 (default):
        none, and nothing else changes.
    """

    n_elements: int = 10_000
    n_regions: int | None = None
    days: float = 1.0
    seed: int = 7
    scale: float = 1.0
    start_ms: int = DEFAULT_START_MS
    cells_per_site: int = 3
    pm_interval_ms: int = 300_000
    env_interval_ms: int = 900_000
    cdr_per_cell_day: float = 200.0
    utc_offset_h: float = 0.0
    n_congestion: int | None = None
    n_failure: int | None = None
    n_degradation: int | None = None
    n_crowd: int | None = None
    n_collection_gap: int | None = None
    p_out_of_order: float = 0.03
    p_late: float = 0.005
    p_very_late: float = 0.0002
    max_late_ms: int = 900_000
    p_duplicate: float = 0.001
    p_corrupt: float = 0.0005
    cdr_arrival: str = "start"
    csv_unparseable: int = 3
    n_root_cause: int = 0
    complaints: float = 0.0
    n_changes: int = 0

    def __post_init__(self):
        def need(ok: bool, name: str, expected: str):
            if not ok:
                raise ValueError(f"SynthConfig.{name} must be {expected}, got {getattr(self, name)!r}")

        def is_int(v, lo):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo

        for name in ("n_elements", "cells_per_site", "pm_interval_ms", "env_interval_ms", "max_late_ms"):
            need(is_int(getattr(self, name), 1), name, "a positive integer")
        need(self.n_regions is None or is_int(self.n_regions, 1), "n_regions", "None or a positive integer")
        for name in ("n_congestion", "n_failure", "n_degradation", "n_crowd", "n_collection_gap"):
            need(getattr(self, name) is None or is_int(getattr(self, name), 0), name, "None or a non-negative integer")
        need(is_int(self.csv_unparseable, 0), "csv_unparseable", "a non-negative integer")
        need(is_int(self.n_root_cause, 0), "n_root_cause", "a non-negative integer")
        need(is_int(self.n_changes, 0), "n_changes", "a non-negative integer")
        need(self.complaints >= 0 and math.isfinite(self.complaints), "complaints", "a non-negative rate multiplier")
        need(self.days > 0 and math.isfinite(self.days), "days", "a positive number of days")
        need(self.scale > 0 and math.isfinite(self.scale), "scale", "a positive number")
        need(
            self.cdr_per_cell_day >= 0 and math.isfinite(self.cdr_per_cell_day),
            "cdr_per_cell_day",
            "a non-negative number",
        )
        need(
            int(self.start_ms) == self.start_ms and self.start_ms >= SANE_START_MS,
            "start_ms",
            f"an integer ms UTC time >= {SANE_START_MS} (2000-01-01)",
        )
        need(
            self.env_interval_ms % self.pm_interval_ms == 0,
            "env_interval_ms",
            f"a multiple of pm_interval_ms={self.pm_interval_ms}",
        )
        need(self.max_late_ms > 60_000, "max_late_ms", "more than 60000 (one minute)")
        for name in ("p_out_of_order", "p_late", "p_very_late", "p_duplicate", "p_corrupt"):
            need(0.0 <= getattr(self, name) < 1.0, name, "a probability in [0, 1)")
        need(
            self.p_out_of_order + self.p_late + self.p_very_late < 1.0,
            "p_out_of_order",
            "such that p_out_of_order + p_late + p_very_late < 1",
        )
        need(self.cdr_arrival in ("end", "start"), "cdr_arrival", "'end' or 'start'")

    @property
    def n_elements_scaled(self) -> int:
        """Elements actually generated: ``round(n_elements * scale)``."""
        return max(1, int(round(self.n_elements * self.scale)))

    @property
    def regions(self) -> int:
        """Regions actually generated (``n_regions`` or the automatic choice)."""
        if self.n_regions is not None:
            return int(self.n_regions)
        return int(np.clip(round(self.n_elements_scaled / 1000), 1, 12))

    def scenario_counts(self, n_radio_sites: int) -> dict[str, int]:
        """Scenarios of each kind for a network with ``n_radio_sites`` radio sites."""
        f = min(1.0, n_radio_sites / AUTO_SCENARIO_SITES)
        out = {}
        for kind, default in DEFAULT_SCENARIOS.items():
            v = getattr(self, f"n_{kind}")
            out[kind] = int(v) if v is not None else int(math.floor(default * f + 0.5))
        return out

    @property
    def n_intervals(self) -> int:
        return int(math.ceil(self.days * DAY_MS / self.pm_interval_ms - 1e-9))


class SynthDay:
    """The generated network: topology, ground-truth sources, labels and the arrival stream.

    Built by :func:`generate`; see the module docstring for the contents. Arrays are read-only
    by convention (share them, copy before modifying).

    Attributes
    ----------
    config : SynthConfig
    topology_table : TOPOLOGY_DTYPE array
    topology : Topology
    cdr, equip, flow, qos : canonical arrays sorted by event time (ground truth, before
        corruption, duplication and lateness)
    complaint : complaints sorted by time (empty unless ``config.complaints > 0``)
    sources : tuple of the sources generated (``complaint`` last when on)
    root_causes : list of ``synth.rootcause.RootCauseFault`` (``config.n_root_cause``)
    changes : list of ``synth.changes.Change`` (``config.n_changes``)
    capacity_mbps : float64 (n_elements,), per dense element, what it can carry (radio peak of a
        cell; transport capacity of a switch, core router or gateway), for ``analysis.routing``
    labels : LABEL_DTYPE array, one row per scenario
    scenarios : list of dict, details of each scenario (same order as ``labels``)
    start_ms, end_ms : int, the span ``[start_ms, end_ms)``
    stats : dict of injected counts (see :meth:`raw_batches`)
    scenario_counts : dict kind -> int, scenarios placed of each kind
    business_share : float64 (n_elements,), per dense element, the share of its traffic that
        follows the business (office hours) curve; the rest follows the residential curve
    """

    def __init__(self, config, topology_table, arrays, labels, scenarios, streams, stats, id_salt):
        self.config = config
        self.topology_table = topology_table
        self.topology = Topology.from_table(topology_table)
        self.cdr, self.equip, self.flow, self.qos = (arrays[s] for s in BASE_SOURCES)
        self.complaint = arrays.get("complaint", empty("complaint"))
        self.sources = tuple(s for s in SOURCES if s in arrays)  # the sources generated
        self.labels = labels
        self.scenarios = scenarios
        self.start_ms = int(config.start_ms)
        self.end_ms = int(config.start_ms + config.n_intervals * config.pm_interval_ms)
        self._streams: dict[str, SourceStream] = streams
        self.stats = stats
        self._id_salt = int(id_salt)
        self.business_share = np.full(len(topology_table), 0.5)
        self.scenario_counts = {k: int((labels["scenario"] == k).sum()) for k in DEFAULT_SCENARIOS}
        self.root_causes: list = []  # RootCauseFault truth when config.n_root_cause > 0
        self.changes: list = []  # synth.changes.Change truth when config.n_changes > 0
        self.capacity_mbps = np.zeros(len(topology_table))

    def __getitem__(self, source: str) -> np.ndarray:
        if source not in SOURCES:
            raise KeyError(f"unknown source {source!r}; sources are {SOURCES}")
        return getattr(self, source)

    @property
    def n_events(self) -> int:
        """Clean events over all four sources."""
        return sum(len(getattr(self, s)) for s in SOURCES)

    def _fresh_record_id(self, j: int) -> int:
        """A CDR record id no clean or corrupted row uses (for CSV-only bad rows)."""
        n = len(self.cdr) + self.stats["n_arrived"]["cdr"]
        return int(mix63(np.uint64(self._id_salt) + np.uint64(n) + np.uint64(j)))

    def raw_batches(self, batch_ms: int = 60_000, with_arrival: bool = False) -> Iterator[tuple]:
        """Yield ``(source, rows)`` in arrival order, one group per source and arrival window.

        Parameters
        ----------
        batch_ms : int
            Width of the arrival windows (default one minute). Windows are aligned to multiples
            of ``batch_ms``; within a window the sources come in ``SOURCES`` order, rows in
            arrival order; empty groups are skipped.
        with_arrival : bool
            Yield ``(source, rows, arrival_ms, origin)`` instead, where ``origin`` (int8 per row)
            is ``ORIGIN_CLEAN``, ``ORIGIN_DUPLICATE`` or ``ORIGIN_CORRUPTED + i`` for kind
            ``CORRUPT_KINDS[i]`` (the answer key for a validator).

        Yields
        ------
        tuple
            Rows in the canonical dtype of the source, including late, out-of-order, duplicate
            and corrupted rows. Over the whole iteration, per source:
            ``stats["n_arrived"] == stats["n"] + stats["n_duplicates"] + sum(stats["n_corrupted"])``.

        Raises
        ------
        ValueError
            If ``batch_ms`` is not a positive integer.

        Notes
        -----
        ``stats`` also counts the clean rows by delivery delay: ``n_on_time`` (< 5 s),
        ``n_out_of_order`` (5-60 s), ``n_late`` (> 60 s, very late included), ``n_very_late`` (1-6 h).
        """
        if int(batch_ms) != batch_ms or batch_ms < 1:
            raise ValueError(f"batch_ms must be a positive integer of milliseconds, got {batch_ms!r}")
        edges = arrival_edges(self._streams, int(batch_ms))
        iters = {s: iter_source(getattr(self, s), self._streams[s], edges, with_origin=True) for s in self.sources}
        pending = {s: next(iters[s], None) for s in self.sources}
        while any(p is not None for p in pending.values()):
            k = min(p[0] for p in pending.values() if p is not None)
            for s in self.sources:
                p = pending[s]
                if p is not None and p[0] == k:
                    yield (s, p[1], p[2], p[3]) if with_arrival else (s, p[1])
                    pending[s] = next(iters[s], None)

    def label_index(self, source: str) -> np.ndarray:
        """For every ground-truth row of ``source``, the index of the label it falls under, else -1.

        A row falls under label ``i`` when its routing element is one of the scenario's elements
        (``scenarios[i]["element_ids"]``; every element of the region for a collection gap) and
        its event time lies in ``[start_ms, end_ms)``. A collection gap only covers ``equip``
        (whose rows in the gap are absent, so it marks none), other scenarios every source.
        Scenario elements are disjoint, so each row has at most one label.

        Raises
        ------
        KeyError
            For an unknown source.
        """
        arr = self[source]
        el = arr[ELEMENT_FIELD[source]]
        t = arr[TIME_FIELD[source]]
        out = np.full(len(arr), -1, dtype=np.int64)
        table = self.topology_table
        for i, (row, det) in enumerate(zip(self.labels, self.scenarios)):
            if row["scenario"] == "collection_gap":
                if source != "equip":
                    continue
                els = table["element_id"][table["region_id"] == row["scope_id"]]
            else:
                els = np.asarray(det["element_ids"], dtype=np.int64)
            hit = (out < 0) & (t >= row["start_ms"]) & (t < row["end_ms"]) & np.isin(el, els)
            out[hit] = i
        return out

    def raw(self, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All arrivals of one source at once: ``(rows, arrival_ms, origin)`` in arrival order."""
        clean = self[source]
        if source not in self._streams:  # a source this run did not generate (complaints off)
            return clean[:0], np.empty(0, np.int64), np.empty(0, np.int8)
        st = self._streams[source]
        parts = list(iter_source(clean, st, arrival_edges({source: st}, DAY_MS), with_origin=True))
        if not parts:
            return clean[:0], np.empty(0, np.int64), np.empty(0, np.int8)
        return tuple(np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))

    def write(self, path, fmt: str = "parquet", raw: bool = True) -> dict:
        """Write the dataset for replay: ``<source>.<fmt>``, ``topology.csv``, ``labels.json``.

        Parameters
        ----------
        path : str or Path
            Output directory (created if missing).
        fmt : {"parquet", "csv"}
            Parquet needs pyarrow (imported lazily). CSV files get a header of the canonical
            field names; floats are written in shortest round-trip form, NaN/inf as
            ``nan``/``inf``/``-inf``. CSV also gets ``config.csv_unparseable`` extra rows per
            source where one cell holds text that is not a number (tokens such as ``n/a``,
            ``#VALUE!``, ``1.2.3``), for the reader's *unparseable* quarantine.
        raw : bool
            True (default): the arrival stream (clean rows, duplicates, corrupted rows) in
            arrival order, as a collector would have stored it. False: the clean ground truth.

        Returns
        -------
        dict
            The manifest (rows and unparseable rows per file), also stored in ``labels.json``
            together with the labels, scenario details, stats and config.

        Raises
        ------
        ValueError
            If ``fmt`` is not "parquet" or "csv".
        ImportError
            If ``fmt="parquet"`` and pyarrow is not installed.
        """
        return write_dataset(self, path, fmt=fmt, raw=raw)

    def labels_document(self) -> dict:
        """JSON-ready dict: labels, scenario details, stats, config and span."""
        cfg = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in asdict(self.config).items()}
        for k, default in _OPTIONAL_DEFAULTS.items():  # options added later appear only when used
            if cfg.get(k) == default:
                cfg.pop(k)
        stats = {k: {s: v[s] for s in self.sources} for k, v in self.stats.items()}  # generated sources
        doc = {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "config": cfg,
            "labels": [{f: row[f].item() for f in LABEL_DTYPE.names} for row in self.labels],
            "scenarios": self.scenarios,
            "stats": stats,
        }
        if self.root_causes:
            doc["root_causes"] = [f.to_dict() for f in self.root_causes]
        if self.changes:
            doc["changes"] = [c.to_dict() for c in self.changes]
        return doc


def read_labels(path) -> np.ndarray:
    """Read the ``labels.json`` written by :meth:`SynthDay.write` into a ``LABEL_DTYPE`` array.

    Raises
    ------
    ValueError
        If the file has no ``labels`` list.
    """
    import json

    with open(path) as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), list):
        raise ValueError(f"{path} is not a synth labels file: expected a JSON object with a 'labels' list")
    out = np.zeros(len(doc["labels"]), dtype=LABEL_DTYPE)
    for i, row in enumerate(doc["labels"]):
        for f in LABEL_DTYPE.names:
            out[f][i] = row[f]
    return out


def _labels(scenarios: list[Scenario], topo) -> tuple[np.ndarray, list[dict]]:
    table = topo.table
    out = np.zeros(len(scenarios), dtype=LABEL_DTYPE)
    details = []
    for i, sc in enumerate(scenarios):
        e = int(sc.elements[0]) if len(sc.elements) else -1
        if sc.kind == "collection_gap":
            level, sid, eid, source, metric = "region", int(topo.region_ids[sc.region]), -1, "equip", ""
        elif sc.kind == "crowd":
            level, sid, eid, source, metric = "site", int(topo.site_ids[sc.site]), -1, "cdr", ""
        else:
            eid = int(table["element_id"][e])
            level, sid = "element", eid
            source, metric = {
                ("congestion", ""): ("equip", "prb_util_pct"),
                ("failure", "silent"): ("all", ""),
                ("failure", "errors"): ("equip", "error_count"),
                ("degradation", ""): ("qos", "latency_ms"),
            }[(sc.kind, sc.mode)]
        out[i] = (sc.kind, level, sid, eid, source, metric, sc.start_ms, sc.end_ms)
        details.append(
            {
                "scenario": sc.kind,
                "mode": sc.mode,
                "scope_level": level,
                "scope_id": sid,
                "start_ms": int(sc.start_ms),
                "end_ms": int(sc.end_ms),
                "element_ids": [int(v) for v in table["element_id"][sc.elements]],
                **{k: int(v) for k, v in sc.phases.items()},
                "params": {k: float(v) for k, v in sc.params.items()},
            }
        )
    order = np.argsort(out["start_ms"], kind="stable")
    return out[order], [details[i] for i in order]


def generate(config: SynthConfig | None = None, **overrides) -> SynthDay:
    """Generate a synthetic network day (or span) from a config; fully vectorised and seeded.

    Parameters
    ----------
    config : SynthConfig, optional
        Defaults to ``SynthConfig()``.
    **overrides
        Field overrides, e.g. ``generate(days=2, seed=3)``.

    Returns
    -------
    SynthDay

    Raises
    ------
    ValueError
        From :class:`SynthConfig` for out-of-range parameters, or when the topology is too small
        for the requested scenarios.

    Notes
    -----
    Every component draws from its own child of ``numpy.random.SeedSequence(seed)``, so the
    same config gives the same bytes on any machine with the same NumPy version.
    """
    cfg = config if config is not None else SynthConfig()
    if overrides:
        cfg = SynthConfig(**{**asdict(cfg), **overrides})
    ss = np.random.SeedSequence(int(cfg.seed))
    r_topo, r_load, r_scen, r_cap, r_equip, r_flow, r_qos, r_cdr, r_stream = (
        np.random.default_rng(s) for s in ss.spawn(9)
    )
    topo = build_topology(cfg.n_elements_scaled, cfg.regions, cfg.cells_per_site, r_topo)
    n_e, n_t, dt = topo.n, cfg.n_intervals, int(cfg.pm_interval_ms)
    times = cfg.start_ms + np.arange(n_t, dtype=np.int64) * dt
    profile = diurnal_profile(times + dt // 2, cfg.utc_offset_h)
    is_cell = topo.is_cell
    # undisturbed load ratio of the cells
    ub = np.where(is_cell, busy_hour_util(topo.urban, r_load), 0.0)
    n_days = int(math.ceil(cfg.days))
    dayf = day_factors(len(topo.region_ids), n_days, r_load)
    day_idx = np.minimum((times - cfg.start_ms) // DAY_MS, n_days - 1)
    bshare = business_share(topo.urban, r_load)
    shape = diurnal_profile(times + dt // 2, cfg.utc_offset_h, "business")[:, None] * bshare[None, :] + diurnal_profile(
        times + dt // 2, cfg.utc_offset_h, "residential"
    )[:, None] * (1.0 - bshare[None, :])
    x_base = (ub[None, :] * shape * dayf[topo.region][:, day_idx].T).astype(np.float32)
    del shape
    x_base *= np.exp(ar1_lognoise(n_t, n_e, 0.85, 0.10, r_load))
    np.minimum(x_base, np.float32(NATURAL_LOAD_CAP), out=x_base)
    weight = np.where(is_cell, r_load.lognormal(0.0, 0.3, n_e), 0.0)
    weight[topo.table["equipment_class"] == SMALL] *= 0.5
    counts = cfg.scenario_counts(len(np.unique(topo.site[is_cell])))
    scenarios, eff = inject(counts, topo, times, dt, x_base, profile, weight, r_scen)
    x_cell = x_base.astype(np.float64) * eff.demand * eff.present
    cap = cell_capacity_mbps(topo, r_cap)
    thr_cell = np.where(
        is_cell[None, :], cap[None, :] * np.minimum(x_cell, 1.0) * r_cap.uniform(0.88, 0.98, x_cell.shape), 0.0
    )
    thr, x_tr = transport_load(topo, thr_cell, r_cap)
    x = np.where(is_cell[None, :], x_cell, x_tr)
    region_temp = r_equip.uniform(6.0, 24.0, len(topo.region_ids))
    id_salt = int(r_cdr.integers(0, 1 << 40))
    arrays = {
        "cdr": cdr_rows(topo, times, dt, x_cell, eff, weight, cfg.cdr_per_cell_day, cfg.days, x_base, id_salt, r_cdr),
        "equip": equip_rows(topo, times, x, thr, eff, cfg.env_interval_ms // dt, dt / 1000.0, region_temp, r_equip),
        "flow": flow_rows(topo, times, thr, eff, dt / 1000.0, r_flow),
        "qos": qos_rows(topo, times, x, eff, r_qos),
    }
    faults = []
    if cfg.n_root_cause:
        from telcoanalytics.synth.rootcause import inject_root_causes

        r_rc = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _ROOT_CAUSE_STREAM]))
        span = (int(cfg.start_ms), int(cfg.start_ms + n_t * dt))
        arrays["cdr"], faults = inject_root_causes(arrays["cdr"], topo.table, span, int(cfg.n_root_cause), r_rc)
    changes = []
    if cfg.n_changes:
        from telcoanalytics.synth.changes import apply_changes

        r_ch = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _CHANGE_STREAM]))
        touched = [np.asarray(sc.elements, dtype=np.int64) for sc in scenarios if sc.kind != "collection_gap"]
        busy = topo.table["element_id"][np.unique(np.concatenate(touched + [np.zeros(0, np.int64)]))]
        span = (int(cfg.start_ms), int(cfg.start_ms + n_t * dt))
        arrays, changes = apply_changes(arrays, topo, busy, span, int(cfg.n_changes), r_ch)
    if cfg.complaints > 0:
        from telcoanalytics.synth.complaints import complaint_rows

        r_cp = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _COMPLAINT_STREAM]))
        arrays["complaint"] = complaint_rows(
            topo, times, dt, eff, x_base, weight, arrays["cdr"], cfg.cdr_per_cell_day, float(cfg.complaints), r_cp
        )
    labels, details = _labels(scenarios, topo)
    streams, stats = build_streams(arrays, cfg, id_salt, r_stream)
    day = SynthDay(cfg, topo.table, arrays, labels, details, streams, stats, id_salt)
    day.business_share = bshare
    day.root_causes = faults
    day.changes = changes
    with np.errstate(invalid="ignore", divide="ignore"):  # transport capacity = throughput / load
        cap_tr = np.nanmax(np.where(x_tr > 0, thr / x_tr, np.nan), axis=0, initial=0.0)
    day.capacity_mbps = np.where(is_cell, cap, np.nan_to_num(cap_tr))
    return day
