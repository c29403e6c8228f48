"""The analysis component of a pipeline: keeps what the analyses of this package read.

``AnalysisComponent`` follows the contract of :mod:`telcoanalytics.pipeline.contract`. From the
stream it keeps

* the localisation cube (:func:`~telcoanalytics.analysis.localize.localize_spec`: calls, answered
  and dropped by element x service x cause group x hour) from the CDRs,
* the complaint cube (:func:`~telcoanalytics.analysis.complaints.complaint_cube_spec`) from the
  complaints,
* the flows aggregated per (source element, destination, interval), for routing efficiency.

It raises no alerts; :func:`telcoanalytics.analysis.report.analysis_report_lines` reads it (and
``report_lines`` calls that). Register it with the pipeline's components, e.g.
``Pipeline(topology, components={"analysis": AnalysisComponent(topology)})``.
"""

from __future__ import annotations

import numpy as np

from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.records import FLOW_DTYPE

__all__ = ["AnalysisComponent"]


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
    """

    def __init__(self, topology, interval_ms: int = 300_000, capacity_mbps=None, _cubes=None, _complaints=None):
        from telcoanalytics.analysis.complaints import complaint_cube_spec
        from telcoanalytics.analysis.localize import localize_spec
        from telcoanalytics.cube import CubeSet

        self.topology = topology
        self.interval_ms = int(interval_ms)
        self.capacity_mbps = None if capacity_mbps is None else np.asarray(capacity_mbps, dtype=np.float64)
        self.cubes = _cubes or CubeSet({"localize": localize_spec()}, topology)
        self.complaints = _complaints or CubeSet({"complaints": complaint_cube_spec()}, topology, source="complaint")
        self._flow_parts: list = []  # aggregated batches
        self._flow_chunks: list = []  # aggregated groups of batches (merged when they pile up)
        self._flows = np.zeros(0, dtype=FLOW_DTYPE)
        self.n = {"cdr": 0, "complaint": 0, "flow": 0}
        from telcoanalytics.analysis.series import SeriesKeeper

        self.series = SeriesKeeper(topology, bin_ms=self.interval_ms)
        self.context_day = None  # a synthetic day's ground truth for the report (set by the replay; not state)

    # ---- contract --------------------------------------------------------------------------
    def update(self, batch: RoutedBatch) -> list:
        if batch.source in ("equip", "qos", "complaint"):
            self.series.add_batch(batch)
        if batch.source == "cdr":
            self.cubes.update(batch.rows, element_idx=batch.element_index)
        elif batch.source == "complaint":
            self.complaints.update(batch.rows, element_idx=batch.element_index)
        elif batch.source == "flow":
            self._flow_parts.append(_aggregate(batch.rows, self.interval_ms))
            if len(self._flow_parts) >= 64:  # merge recent parts only: the stream's cost stays linear
                self._flow_chunks.append(_aggregate(np.concatenate(self._flow_parts), self.interval_ms))
                self._flow_parts = []
                if len(self._flow_chunks) >= 64:
                    self._flow_chunks = [_aggregate(np.concatenate(self._flow_chunks), self.interval_ms)]
        else:
            return []
        self.n[batch.source] += len(batch.rows)
        return []

    def learn(self, day, until_ms: int) -> None:
        """Fold a synthetic day's history (the clean rows that arrived before ``until_ms``) into the
        kept KPI series, so trends, forecasts and before/after comparisons see the days before
        the replay, as a deployment would read them from its history."""
        from telcoanalytics.records import ELEMENT_FIELD
        from telcoanalytics.synth.stream import ORIGIN_CLEAN

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
        return []

    def topology_changed(self, topology, changes) -> list:
        """Cubes follow the change (cells keep their parents); flows are kept by element id."""
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
            "flows": self._flows,
            "interval_ms": self.interval_ms,
            "n": np.array([self.n[k] for k in ("cdr", "complaint", "flow")]),
            "series": self.series.to_state(),
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
        )
        comp._flows = np.asarray(state["flows"]).astype(FLOW_DTYPE)
        comp.n = dict(zip(("cdr", "complaint", "flow"), (int(x) for x in state["n"])))
        if "series" in state:
            from telcoanalytics.analysis.series import SeriesKeeper

            comp.series = SeriesKeeper.from_state(state["series"], topology)
        return comp

    # ---- what the report reads ---------------------------------------------------------------
    @property
    def flows(self) -> np.ndarray:
        """The aggregated flows (one row per source, destination and interval)."""
        self._compact()
        return self._flows

    def _compact(self):
        if self._flow_parts or self._flow_chunks:
            parts = [self._flows, *self._flow_chunks, *self._flow_parts]
            self._flows = _aggregate(np.concatenate(parts), self.interval_ms)
            self._flow_parts, self._flow_chunks = [], []


def _aggregate(rows: np.ndarray, interval_ms: int) -> np.ndarray:
    """Sum bytes, packets and flows per (source, destination, interval start)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=FLOW_DTYPE)
    b = rows["ts_ms"] // interval_ms * interval_ms
    key = np.stack([b, rows["src_element_id"], rows["dst_element_id"]], axis=1)
    uk, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    out = np.zeros(len(uk), dtype=FLOW_DTYPE)
    out["ts_ms"], out["src_element_id"], out["dst_element_id"] = uk[:, 0], uk[:, 1], uk[:, 2]
    for f in ("bytes", "packets", "flows"):
        out[f] = np.bincount(inv, rows[f].astype(np.float64), len(uk)).round().astype(np.int64)
    return out
