"""Network-level anomaly detection: the per-slot detector and the silence monitor over a topology,
with classification along whichever topology levels the user names (crowd, surge, collection gap),
parent/child inhibition and calendar events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import anomaly_events as _ke
from kernels import classify as _kc
from kernels import detect as _k
from telcoanalytics.anomaly.config import (
    ANOMALY_DTYPE,
    CLASSIFICATIONS,
    DEFAULT_REGISTRY,
    NAME_LEN,
    DetectorConfig,
    MetricRegistry,
    _as_1d,
    _check,
    to_ms,
)
from telcoanalytics.anomaly.silence import SilenceMonitor
from telcoanalytics.anomaly.slots import AnomalyDetector
from telcoanalytics.records import EQUIP_DTYPE, EQUIPMENT_CLASS_CODE, METRICS
from telcoanalytics.topology.model import Topology

_PARENT_CLASSES = ("aggregation_switch", "core_router", "packet_gateway")
_CHILD_CLASSES = ("macro_cell", "small_cell")
_CLASS_NAMES = np.array(CLASSIFICATIONS, dtype="U16")


@dataclass
class CalendarEvent:
    """A known event (holiday, match, maintenance) that widens thresholds for a scope and time.

    Parameters
    ----------
    scope_level : str
        Topology level of the scope ("region", "site", "element").
    scope_id : int
        External id of the scope node at that level.
    start_ms, end_ms : int
        Time span (inclusive start, exclusive end), ms UTC.
    widen : float
        Threshold multiplier inside the scope and span (> 1 widens).
    name : str
        Label for reports.
    """

    scope_level: str
    scope_id: int
    start_ms: int
    end_ms: int
    widen: float = 2.0
    name: str = ""

    def __post_init__(self):
        _check(
            self.end_ms > self.start_ms,
            f"calendar event {self.name!r}: end_ms {self.end_ms} must be after start_ms {self.start_ms}",
        )
        _check(self.widen > 0, f"calendar event {self.name!r}: widen must be > 0, got {self.widen}")


@dataclass
class ClassifyConfig:
    """Topology-aware classification parameters.

    Parameters
    ----------
    crowd_level, surge_level, gap_level : str or None
        Topology levels whose nodes group elements for crowd events, demand surges and collection
        gaps (any level of the user's topology; None disables that grouping). A default level
        the topology lacks disables its grouping; a level named explicitly must exist.
    crowd_min_elements, crowd_fraction : int, float
        A deviation is a crowd event when at least this many elements of its ``crowd_level`` node
        (and this share of the node's elements reporting the metric) deviate in the same direction.
    surge_min_elements, surge_fraction : int, float
        The same over a ``surge_level`` node: a demand surge.
    gap_min_elements, gap_fraction : int, float
        Silent elements of one ``gap_level`` node at once that make a collection gap.
    shared_z : float
        An element counts as deviating with the others when it has an open episode in that
        direction or its latest point is at least ``shared_z`` sigmas off in that direction.
    """

    crowd_min_elements: int = 2
    crowd_fraction: float = 0.3
    surge_min_elements: int = 5
    surge_fraction: float = 0.15
    gap_min_elements: int = 5
    gap_fraction: float = 0.5
    shared_z: float = 2.0
    crowd_level: str | None = "site"
    surge_level: str | None = "region"
    gap_level: str | None = "region"

    def __post_init__(self):
        for name in ("crowd_min_elements", "surge_min_elements", "gap_min_elements"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(self.shared_z > 0, f"shared_z must be > 0, got {self.shared_z}")
        for name in ("crowd_fraction", "surge_fraction", "gap_fraction"):
            _check(0 < getattr(self, name) <= 1, f"{name} must be in (0, 1], got {getattr(self, name)}")

    def levels(self) -> list[str]:
        return [lv for lv in (self.crowd_level, self.surge_level, self.gap_level) if lv is not None]

    @property
    def explicit(self) -> set:
        """Levels set to something other than the defaults (they must exist in the topology)."""
        d = {"crowd_level": "site", "surge_level": "region", "gap_level": "region"}
        return {getattr(self, k) for k, v in d.items() if getattr(self, k) not in (None, v)}


def default_parents(topology: Topology) -> np.ndarray:
    """Parent element of each element: a site's cells hang off the site's switch/router/gateway.

    Returns an int64 array of dense element indices, -1 where an element has no parent element
    (no ``equipment_class`` attribute, or no aggregation equipment at the site).
    """
    n = topology.n_elements
    parent = np.full(n, -1, dtype=np.int64)
    cls = topology.attributes.get("equipment_class")
    if cls is None or n == 0 or "site" not in topology.levels:
        return parent
    site = topology.element_to("site")
    is_parent = np.isin(cls, [EQUIPMENT_CLASS_CODE[c] for c in _PARENT_CLASSES])
    is_child = np.isin(cls, [EQUIPMENT_CLASS_CODE[c] for c in _CHILD_CLASSES])
    hub = np.full(topology.n_nodes("site"), -1, dtype=np.int64)
    idx = np.flatnonzero(is_parent)
    hub[site[idx[::-1]]] = idx[::-1]  # first parent-class element of each site
    parent[is_child] = hub[site[is_child]]
    return parent


class NetworkAnomalyDetector:
    """Anomaly detection over a whole network: detector + silence + topology classification.

    Parameters
    ----------
    topology : Topology
        Network hierarchy; classification groups by the levels named in ``classify``.
    metrics : sequence of str
        Metric names; a slot is ``element_index * len(metrics) + metric_id``.
    config : DetectorConfig, optional
    classify : ClassifyConfig, optional
    calendar : list of CalendarEvent, optional
    parent_element : int64 array (n_elements,), optional
        Dense parent element of each element (-1 none); default :func:`default_parents`.
    silence : dict, optional
        Keyword arguments of :class:`SilenceMonitor`.
    metric_floor : dict metric -> float, optional
        Absolute sigma floor per metric (replaces the registry's floors; others use
        ``config.floor_abs``).
    metric_transform : dict metric -> float, optional
        Metrics scored as ``log(max(x, 0) + c)`` (replaces the registry's transforms).
    metric_confirm : dict metric -> int, optional
        Consecutive alarm points that open an episode (replaces the registry's counts).
    silence_metrics : sequence of str, optional
        Metrics whose reports count as the element being alive (default all). Give the
        collector-delivered metrics so that a collection gap is seen even while other sources flow.
    registry : MetricRegistry, optional
        Per-metric settings by full name (default :data:`DEFAULT_REGISTRY`, the project's metrics);
        a metric without settings gets the defaults and a ``UserWarning`` unless explicit
        ``metric_floor`` / ``metric_transform`` / ``metric_confirm`` tables are given.

    Examples
    --------
    >>> from telcoanalytics.topology.model import Topology
    >>> topo = Topology.from_columns([10, 11], {"region": [1, 1], "site": [5, 6]})
    >>> net = NetworkAnomalyDetector(topo, metrics=("cpu_util_pct",),
    ...                              config=DetectorConfig(season="none", warmup=5))
    >>> t = np.repeat(np.arange(30, dtype=np.int64) * 300_000, 2)
    >>> e = np.tile([0, 1], 30); m = np.zeros(60, dtype=np.int64)
    >>> x = np.where((e == 1) & (t == 25 * 300_000), 99.0, 20.0 + (t // 300_000) % 3)
    >>> rows = net.update(t, e, m, x)
    >>> rows[["element_id", "classification", "end_ms"]].tolist()[0][:2]
    (11, 'fault')
    """

    def __init__(
        self,
        topology: Topology,
        metrics=METRICS,
        config: DetectorConfig | None = None,
        classify: ClassifyConfig | None = None,
        calendar=None,
        parent_element=None,
        silence: dict | None = None,
        metric_floor: dict | None = None,
        metric_transform: dict | None = None,
        metric_confirm: dict | None = None,
        silence_metrics=None,
        registry: MetricRegistry | None = None,
    ):
        _check(isinstance(topology, Topology), f"topology must be a Topology, got {type(topology).__name__}")
        self.topology = topology
        self.metrics = tuple(str(m) for m in metrics)
        _check(len(self.metrics) >= 1, "metrics must name at least one metric")
        _check(len(set(self.metrics)) == len(self.metrics), f"metrics repeat a name: {self.metrics}")
        self.n_metrics = len(self.metrics)
        self.registry = registry if registry is not None else DEFAULT_REGISTRY
        explicit = metric_floor is not None or metric_transform is not None or metric_confirm is not None
        specs = [self.registry.get(m, warn=not explicit) for m in self.metrics]
        n_el = topology.n_elements
        slot_el = np.repeat(topology.ids[topology.element_level], self.n_metrics)
        slot_metric = np.tile(np.array(self.metrics, dtype=f"U{NAME_LEN}"), n_el)
        self.detector = AnomalyDetector(n_el * self.n_metrics, config, slot_el, slot_metric)
        floors = {s.name: s.floor for s in specs if s.floor is not None} if metric_floor is None else dict(metric_floor)
        confirm = (
            {s.name: s.confirm for s in specs if s.confirm != 1} if metric_confirm is None else dict(metric_confirm)
        )
        transform = (
            {s.name: s.log_offset for s in specs if s.log_offset is not None}
            if metric_transform is None
            else dict(metric_transform)
        )
        for table, name in ((floors, "metric_floor"), (confirm, "metric_confirm"), (transform, "metric_transform")):
            for k in table:
                _check(k in self.metrics, f"{name} names {k!r}, which is not one of the metrics {self.metrics}")
        self.log_offset = np.full(self.n_metrics, np.nan)  # NaN: scored as is
        for k, c in transform.items():
            _check(c > 0, f"metric_transform[{k!r}] must be > 0 (log offset), got {c}")
            self.log_offset[self.metrics.index(k)] = c
        self.metric_floor = np.full(self.n_metrics, self.detector.config.floor_abs)
        self.metric_confirm = np.ones(self.n_metrics)
        for k, fl in floors.items():
            self.metric_floor[self.metrics.index(k)] = fl
        for k, npts in confirm.items():
            _check(
                int(npts) == npts and 1 <= npts <= 1000,
                f"metric_confirm[{k!r}] must be an integer in 1..1000, got {npts}",
            )
            self.metric_confirm[self.metrics.index(k)] = npts
        # non-negative metrics: baseline >= 0 in the metric's unit (log(c) in the scored unit)
        self.metric_lower = np.full(self.n_metrics, -np.inf)
        for j, s in enumerate(specs):
            if s.nonneg:
                self.metric_lower[j] = np.log(self.log_offset[j]) if np.isfinite(self.log_offset[j]) else 0.0
        self.metric_thr_scale = np.array([s.threshold_scale for s in specs])
        self._apply_metric_settings(np.arange(self.detector.n_slots))
        if silence_metrics is None:
            self.silence_metric = np.ones(self.n_metrics, dtype=bool)
        else:
            for k in silence_metrics:
                _check(
                    k in self.metrics, f"silence_metrics names {k!r}, which is not one of the metrics {self.metrics}"
                )
            self.silence_metric = np.isin(np.array(self.metrics), list(silence_metrics))
        self.classify_config = classify if classify is not None else ClassifyConfig()
        for lv in self.classify_config.levels():
            _check(
                lv in topology.levels[:-1] or lv not in self.classify_config.explicit,
                f"ClassifyConfig names the level {lv!r}, which the topology does not have "
                f"(levels: {topology.levels[:-1]})",
            )
        self.silence = SilenceMonitor(n_el, **(silence or {}))
        self.calendar = list(calendar or [])
        for ev in self.calendar:
            _check(isinstance(ev, CalendarEvent), f"calendar entries must be CalendarEvent, got {type(ev).__name__}")
            topology._check_level(ev.scope_level)
        if parent_element is None:
            self.parent_element = default_parents(topology)
        else:
            self.parent_element = _as_1d("parent_element", parent_element, np.int64)
            _check(
                len(self.parent_element) == n_el,
                f"parent_element has {len(self.parent_element)} entries for {n_el} elements",
            )
            _check(
                bool(np.all((self.parent_element >= -1) & (self.parent_element < n_el))),
                f"parent_element must hold dense element indices in -1..{n_el - 1}",
            )
        # classification of each slot's open episode (code into CLASSIFICATIONS, -1 none)
        self.slot_class = np.full(self.detector.n_slots, -1, dtype=np.int8)
        self.n_unknown = 0

    def _apply_metric_settings(self, slots: np.ndarray):
        m = slots % self.n_metrics
        det = self.detector
        det.set_floor(slots, self.metric_floor[m])
        det.sp[slots, _k.P_CONFIRM] = self.metric_confirm[m]
        det.set_lower(slots, self.metric_lower[m])
        det.set_threshold_scale(slots, self.metric_thr_scale[m])

    # ---- helpers ---------------------------------------------------------------------------
    def _has_level(self, level) -> bool:
        return level is not None and level in self.topology.levels[:-1]

    def _level_index(self, level: str) -> np.ndarray:
        return self.topology.element_to(level)

    def _level_ids(self, level: str) -> np.ndarray:
        return self.topology.ids[level]

    def element_index(self, elem) -> np.ndarray:
        """Dense element indices from dense indices (ints) or element names (strings).

        Names are looked up in ``topology.names[element_level]``; an unknown name raises an error
        that names it (map or quarantine such rows before scoring).
        """
        arr = np.asarray(elem)
        if arr.dtype.kind in "US":
            names = self.topology.names.get(self.topology.element_level)
            _check(
                names is not None,
                "elem holds names but the topology has no element names; build it with "
                "Topology.from_columns(..., names={element_level: names}) or pass dense indices",
            )
            if getattr(self, "_name_key", None) is None or len(self._name_key[0]) != len(names):
                order = np.argsort(names, kind="stable")
                self._name_key = (np.asarray(names)[order], order)
            srt, order = self._name_key
            pos = np.minimum(np.searchsorted(srt, arr), max(len(srt) - 1, 0))
            hit = srt[pos] == arr if len(srt) else np.zeros(arr.shape, dtype=bool)
            if not hit.all():
                bad = int(np.flatnonzero(~hit)[0])
                raise ValueError(f"elem[{bad}] = {arr[bad]!r} is not an element name of the topology")
            return order[pos].astype(np.int64)
        return _as_1d("elem", arr, np.int64)

    def metric_index(self, metric) -> np.ndarray:
        """Metric indices from indices (ints) or full metric names (strings)."""
        arr = np.asarray(metric)
        if arr.dtype.kind in "US":
            lut = {m: i for i, m in enumerate(self.metrics)}
            uniq, inv = np.unique(arr, return_inverse=True)
            missing = [str(u) for u in uniq if str(u) not in lut]
            _check(not missing, f"metric names {missing[:3]} are not among the detector's metrics {self.metrics}")
            return np.array([lut[str(u)] for u in uniq], dtype=np.int64)[inv].reshape(arr.shape)
        return _as_1d("metric_id", arr, np.int64)

    def threshold_multiplier(self, ts_ms, elem) -> np.ndarray:
        """Calendar multiplier for each event (product over the events covering it)."""
        mult = np.ones(len(ts_ms))
        for ev in self.calendar:
            node = self._level_index(ev.scope_level)[elem]
            ids = self.topology.ids[ev.scope_level]
            hit = (ids[node] == ev.scope_id) & (ts_ms >= ev.start_ms) & (ts_ms < ev.end_ms)
            mult[hit] *= ev.widen
        return mult

    # ---- streaming -------------------------------------------------------------------------
    def update(self, ts_ms, elem, metric_id, value) -> np.ndarray:
        """Score one batch of metric values, classify what fires, return ANOMALY_DTYPE rows.

        Parameters
        ----------
        ts_ms : int64 ms UTC or datetime64 array (n,)
        elem : int64 array (n,) or str array (n,)
            Dense element indices (``topology.index_of(element_id)``), or element names (the
            topology's element names, see :meth:`element_index`).
        metric_id : int array (n,) or str array (n,)
            Index into ``metrics``, or metric names.
        value : float array (n,)

        Returns
        -------
        ANOMALY_DTYPE array of opened, closed and changed episodes, classified.

        Raises
        ------
        ValueError
            On length mismatch, element or metric out of range.
        """
        ts_ms = to_ms(ts_ms)
        elem = self.element_index(elem)
        metric_id = self.metric_index(metric_id)
        n = len(ts_ms)
        _check(
            len(elem) == n and len(metric_id) == n,
            f"ts_ms, elem and metric_id must have one length, got {n}, {len(elem)}, {len(metric_id)}",
        )
        value = _as_1d("value", value, np.float64)
        _check(len(value) == n, f"ts_ms, slot and value must have one length, got {n}, {n}, {len(value)}")
        return self._update_events(ts_ms, elem, metric_id, value)

    def _update_events(self, ts_ms, elem, metric_id, value, ts_sorted: bool = False) -> np.ndarray:
        """:meth:`update` of checked inputs: contiguous int64 ``ts_ms``, ``elem``, ``metric_id`` and
        float64 ``value`` of one length (indices are still range-checked); ``ts_sorted``: the
        caller has put ``ts_ms`` in non-decreasing order."""
        n = len(ts_ms)
        slot, scored = np.empty(n, dtype=np.int64), np.empty(n)
        log_pos, log_arg = np.empty(n, dtype=np.int64), np.empty(n)
        bad_e, bad_m, n_log, n_alive = _ke.prepare_events(
            elem, metric_id, value, self.topology.n_elements, self.n_metrics, self.log_offset,
            self.silence_metric, slot, scored, log_pos, log_arg,
        )  # fmt: skip
        if bad_e >= 0 or bad_m >= 0:
            self._check_indices(elem, metric_id)
        if n_alive == n:
            self.silence._observe(ts_ms, elem, ts_sorted)
        elif n_alive:
            alive = self.silence_metric[metric_id]
            self.silence._observe(ts_ms[alive], elem[alive], ts_sorted)
        mult = self.threshold_multiplier(ts_ms, elem) if self.calendar else None
        if n_log:  # NumPy's logarithm, as for any caller's values
            scored[log_pos[:n_log]] = np.log(log_arg[:n_log])
        rows = self.detector._score(ts_ms, slot, scored, mult)
        if len(rows):
            off_r = self.log_offset[rows["slot"] % self.n_metrics]
            lr = ~np.isnan(off_r)
            rows["value"][lr] = np.exp(rows["value"][lr]) - off_r[lr]
            rows["baseline"][lr] = np.exp(rows["baseline"][lr]) - off_r[lr]
        return self._classify(rows, slot)

    def _check_indices(self, elem: np.ndarray, metric_id: np.ndarray) -> None:
        """Raise the error naming the first out-of-range element index, else the first metric index."""
        n_el = self.topology.n_elements
        if len(elem) and (elem.min() < 0 or elem.max() >= n_el):
            bad = int(np.flatnonzero((elem < 0) | (elem >= n_el))[0])
            raise ValueError(
                f"elem[{bad}] = {elem[bad]} is not a dense element index (0..{n_el - 1}); "
                "map ids with topology.index_of() and quarantine the -1s"
            )
        bad = int(np.flatnonzero((metric_id < 0) | (metric_id >= self.n_metrics))[0])
        raise ValueError(
            f"metric_id[{bad}] = {metric_id[bad]} is outside 0..{self.n_metrics - 1} (metrics {self.metrics})"
        )

    def update_equip(self, equip: np.ndarray) -> np.ndarray:
        """:meth:`update` from an ``EQUIP_DTYPE`` array with external element ids.

        Rows whose element id is unknown or whose metric is out of range are not scored; they are
        counted in ``n_unknown`` and returned by :attr:`last_rejected`.
        """
        _check(
            equip.dtype.names is not None and set(EQUIP_DTYPE.names) <= set(equip.dtype.names),
            f"equip must have the fields {EQUIP_DTYPE.names}, got {equip.dtype.names}",
        )
        elem = self.topology.index_of(equip["element_id"])
        mid = equip["metric_id"].astype(np.int64)
        ok = (elem >= 0) & (mid >= 0) & (mid < self.n_metrics)
        self.last_rejected = equip[~ok]
        self.n_unknown += int(np.count_nonzero(~ok))
        return self.update(equip["ts_ms"][ok], elem[ok], mid[ok], equip["value"][ok])

    def _shared_levels(self) -> tuple:
        """The crowd and surge grouping levels the topology has, in order of precedence (a
        region-wide surge is the wider explanation and wins over a site's crowd), as the arrays of
        :func:`kernels.classify.classify_episodes`; cached per topology and settings."""
        cc = self.classify_config
        spec = [
            (level, min_n, frac, name)
            for level, min_n, frac, name in (
                (cc.crowd_level, cc.crowd_min_elements, cc.crowd_fraction, "crowd"),
                (cc.surge_level, cc.surge_min_elements, cc.surge_fraction, "surge"),
            )
            if self._has_level(level)
        ]
        key = (self.topology, tuple(spec))
        cached = getattr(self, "_levels_cache", None)
        if cached is None or cached[0][0] is not self.topology or cached[0][1] != key[1]:
            n_el = self.topology.n_elements
            n_nodes = np.array([len(self._level_ids(lv)) for lv, *_ in spec], dtype=np.int64)
            node = np.zeros((len(spec), n_el), dtype=np.int64)
            members = np.zeros((len(spec), n_el), dtype=np.int64)
            starts = np.zeros((len(spec), int(n_nodes.max(initial=0)) + 1), dtype=np.int64)
            for i, (level, *_) in enumerate(spec):
                node[i] = self._level_index(level)
                members[i] = np.argsort(node[i], kind="stable")  # the elements of each node, together
                starts[i, 1 : n_nodes[i] + 1] = np.cumsum(np.bincount(node[i], minlength=n_nodes[i]))
            cached = (
                key,
                [lv for lv, *_ in spec],
                node,
                members,
                starts,
                n_nodes,
                np.array([m for _, m, _, _ in spec], dtype=np.float64),
                np.array([f for _, _, f, _ in spec], dtype=np.float64),
                np.array([CLASSIFICATIONS.index(n) for *_, n in spec], dtype=np.int8),
            )
            self._levels_cache = cached
        return cached[1:]

    def _classify(self, rows: np.ndarray, batch_slot: np.ndarray) -> np.ndarray:
        """Classify a batch's episode rows in place (crowd / surge along the grouping levels,
        parent inhibition, the class an episode opened with) and track each slot's open class."""
        if len(rows) == 0:
            return rows
        det, last = self.detector, self.detector.last
        levels, node, members, starts, n_nodes, min_n, frac, lv_code = self._shared_levels()
        m = len(rows)
        code = np.empty(m, dtype=np.int8)
        lvl = np.empty(m, dtype=np.int8)
        nd = np.empty(m, dtype=np.int64)
        _kc.classify_episodes(
            rows["slot"], rows["direction"], rows["classification"] != "change", rows["end_ms"] >= 0,
            self.n_metrics, det.state.open_dir, det.state.nobs, batch_slot, last.flags, last.z,
            float(self.classify_config.shared_z), node, members, starts, n_nodes, min_n, frac, lv_code,
            self.parent_element, self.silence.silent_since, self.slot_class, code, lvl, nd,
        )  # fmt: skip
        rows["classification"] = _CLASS_NAMES[code]
        rows["scope_level"] = np.array(["element", *levels], dtype=rows.dtype["scope_level"])[lvl + 1]
        for i, level in enumerate(levels):
            at = lvl == i
            if at.any():
                rows["scope_id"][at] = self._level_ids(level)[nd[at]]
        return rows

    def check_silence(self, now_ms: int) -> np.ndarray:
        """Silence records at time ``now_ms`` (the pipeline's watermark).

        Elements whose next report is overdue become ``"silence"`` rows (suspected failure, open);
        when at least ``gap_min_elements`` and ``gap_fraction`` of a region's tracked elements are
        silent together they are ``"collection_gap"`` rows (scope region) instead, and elements whose
        parent element is silent are ``"inhibited"``. Elements that report again produce closing
        rows whose ``end_ms`` is the resume time: the event time of their first report after the
        silence, whatever order the reports arrive in and whenever the checks run.

        A collection gap is closed as a whole: its elements' closing rows are held until the
        region's gap is over (fewer silent elements than the gap needs) and none of its elements
        is still pending, then all come in one call (the region's gap alert resolves once, at
        the last resume). The gap ends at the event time its silent count fell below the
        threshold, computed from the elements' resume times; an element not back by that time
        plus its own expected gap and slack is a failure the gap hid: it is re-issued as a
        ``"silence"`` (same ``start_ms``, new ``t_ms``). A flagged ``"silence"`` is likewise
        re-issued as ``"collection_gap"`` when its region turns out to be a gap. So the rows, but
        for ``t_ms`` and the running ``value`` / ``peak_score`` of open rows, do not depend on how
        often this is called, as long as calls are closer than the silences they should see.
        """
        now = int(now_ms)
        mon = self.silence
        cur = self._silence_class()
        held = self._any_held(cur)
        if held:
            was_member = (cur == "collection_gap") & ~mon.silent  # back, held until their gap closes
            prev = mon.back_ts.copy(), self._silence_start.copy(), mon.flag_gap_ms.copy()
        newly, resumed = mon.check(now)
        if not held and not len(newly) and not len(resumed) and not mon.silent.any():
            return np.zeros(0, dtype=ANOMALY_DTYPE)  # nothing silent, nothing held: nothing to report
        self._held = None  # the classes may change below
        region, rids, gap_region = self._gap_state()
        # a held gap element silent again: its earlier silence closes now, at its resume time
        again = newly[was_member[newly]] if held else newly[:0]
        deadline = self._gap_deadlines(region, gap_region)
        hidden = mon.silent & (cur == "collection_gap") & (deadline >= 0) & (now > deadline)
        reissue = np.flatnonzero((mon.silent & gap_region[region] & (cur == "silence")) | hidden)
        flagged = np.union1d(newly, reissue).astype(np.int64)
        opened = self._silence_open_rows(flagged, region, rids, gap_region, now)
        self._silence_cls[flagged] = opened["classification"]
        member = self._silence_cls == "collection_gap"
        pending = np.bincount(region[member & mon.silent], minlength=len(rids)) > 0
        back = member & ~mon.silent
        done = back & ~gap_region[region] & ~pending[region]
        closing = np.union1d(resumed[~member[resumed]], np.flatnonzero(done)).astype(np.int64)
        closed = self._silence_close_rows(closing, mon.back_ts[closing], self._silence_start[closing])
        if len(again):
            old = self._silence_close_rows(again, *(p[again] for p in prev[:2]), "collection_gap", prev[2][again])
            closed = np.concatenate([old, closed])
        rows = np.concatenate([opened, closed])
        rows["direction"] = -1
        rows["metric"] = ""
        rows["t_ms"] = now
        self._silence_start[flagged] = mon.silent_since[flagged]
        self._silence_cls[closing] = ""
        mon.release(closing)
        return rows

    def _any_held(self, cur: np.ndarray) -> bool:
        """Whether any element has an open silence (a non-empty class in ``cur``, the silence
        classes); remembered for this array until :meth:`check_silence` changes it."""
        held = getattr(self, "_held", None)
        if held is None or held[0] is not cur:
            held = (cur, bool(cur.view(np.uint32)[:: cur.itemsize // 4].any()))  # first character
            self._held = held
        return held[1]

    def _gap_state(self):
        """(dense region of each element, region ids, whether each region is a collection gap now)."""
        mon, cc = self.silence, self.classify_config
        if self._has_level(cc.gap_level):
            region = self._level_index(cc.gap_level)
            rids = self._level_ids(cc.gap_level)
        else:  # no grouping: every element is its own node, so no collection gap
            region = np.arange(self.topology.n_elements)
            rids = np.full(self.topology.n_elements, -1, dtype=np.int64)
        tracked = mon.n_reports >= mon.min_reports
        silent_cnt = np.bincount(region[mon.silent], minlength=len(rids))
        self._tracked_cnt = np.bincount(region[tracked], minlength=len(rids))
        return region, rids, self._is_gap(silent_cnt, self._tracked_cnt) & self._has_level(cc.gap_level)

    def _is_gap(self, silent_cnt, tracked_cnt) -> np.ndarray:
        cc = self.classify_config
        return (silent_cnt >= cc.gap_min_elements) & (silent_cnt >= cc.gap_fraction * np.maximum(tracked_cnt, 1))

    def _gap_deadlines(self, region: np.ndarray, gap_region: np.ndarray) -> np.ndarray:
        """Per element (-1: none): for a still-silent element of a collection gap that is over, the
        time by which it had to report again (the gap's end plus its own expected gap and slack).

        The gap's end is the resume time at which the count of its elements still silent fell below
        the gap threshold (elements not back yet count as silent throughout), a function of the
        data alone."""
        mon = self.silence
        member = self._silence_cls == "collection_gap"
        out = np.full(len(member), -1, dtype=np.int64)
        for r in np.unique(region[member & mon.silent & ~gap_region[region]]):
            mem = member & (region == r)
            still = mem & mon.silent
            back = np.sort(mon.back_ts[mem & ~mon.silent])
            left = still.sum() + len(back) - np.arange(1, len(back) + 1)  # silent after each resume
            below = np.flatnonzero(~self._is_gap(left, self._tracked_cnt[r]))
            end = int(back[below[0]]) if len(below) else (int(back[-1]) if len(back) else -1)
            if end < 0:  # the gap shrank by growth of the region alone: no resume time to go by
                end = int(mon.silent_since[still].max())
            due = end + np.ceil(mon.gap_factor * mon.gap_ms[still]).astype(np.int64) + mon.slack_ms
            out[still] = due
        return out

    def _silence_open_rows(self, flagged, region, rids, gap_region, now: int) -> np.ndarray:
        mon, cc = self.silence, self.classify_config
        eids = self.topology.ids[self.topology.element_level]
        rows = np.zeros(len(flagged), dtype=ANOMALY_DTYPE)
        cls = np.where(gap_region[region[flagged]], "collection_gap", "silence").astype("U16")
        par = self.parent_element[flagged]
        inhib = (cls == "silence") & (par >= 0)
        inhib[inhib] = mon.silent[par[inhib]]
        cls[inhib] = "inhibited"
        rows["slot"] = flagged * self.n_metrics
        rows["element_id"] = eids[flagged]
        rows["start_ms"] = mon.silent_since[flagged]
        rows["end_ms"] = -1
        gap_ms = mon.flag_gap_ms[flagged]  # expected gap when flagged (a re-issue keeps it)
        rows["peak_score"] = (now - mon.last_ts[flagged]) / np.maximum(gap_ms, 1.0)
        rows["classification"] = cls
        rows["baseline"] = gap_ms
        rows["threshold"] = mon.gap_factor * gap_ms + mon.slack_ms
        rows["value"] = now - mon.last_ts[flagged]
        gap = cls == "collection_gap"
        rows["scope_level"] = np.where(gap, str(cc.gap_level), "element")
        rows["scope_id"] = np.where(gap, rids[region[flagged]], eids[flagged])
        return rows

    def _silence_close_rows(self, elems, end_ms, start_ms, cls=None, gap_ms=None) -> np.ndarray:
        mon = self.silence
        eids = self.topology.ids[self.topology.element_level]
        rr = np.zeros(len(elems), dtype=ANOMALY_DTYPE)
        rr["slot"] = elems * self.n_metrics
        rr["element_id"] = eids[elems]
        rr["start_ms"] = start_ms
        rr["end_ms"] = np.where(end_ms >= 0, end_ms, mon.last_ts[elems])  # no watched report: the latest
        rr["classification"] = self._silence_cls[elems] if cls is None else cls
        if gap_ms is None:  # as when flagged: not the gap the silence itself inflated
            gap_ms = mon.flag_gap_ms[elems]
        rr["baseline"] = gap_ms
        rr["threshold"] = mon.gap_factor * gap_ms + mon.slack_ms
        rr["value"] = rr["end_ms"] - rr["start_ms"]
        rr["peak_score"] = rr["value"] / np.maximum(gap_ms, 1.0)
        rr["scope_level"] = "element"
        rr["scope_id"] = eids[elems]
        return rr

    def set_topology(self, topology: Topology, parent_element=None):
        """Follow a new topology version (from ``Topology.add_elements`` / ``retire_elements`` /
        ``rehome_elements`` or ``reconcile``: existing elements keep their dense indices).

        Added elements get fresh slots (cold baselines, the per-metric floors and confirmation
        counts of the other elements); every existing slot keeps its learned state; re-homed
        elements are classified by their new site and region from now on.

        Raises
        ------
        ValueError
            If the new topology has fewer elements (dense indices must be stable).
        """
        _check(isinstance(topology, Topology), f"topology must be a Topology, got {type(topology).__name__}")
        n_old, n_new = self.topology.n_elements, topology.n_elements
        _check(
            n_new >= n_old,
            f"the new topology has {n_new} elements, fewer than {n_old}; dense element "
            "indices must stay stable (retire elements instead of removing them)",
        )
        self._silence_class()
        if n_new > n_old:
            det, nm = self.detector, self.n_metrics
            old_slots = det.n_slots
            det.grow(n_new * nm)
            new = np.arange(old_slots, n_new * nm)
            det.slot_element_id[new] = np.repeat(topology.ids[topology.element_level][n_old:], nm)
            det.slot_metric[new] = np.tile(np.array(self.metrics, dtype=f"U{NAME_LEN}"), n_new - n_old)
            self._apply_metric_settings(new)
            self.silence.grow(n_new)
            self.slot_class = np.concatenate([self.slot_class, np.full(len(new), -1, dtype=np.int8)])
            self._silence_cls = np.concatenate([self._silence_cls, np.full(n_new - n_old, "", dtype="U16")])
            self._silence_start = np.concatenate([self._silence_start, np.full(n_new - n_old, -1, dtype=np.int64)])
        self.topology = topology
        self.parent_element = (
            default_parents(topology) if parent_element is None else _as_1d("parent_element", parent_element, np.int64)
        )

    def _silence_class(self) -> np.ndarray:
        if not hasattr(self, "_silence_cls") or len(self._silence_cls) != self.topology.n_elements:
            self._silence_cls = np.full(self.topology.n_elements, "", dtype="U16")
            self._silence_start = np.full(self.topology.n_elements, -1, dtype=np.int64)
        return self._silence_cls

    # ---- state -----------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Checkpoint (the topology, calendar and configs are supplied again on restore)."""
        self._silence_class()
        return {
            "kind": "NetworkAnomalyDetector",
            "detector": self.detector.to_state(),
            "silence": self.silence.to_state(),
            "slot_class": self.slot_class.copy(),
            "silence_cls": self._silence_cls.copy(),
            "silence_start": self._silence_start.copy(),
            "n_unknown": self.n_unknown,
            "metrics": np.array(self.metrics),
            "silence_metric": self.silence_metric.copy(),
            "log_offset": self.log_offset.copy(),
        }

    @classmethod
    def from_state(
        cls, d: dict, topology: Topology, classify: ClassifyConfig | None = None, calendar=None, parent_element=None
    ) -> NetworkAnomalyDetector:
        """Restore from :meth:`to_state` output with the same topology."""
        _check(
            d.get("kind") == "NetworkAnomalyDetector",
            f"state is not a NetworkAnomalyDetector checkpoint (kind={d.get('kind')!r})",
        )
        det = AnomalyDetector.from_state(d["detector"])
        net = cls(topology, tuple(str(m) for m in d["metrics"]), det.config, classify, calendar, parent_element)
        _check(
            net.detector.n_slots == det.n_slots,
            f"checkpoint has {det.n_slots} slots but the topology gives {net.detector.n_slots}",
        )
        net.detector = det
        net.silence = SilenceMonitor.from_state(d["silence"])
        net.slot_class = np.array(d["slot_class"], dtype=np.int8)
        net._silence_cls = np.array(d["silence_cls"], dtype="U16")
        net._silence_start = np.array(d["silence_start"], dtype=np.int64)
        net.n_unknown = int(d["n_unknown"])
        net.silence_metric = np.array(d["silence_metric"], dtype=bool)
        net.log_offset = np.array(d["log_offset"], dtype=np.float64)
        return net
