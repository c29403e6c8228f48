"""The analysis component of a pipeline: keeps what the analyses of this package read.

``AnalysisComponent`` follows the contract of :mod:`telcoanalytics.pipeline.contract`. From the
stream it keeps

* the localisation cube (:func:`~telcoanalytics.analysis.localize.localize_spec`: calls, answered
  and dropped by element x service x cause group x hour) from the CDRs,
* the complaint cube (:func:`~telcoanalytics.analysis.complaints.complaint_cube_spec`) from the
  complaints,
* the flows aggregated per (source element, destination, interval), for routing efficiency,
* the KPI series of :class:`~telcoanalytics.analysis.series.SeriesKeeper` (a week of 5-minute bins).

The cubes and the flows keep the last ``retention_ms`` of event time (default
:data:`DEFAULT_RETENTION_MS`, two days), the series a week: the component's memory and its
checkpoint stop growing after the first days of a run that lasts months.

It raises no alerts; :func:`telcoanalytics.analysis.report.analysis_report_lines` reads it (and
``report_lines`` calls that). Register it with the pipeline's components, e.g.
``Pipeline(topology, components={"analysis": AnalysisComponent(topology)})``.
"""

from __future__ import annotations

import numpy as np

from telcoanalytics.pipeline.coalesce import DEFAULT_COALESCE_ROWS, BatchBuffer
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.records import FLOW_DTYPE

__all__ = ["AnalysisComponent", "DEFAULT_RETENTION_MS"]

DEFAULT_RETENTION_MS = 2 * 86_400_000
"""Event time the localisation and complaint cubes and the aggregated flows keep (two days: the
worst incident of the last day is still compared with the day before)."""


class AnalysisComponent:
    """Localisation and complaint cubes and aggregated flows, kept up to date from the stream.

    Parameters
    ----------
    topology : Topology
    interval_ms : int
        Flow aggregation interval (the flows' reporting interval).
    capacity_mbps : float array (n_elements,), optional
        Element capacities for routing efficiency when the topology has no ``capacity_mbps``
        attribute (the synthetic day's ``capacity_mbps``).
    retention_ms : int or None
        Event time the cubes and the flows keep, relative to the latest event (hours of the cubes,
        intervals of the flows); None keeps everything (memory then grows with the run).
    """

    def __init__(
        self,
        topology,
        interval_ms: int = 300_000,
        capacity_mbps=None,
        _cubes=None,
        _complaints=None,
        coalesce_rows: int = DEFAULT_COALESCE_ROWS,
        retention_ms: int | None = DEFAULT_RETENTION_MS,
    ):
        from telcoanalytics.analysis.complaints import complaint_cube_spec
        from telcoanalytics.analysis.localize import localize_spec
        from telcoanalytics.cube import CubeSet

        if retention_ms is not None and (int(retention_ms) != retention_ms or retention_ms < int(interval_ms)):
            raise ValueError(
                f"retention_ms must be None or a whole number of ms of at least one interval ({interval_ms}), "
                f"got {retention_ms!r}"
            )
        self.topology = topology
        self.interval_ms = int(interval_ms)
        self.retention_ms = None if retention_ms is None else int(retention_ms)
        self.capacity_mbps = None if capacity_mbps is None else np.asarray(capacity_mbps, dtype=np.float64)
        keep = {} if retention_ms is None else {"retention_ms": max(int(retention_ms), 3_600_000)}
        self._cubes = _cubes or CubeSet({"localize": localize_spec(**keep)}, topology)
        self._complaints = _complaints or CubeSet(
            {"complaints": complaint_cube_spec(**keep)}, topology, source="complaint"
        )
        self.n_flows_expired = 0  # aggregated flow rows dropped by the retention
        self._flow_parts: list = []  # aggregated groups of batches (merged when they pile up)
        self._flows = np.zeros(0, dtype=FLOW_DTYPE)
        self.n = {"cdr": 0, "complaint": 0, "flow": 0}
        from telcoanalytics.analysis.series import SeriesKeeper

        self._series = SeriesKeeper(topology, bin_ms=self.interval_ms)
        self._buffer = BatchBuffer(coalesce_rows)  # batches not yet folded (see telcoanalytics.pipeline.coalesce)
        self.context_day = None  # a synthetic day's ground truth for the report (set by the replay; not state)

    # ---- what is kept (every batch received so far folded in) ------------------------------------
    @property
    def cubes(self):
        """The localisation cube set."""
        self._fold()
        return self._cubes

    @property
    def complaints(self):
        """The complaint cube set."""
        self._fold()
        return self._complaints

    @property
    def series(self):
        """The kept KPI series (:class:`~telcoanalytics.analysis.series.SeriesKeeper`)."""
        self._fold()
        return self._series

    def _fold(self) -> None:
        """Fold the buffered batches into the cubes, series and flows."""
        for b in self._buffer.drain():
            if b.source in ("equip", "qos", "complaint"):
                self._series.add_batch(b)
            if b.source == "cdr":
                self._cubes.update(b.rows, element_idx=b.element_index)
            elif b.source == "complaint":
                self._complaints.update(b.rows, element_idx=b.element_index)
            elif b.source == "flow":
                self._flow_parts.append(_aggregate(b.rows, self.interval_ms))
                if len(self._flow_parts) >= 64:
                    self._merge_flows()

    # ---- contract --------------------------------------------------------------------------
    def update(self, batch: RoutedBatch) -> list:
        if batch.source not in ("cdr", "complaint", "flow", "equip", "qos"):
            return []
        if batch.source in self.n:
            self.n[batch.source] += len(batch.rows)
        if self._buffer.add(batch):
            self._fold()
        return []

    def learn(self, day, until_ms: int) -> None:
        """Fold a synthetic day's history (the clean rows that arrived before ``until_ms``) into the
        kept KPI series, so trends, forecasts and before/after comparisons see the days before
        the replay, as a deployment would read them from its history."""
        from telcoanalytics.records import ELEMENT_FIELD
        from telcoanalytics.synth.stream import ORIGIN_CLEAN

        self._fold()
        for source in ("equip", "qos", "complaint"):
            if source not in getattr(day, "sources", ()):
                continue
            rows, arrival_ms, origin = day.raw(source)
            keep = (origin == ORIGIN_CLEAN) & (arrival_ms < until_ms)
            rows = rows[keep]
            idx = self.topology.index_of(rows[ELEMENT_FIELD[source]])
            ok = idx >= 0
            self.series.add_batch(RoutedBatch(source, rows[ok], idx[ok], np.zeros(int(ok.sum()), np.int64)))

    def advance(self, watermark_ms: int) -> list:
        return []

    def finish(self, watermark_ms: int) -> list:
        self._fold()
        return []

    def topology_changed(self, topology, changes) -> list:
        """Cubes follow the change (cells keep their parents); flows are kept by element id."""
        self._fold()
        self.cubes.set_topology(topology, changes)
        self.complaints.set_topology(topology, changes)
        self.series.topology_changed(topology)
        if self.capacity_mbps is not None and topology.n_elements != len(self.capacity_mbps):
            ids = self.topology.ids[self.topology.element_level]
            new = np.zeros(topology.n_elements)
            pos = topology.index_of(ids)
            new[pos[pos >= 0]] = self.capacity_mbps[pos >= 0]
            self.capacity_mbps = new
        self.topology = topology
        return []

    def report_lines(self) -> list[str]:
        from telcoanalytics.analysis.report import analysis_report_lines

        return analysis_report_lines(None, self)

    def to_state(self) -> dict:
        self._compact()
        d = {
            "cubes": self.cubes.to_state(),
            "complaints": self.complaints.to_state(),
            "flows": _flow_columns(self._flows, self.interval_ms),
            "interval_ms": self.interval_ms,
            "n": np.array([self.n[k] for k in ("cdr", "complaint", "flow")]),
            "series": self.series.to_state(),
            "retention_ms": -1 if self.retention_ms is None else self.retention_ms,
            "n_flows_expired": self.n_flows_expired,
        }
        if self.capacity_mbps is not None:
            d["capacity_mbps"] = self.capacity_mbps
        return d

    @classmethod
    def from_state(cls, state: dict, topology) -> AnalysisComponent:
        from telcoanalytics.analysis.complaints import category_dimension
        from telcoanalytics.cube import CubeSet

        comp = cls(
            topology,
            int(state["interval_ms"]),
            state.get("capacity_mbps"),
            _cubes=CubeSet.from_state(state["cubes"], topology=topology),
            _complaints=CubeSet.from_state(
                state["complaints"], topology=topology, dimensions={"category": category_dimension()}
            ),
            retention_ms=None if int(state.get("retention_ms", -1)) < 0 else int(state["retention_ms"]),
        )
        comp.n_flows_expired = int(state.get("n_flows_expired", 0))
        comp._flows = _flows_of(state["flows"], int(state["interval_ms"]))
        comp.n = dict(zip(("cdr", "complaint", "flow"), (int(x) for x in state["n"])))
        if "series" in state:
            from telcoanalytics.analysis.series import SeriesKeeper

            comp._series = SeriesKeeper.from_state(state["series"], topology)
        return comp

    # ---- what the report reads ---------------------------------------------------------------
    @property
    def flows(self) -> np.ndarray:
        """The aggregated flows (one row per source, destination and interval)."""
        self._compact()
        return self._flows

    def _compact(self):
        self._fold()
        self._merge_flows()

    def _merge_flows(self) -> None:
        """Merge the aggregated parts into the kept flows, re-aggregating only the kept rows from the
        parts' earliest interval on (the flows are sorted by interval), then drop the intervals
        beyond the retention.

        The intervals beyond the retention are cut before the one concatenation, so the kept flows
        own an array of exactly their size (a view of the longer concatenation would keep the
        dropped rows' memory until the next merge: the largest part of the analysis component's
        memory growth after its second day)."""
        if not self._flow_parts:
            return
        new = np.concatenate(self._flow_parts)
        self._flow_parts = []
        old = self._flows
        cut = int(np.searchsorted(old["ts_ms"], new["ts_ms"].min())) if len(new) else len(old)
        tail = _aggregate(np.concatenate([old[cut:], new]), self.interval_ms)
        lo = lo_tail = 0
        if self.retention_ms is not None and len(old) + len(tail):
            last = int(tail["ts_ms"][-1]) if len(tail) else int(old["ts_ms"][-1])
            oldest = last - self.retention_ms + self.interval_ms
            lo = min(int(np.searchsorted(old["ts_ms"], oldest)), cut)
            lo_tail = int(np.searchsorted(tail["ts_ms"], oldest))
            self.n_flows_expired += lo + lo_tail
        self._flows = np.concatenate([old[lo:cut], tail[lo_tail:]])


def _flow_columns(flows: np.ndarray, interval_ms: int) -> dict:
    """The aggregated flows for a checkpoint, column by column, times as interval numbers from the
    first (so the checkpoint narrows each column to the integer type its values need)."""
    t0 = int(flows["ts_ms"].min()) if len(flows) else 0
    out = {k: flows[k] for k in FLOW_DTYPE.names if k != "ts_ms"}
    out["t0_ms"] = t0
    out["interval"] = (flows["ts_ms"] - t0) // interval_ms
    return out


def _flows_of(state, interval_ms: int) -> np.ndarray:
    """The flows of :func:`_flow_columns` (or of a checkpoint that stored the structured array)."""
    if not isinstance(state, dict):
        return np.asarray(state).astype(FLOW_DTYPE)
    out = np.zeros(len(state["interval"]), dtype=FLOW_DTYPE)
    for k in FLOW_DTYPE.names:
        if k != "ts_ms":
            out[k] = state[k]
    out["ts_ms"] = int(state["t0_ms"]) + np.asarray(state["interval"], np.int64) * interval_ms
    return out


def _aggregate(rows: np.ndarray, interval_ms: int) -> np.ndarray:
    """Sum bytes, packets and flows per (source, destination, interval start), sorted by
    (interval start, source, destination)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=FLOW_DTYPE)
    b = rows["ts_ms"] // interval_ms
    src, dst = rows["src_element_id"], rows["dst_element_id"]
    key = _group_key(b, src, dst)
    if key is None:  # id ranges too wide for one 64-bit key: sort by the three columns
        order = np.lexsort((dst, src, b))
        bs, ss, ds = b[order], src[order], dst[order]
        start = np.ones(len(order), dtype=bool)
        start[1:] = (bs[1:] != bs[:-1]) | (ss[1:] != ss[:-1]) | (ds[1:] != ds[:-1])
    else:
        order = np.argsort(key)
        ks = key[order]
        start = np.ones(len(order), dtype=bool)
        start[1:] = ks[1:] != ks[:-1]
    inv = np.empty(len(order), dtype=np.int64)
    inv[order] = np.cumsum(start) - 1  # group of each row, in the rows' order
    first = order[start]
    out = np.zeros(len(first), dtype=FLOW_DTYPE)
    out["ts_ms"], out["src_element_id"], out["dst_element_id"] = b[first] * interval_ms, src[first], dst[first]
    for f in ("bytes", "packets", "flows"):
        out[f] = np.bincount(inv, rows[f].astype(np.float64), len(first)).round().astype(np.int64)
    return out


def _group_key(b, src, dst):
    """One int64 per row ordered as (``b``, ``src``, ``dst``) (offsets from each column's minimum in
    mixed radix), or None when the three ranges do not fit in 63 bits."""
    los = [int(x.min()) for x in (b, src, dst)]
    spans = [int(x.max()) - lo + 1 for x, lo in zip((b, src, dst), los)]
    if spans[0] * spans[1] * spans[2] >= 2**63:
        return None
    return ((b - los[0]) * spans[1] + (src - los[1])) * spans[2] + (dst - los[2])
