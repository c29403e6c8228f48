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

from kernels.fold import empty_slots, flows_into_ring, rehash_pairs, ring_groups, ring_to_rows
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
        self._flow_store = (
            _FlowParts(self.interval_ms)
            if retention_ms is None
            else _FlowRing(self.interval_ms, self.retention_ms, topology.n_elements)
        )
        self.n = {"cdr": 0, "complaint": 0, "flow": 0}
        from telcoanalytics.analysis.series import SeriesKeeper

        self._series = SeriesKeeper(topology, bin_ms=self.interval_ms)
        self._buffer = BatchBuffer(coalesce_rows)  # CDR and complaint batches not yet in the cubes
        self._coalesce_rows = int(coalesce_rows)
        self._n_pending = 0  # rows of every source since the last fold
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

    @property
    def n_flows_expired(self) -> int:
        """Aggregated flow rows (source, destination and interval) dropped by the retention."""
        return self._flow_store.n_expired

    @n_flows_expired.setter
    def n_flows_expired(self, value: int) -> None:
        self._flow_store.n_expired = int(value)

    def _fold(self) -> None:
        """Fold everything received so far: the staged series sums into the kept series, the
        buffered CDRs and complaints into the cubes."""
        self._fold_series()
        self._fold_cubes()

    def _fold_series(self) -> None:
        self._series.flush()
        self._flow_store.fold()
        self._n_pending = 0

    def _fold_cubes(self) -> None:
        for b in self._buffer.drain():
            if b.source == "cdr":
                self._cubes.update(b.rows, element_idx=b.element_index)
            else:
                self._complaints.update(b.rows, element_idx=b.element_index)

    # ---- contract --------------------------------------------------------------------------
    def update(self, batch: RoutedBatch) -> list:
        """Take one routed batch: flows into their store and series rows into per-cell sums at once,
        CDRs and complaints buffered for the cubes.

        The cubes take the buffered rows once ``coalesce_rows`` of them piled up (their measures
        are counts and sketches: the same whatever the batches); the series add their staged sums
        every ``coalesce_rows`` rows of all sources (floating-point sums: the same grouping as one
        fold of every source at that interval)."""
        source = batch.source
        if source not in ("cdr", "complaint", "flow", "equip", "qos"):
            return []
        if source in self.n:
            self.n[source] += len(batch.rows)
        if len(batch.rows):
            if source in ("equip", "qos", "complaint"):
                self._series.stage_batch(batch)
            if source in ("cdr", "complaint"):
                if self._buffer.add(batch):
                    self._fold_cubes()
            elif source == "flow":
                self._flow_store.add(batch.rows)
            self._n_pending += len(batch.rows)
        if self._n_pending >= self._coalesce_rows:
            self._fold_series()
        return []

    def learn(self, day, until_ms: int) -> None:
        """Fold a synthetic day's history (the clean rows that arrived before ``until_ms``) into the
        kept KPI series, so trends, forecasts and before/after comparisons see the days before
        the replay, as a deployment would read them from its history."""
        from telcoanalytics.records import ELEMENT_FIELD, METRIC_CODE

        self._fold()
        for source in ("equip", "qos", "complaint"):
            if source not in getattr(day, "sources", ()):
                continue
            code = METRIC_CODE["prb_util_pct"] if source == "equip" else None  # the one metric kept
            fields = ("ts_ms", ELEMENT_FIELD[source]) + {"equip": ("value",), "qos": ("latency_ms",)}.get(source, ())
            cols = _clean_history(day, source, until_ms, fields, code)
            idx = _element_index(self.topology, cols[1])
            ok = idx >= 0
            ts, e = cols[0][ok], idx[ok]
            if source == "complaint":
                self.series.add_complaints(ts, e)
            else:
                self.series.add("prb_util_pct" if source == "equip" else "latency_ms", ts, e, cols[2][ok])

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
        d = {
            "cubes": self.cubes.to_state(),
            "complaints": self.complaints.to_state(),
            "flows": _flow_columns(self.flows, self.interval_ms),
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
        comp._flow_store.load(_flows_of(state["flows"], int(state["interval_ms"])))
        comp.n_flows_expired = int(state.get("n_flows_expired", 0))
        comp.n = dict(zip(("cdr", "complaint", "flow"), (int(x) for x in state["n"])))
        if "series" in state:
            from telcoanalytics.analysis.series import SeriesKeeper

            comp._series = SeriesKeeper.from_state(state["series"], topology)
        return comp

    # ---- what the report reads ---------------------------------------------------------------
    @property
    def flows(self) -> np.ndarray:
        """The aggregated flows (one row per source, destination and interval, sorted by interval,
        source and destination; a new array at each read)."""
        self._fold()
        return self._flow_store.rows()


class _FlowRing:
    """Flows summed per link (source, destination) and interval over the last ``retention_ms``
    (``kernels.fold.flows_into_ring``): a ring of ``retention_ms // interval_ms`` intervals by the
    links, numbered as first seen. Each row costs the same whatever the retention holds, and the
    memory is fixed by the links; the sums are integers, so the order rows arrive in does not
    matter.

    The kept intervals are those from the latest one back over the retention (``ts_ms >= latest -
    retention_ms + interval_ms``); rows of older intervals are dropped and counted, per group
    when their interval leaves the ring, per row when they arrive after it left."""

    def __init__(self, interval_ms: int, retention_ms: int, n_links_hint: int = 0):
        self.interval_ms = int(interval_ms)
        self.w = max(1, int(retention_ms) // self.interval_ms)
        self.state = np.zeros(3, np.int64)  # latest interval, groups dropped, 1 once a row came
        self.n_links = 0
        self._alloc(max(64, int(n_links_hint) + int(n_links_hint) // 4))

    def _alloc(self, cap: int) -> None:
        """Room for ``cap`` links (the links known so far copied)."""
        n = self.n_links
        old = getattr(self, "link_src", None)
        size = 1 << max(6, int(2 * cap - 1).bit_length())
        self.slots = empty_slots(size)
        src, dst = np.zeros(cap, np.int64), np.zeros(cap, np.int64)
        ring = [np.zeros((self.w, cap), np.int64) for _ in range(3)] + [np.zeros((self.w, cap), np.uint8)]
        if old is not None:
            src[:n], dst[:n] = self.link_src[:n], self.link_dst[:n]
            for new, prev in zip(ring, (self.ring_bytes, self.ring_packets, self.ring_flows, self.present)):
                new[:, :n] = prev[:, :n]
        self.link_src, self.link_dst = src, dst
        self.ring_bytes, self.ring_packets, self.ring_flows, self.present = ring
        rehash_pairs(self.slots, src, dst, n)

    @property
    def n_expired(self) -> int:
        return int(self.state[1])

    @n_expired.setter
    def n_expired(self, value: int) -> None:
        self.state[1] = value

    def add(self, rows: np.ndarray) -> None:
        start, n = 0, len(rows)
        cols = [rows[k] for k in FLOW_DTYPE.names]
        while True:
            start, self.n_links = flows_into_ring(
                self.slots, self.link_src, self.link_dst, self.n_links, self.ring_bytes, self.ring_packets,
                self.ring_flows, self.present, self.state, *cols, self.interval_ms, start,
            )  # fmt: skip
            if start == n:
                return
            cap = len(self.link_src)
            self._alloc(cap + max(cap // 4, 64))

    def load(self, flows: np.ndarray) -> None:
        """Add the aggregated flows of a checkpoint (sorted by interval)."""
        self.add(flows)

    def fold(self) -> None:
        pass

    def rows(self) -> np.ndarray:
        if not self.state[2]:
            return np.zeros(0, dtype=FLOW_DTYPE)
        last = int(self.state[0])
        b = np.arange(last - self.w + 1, last + 1, dtype=np.int64)
        r = b % self.w
        n = self.n_links
        order = np.lexsort((self.link_dst[:n], self.link_src[:n]))  # links by (source, destination)
        m = ring_groups(self.present, r, order)
        out = np.empty(m, dtype=FLOW_DTYPE)
        ring_to_rows(
            self.present, self.ring_bytes, self.ring_packets, self.ring_flows, r, b * self.interval_ms, order,
            self.link_src, self.link_dst, out.view(np.int64).reshape(m, 6),  # FLOW_DTYPE: six int64 fields
        )  # fmt: skip
        return out


class _FlowParts:
    """Flows summed per (source, destination, interval) with no retention (memory grows with the
    run): each fold's rows aggregated into a part, parts merged into the kept flows when they pile
    up, re-aggregating only the kept rows from the parts' earliest interval on."""

    def __init__(self, interval_ms: int):
        self.interval_ms = int(interval_ms)
        self.n_expired = 0
        self._raw: list = []  # flow rows since the last fold
        self._parts: list = []  # aggregated folds (merged when they pile up)
        self._flows = np.zeros(0, dtype=FLOW_DTYPE)

    def add(self, rows: np.ndarray) -> None:
        self._raw.append(rows)

    def load(self, flows: np.ndarray) -> None:
        self._flows = flows

    def fold(self) -> None:
        if self._raw:
            self._parts.append(_aggregate(np.concatenate(self._raw), self.interval_ms))
            self._raw = []
            if len(self._parts) >= 64:
                self._merge()

    def rows(self) -> np.ndarray:
        self.fold()
        self._merge()
        return self._flows

    def _merge(self) -> None:
        if not self._parts:
            return
        new = np.concatenate(self._parts)
        self._parts = []
        old = self._flows
        cut = int(np.searchsorted(old["ts_ms"], new["ts_ms"].min())) if len(new) else len(old)
        self._flows = np.concatenate([old[:cut], _aggregate(np.concatenate([old[cut:], new]), self.interval_ms)])


def _clean_history(day, source: str, until_ms: int, fields: tuple, code) -> list:
    """Columns ``fields`` of ``day``'s clean ``source`` rows that arrived before ``until_ms``, in
    arrival order (those whose ``metric_id`` is ``code`` only, unless ``code`` is None).

    A synthetic day's stream holds its clean rows' arrival order apart from the duplicates and
    corrupted rows: those rows are the first entries of that order, gathered column by column
    (what selecting them from ``day.raw(source)`` gives, without building the whole stream). Other
    histories (a partition's view) are selected from their ``raw``."""
    from telcoanalytics.synth.stream import ORIGIN_CLEAN

    st = getattr(day, "_streams", {}).get(source)
    if st is not None:
        clean = day[source]
        o = st.clean_order[: int(np.searchsorted(st.clean_arrival_sorted, until_ms, side="left"))]
        if code is not None:
            o = o[clean["metric_id"][o] == code]
        rows = np.take(clean, o)  # whole records in one gather (a field at a time misses the cache per field)
        return [rows[f] for f in fields]
    rows, arrival_ms, origin = day.raw(source)
    keep = (origin == ORIGIN_CLEAN) & (arrival_ms < until_ms)
    if code is not None:
        keep &= rows["metric_id"] == code
    rows = rows[keep]
    return [rows[f] for f in fields]


def _element_index(topology, ids: np.ndarray) -> np.ndarray:
    """``topology.index_of(ids)`` (dense element index, -1 unknown) through the ingest's element
    lookup (a direct or paged table, or a hash map) instead of a binary search per id: millions
    of history rows."""
    from telcoanalytics.ingest.ingestor import _ElementLookup

    eids = topology.ids[topology.element_level]
    return _ElementLookup(eids, np.arange(len(eids), dtype=np.int64))(np.asarray(ids, np.int64))


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
