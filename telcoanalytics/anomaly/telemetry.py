"""Router streaming telemetry (Cisco IOS-XR model-driven telemetry CSV exports) into the detector.

:func:`read_router_tables` reads one router folder of gzip-compressed YANG tables (the layout of
``shared/data/cisco``: a timestamp column with an empty name, header layouts A and B, blank lines
between records, columns looked up by name) into long-form events ``(ts_ms, element, metric,
value)`` with string element names ``"router|interface"`` (``"router|-"`` for router-wide series).
:func:`telemetry_detector` builds a :class:`~telcoanalytics.anomaly.network.NetworkAnomalyDetector`
over them (topology router -> element, settings from :data:`TELEMETRY_REGISTRY`, defaults for a
10-s interval).

Series read (metric names):

==================  ==========================================  ============================
metric              table / column                              meaning
==================  ==========================================  ============================
``if_up``           interface-brief ``actual-state``            1 if ``im-state-up``, else 0
``if_in_kbps``      data-rate ``input-data-rate``               kbit/s (log-scored)
``if_out_kbps``     data-rate ``output-data-rate``              kbit/s (log-scored)
``bfd_up``          bfd session-brief ``state``                 1 if the session is up
``bfd_up_count``    bfd summary ``session-state/up-count``      sessions up (router-wide)
==================  ==========================================  ============================
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np

from telcoanalytics.anomaly.config import DetectorConfig, MetricRegistry, MetricSpec, _check
from telcoanalytics.anomaly.network import ClassifyConfig, NetworkAnomalyDetector
from telcoanalytics.topology.model import Topology

TELEMETRY_METRICS = ("if_up", "if_in_kbps", "if_out_kbps", "bfd_up", "bfd_up_count")
TELEMETRY_REGISTRY = MetricRegistry(
    [
        MetricSpec("if_up", floor=0.1, nonneg=True),
        MetricSpec("bfd_up", floor=0.1, nonneg=True),
        MetricSpec("if_in_kbps", log_offset=1000.0, floor=0.05, nonneg=True),
        MetricSpec("if_out_kbps", log_offset=1000.0, floor=0.05, nonneg=True),
        MetricSpec("bfd_up_count", floor=0.3, nonneg=True),
    ]
)
"""Settings of the telemetry series: state indicators have a sigma floor of 0.1 (a 1 -> 0 change is
10 sigmas), rates are scored on ``log(kbit/s + 1000)`` with a floor of 5 % (an idle link's jitter of
a few kbit/s is no anomaly)."""

_TABLES = {
    "interface-brief": ("Cisco-IOS-XR-pfi-im-cmd-oper_interfaces_interface-briefs_interface-brief", "interface-name"),
    "data-rate": (
        "Cisco-IOS-XR-infra-statsd-oper_infra-statistics_interfaces_interface_latest_data-rate",
        "interface-name",
    ),
    "bfd-session": ("Cisco-IOS-XR-ip-bfd-oper_bfd_session-briefs_session-brief", "interface-name"),
    "bfd-summary": ("Cisco-IOS-XR-ip-bfd-oper_bfd_summary", None),
}


def _rows(path: Path):
    """Header and records of one table (blank lines skipped)."""
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(line for line in f if line.strip())
        header = next(reader, None)
        _check(header is not None and header[0] == "", f"{path}: expected a timestamp column with an empty name first")
        for rec in reader:
            yield header, rec


def _read_table(path: Path, key: str | None, columns: dict) -> list:
    """``(ts_ms, key, metric, value)`` tuples of one table; ``columns`` maps column -> (metric, fn)."""
    out = []
    idx = None
    for lineno, (header, rec) in enumerate(_rows(path), start=2):
        if idx is None:
            missing = [c for c in list(columns) + ([key] if key else []) if c not in header]
            _check(not missing, f"{path}: columns {missing} missing (header: {header[:8]}...)")
            idx = {c: header.index(c) for c in columns}
            kidx = header.index(key) if key else None
        if len(rec) != len(header):
            raise ValueError(f"{path}, record {lineno}: {len(rec)} fields for {len(header)} columns")
        ts = np.datetime64(rec[0].replace("+00:00", "").replace(" ", "T"), "ms").astype(np.int64)
        k = rec[kidx] if kidx is not None else "-"
        for c, (metric, fn) in columns.items():
            raw = rec[idx[c]]
            if raw != "":
                out.append((int(ts), k, metric, fn(raw)))
    return out


def read_router_tables(router_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events of one router folder, sorted by time.

    Returns
    -------
    ts_ms : int64 array; element : str array (``"router|interface"`` or ``"router|-"``);
    metric : str array (:data:`TELEMETRY_METRICS`); value : float64 array

    Raises
    ------
    ValueError
        Naming the file and record of a malformed table.
    """
    router_dir = Path(router_dir)
    router = router_dir.name
    up = {"im-state-up": 1.0}
    specs = {
        "interface-brief": {"actual-state": ("if_up", lambda v: up.get(v, 0.0))},
        "data-rate": {
            "input-data-rate": ("if_in_kbps", float),
            "output-data-rate": ("if_out_kbps", float),
        },
        "bfd-session": {"state": ("bfd_up", lambda v: 1.0 if v == "bfd-mgmt-session-state-up" else 0.0)},
        "bfd-summary": {"session-state/up-count": ("bfd_up_count", float)},
    }
    recs = []
    for name, (stem, key) in _TABLES.items():
        path = router_dir / f"{stem}.csv.gz"
        if path.exists():
            recs += _read_table(path, key, specs[name])
    if not recs:
        return (np.zeros(0, np.int64), np.zeros(0, "U80"), np.zeros(0, "U16"), np.zeros(0))
    ts = np.array([r[0] for r in recs], dtype=np.int64)
    el = np.array([f"{router}|{r[1]}" for r in recs])
    me = np.array([r[2] for r in recs])
    va = np.array([r[3] for r in recs], dtype=np.float64)
    o = np.argsort(ts, kind="stable")
    return ts[o], el[o], me[o], va[o]


def read_scenario(folder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events of every router sub-folder of one scenario folder, merged and sorted by time."""
    folder = Path(folder)
    _check(folder.is_dir(), f"{folder} is not a folder")
    parts = [read_router_tables(folder / d) for d in sorted(os.listdir(folder)) if (folder / d).is_dir()]
    _check(parts, f"{folder} has no router sub-folders")
    ts, el, me, va = (np.concatenate([p[k] for p in parts]) for k in range(4))
    o = np.argsort(ts, kind="stable")
    return ts[o], el[o], me[o], va[o]


def telemetry_topology(elements) -> Topology:
    """Topology router -> element from ``"router|interface"`` names (ids are dense integers; the
    names are the topology's element names)."""
    names = np.unique(np.asarray(elements))
    routers = np.array([n.split("|", 1)[0] for n in names])
    r_names, r_ids = np.unique(routers, return_inverse=True)
    return Topology.from_columns(
        np.arange(len(names), dtype=np.int64),
        {"router": r_ids.astype(np.int64)},
        names={"element": names, "router": r_names[r_ids]},
    )


def telemetry_detector(elements, config: DetectorConfig | None = None) -> NetworkAnomalyDetector:
    """Detector over the telemetry series of ``elements`` with the documented 10-s defaults,
    crowd grouping by router (many interfaces of one router moving together)."""
    topo = telemetry_topology(elements)
    return NetworkAnomalyDetector(
        topo,
        TELEMETRY_METRICS,
        config if config is not None else DetectorConfig.for_interval(10),
        classify=ClassifyConfig(crowd_level="router", crowd_min_elements=4, surge_level=None, gap_level="router"),
        registry=TELEMETRY_REGISTRY,
    )
