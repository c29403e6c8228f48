"""The pipeline: ingest -> validate -> route by topology -> analysis components, batch by batch.

One ``Pipeline`` owns one ``Ingestor`` per source (sharing one quarantine), routes every
accepted batch by a topology level (each row to the node of its element at that level), keeps
per-partition counts, and hands the batch to its analysis components, whose states are kept per
element and rolled up the topology. The same object serves a real-time feed (call
:meth:`Pipeline.process` per micro-batch, :meth:`Pipeline.advance` as time passes) and an offline
replay (``telcoanalytics replay`` drives it over a dataset in arrival order). To run partitions
apart (Dask workers), :mod:`telcoanalytics.pipeline.distributed` splits batches with the counting-sort
partition kernel and merges the partial states.

Components
----------
Every component implements the contract of :mod:`telcoanalytics.pipeline.contract`: it takes a
:class:`~telcoanalytics.pipeline.contract.RoutedBatch` (rows with their element indices, resolved
once at ingest), settles at each watermark, follows topology changes, and returns its findings as
alerts. The pipeline hands every finding to its alert manager (if it has one) and returns them
from :meth:`Pipeline.advance`; components never talk to each other.

Counts are conserved: for every source ``n_read == n_accepted + n_quarantined`` and every
accepted row lands in exactly one partition (``unrouted`` counts rows of retired elements).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from telcoanalytics.ingest.clock import DEFAULT_FUTURE_HORIZON_MS, DEFAULT_MAX_SKEW_MS, EventClock
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.ingest.quarantine import Quarantine
from telcoanalytics.ingest.readers import RawChunk
from telcoanalytics.pipeline.checkpoint import (  # noqa: F401  (_flatten/_unflatten: older imports)
    CHECKPOINT_FORMAT,
    _flatten,
    _unflatten,
    restore_pipeline,
    write_checkpoint,
)
from telcoanalytics.pipeline.contract import RoutedBatch, check_component
from telcoanalytics.records import SOURCES, TIME_FIELD
from telcoanalytics.topology.model import Topology

_NO_DATA = int(np.iinfo(np.int64).min)  # the clock before any data


class Pipeline:
    """Stateful ingest-and-route pipeline with pluggable analysis components.

    Parameters
    ----------
    topology : Topology
        Known elements and hierarchy; unknown element ids are quarantined.
    route_level : str
        Topology level that partitions the batches (default ``"region"``).
    allowed_lateness_ms : int
        The watermark trails the robust event-time clock (``telcoanalytics.ingest.clock``) by this
        much (default 15 min); the components treat data older than the watermark as late.
    components : dict name -> component, optional
        Analysis components (the contract of :mod:`telcoanalytics.pipeline.contract`), fed in
        insertion order.
    alerts : AlertManager, optional
        Receives every component's findings (in component order) and is ticked with event time
        at each :meth:`advance`.
    time_range_ms : (int, int), optional
        Sane event-time range handed to the ingestors.
    max_skew_ms, future_horizon_ms : int
        Rows more than ``max_skew_ms`` (default 5 min) ahead of the clock wait in the
        ``time_in_future`` side output until the clock reaches them; rows more than
        ``future_horizon_ms`` (default 6 h) ahead are quarantined as ``time_in_future``. See
        :class:`telcoanalytics.ingest.clock.EventClock`; ``pipeline.clock.summary()`` counts them.
    ingest_options : dict source -> dict, optional
        Further keyword arguments of each source's ``Ingestor`` (``schema_version``,
        ``allow_extra_columns``, ...); they are part of the ingestors' checkpointed state.

    Examples
    --------
    >>> from telcoanalytics.synth.network import generate
    >>> day = generate(n_elements=60, days=0.05, seed=1)
    >>> p = Pipeline(day.topology)
    >>> for source, rows in day.raw_batches():
    ...     _ = p.process(source, rows)
    >>> p.conserved()
    True
    """

    def __init__(
        self,
        topology: Topology,
        route_level: str = "region",
        allowed_lateness_ms: int = 900_000,
        components: dict | None = None,
        time_range_ms: tuple[int, int] | None = None,
        alerts=None,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
        future_horizon_ms: int = DEFAULT_FUTURE_HORIZON_MS,
        ingest_options: dict | None = None,
    ):
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a telcoanalytics.topology.model.Topology, got {type(topology).__name__}")
        topology._check_level(route_level)
        if int(allowed_lateness_ms) != allowed_lateness_ms or allowed_lateness_ms < 0:
            raise ValueError(f"allowed_lateness_ms must be a non-negative integer, got {allowed_lateness_ms!r}")
        self.topology = topology
        self.route_level = route_level
        self.allowed_lateness_ms = int(allowed_lateness_ms)
        self.quarantine = Quarantine()
        kw = {} if time_range_ms is None else {"time_range_ms": time_range_ms}
        extra = dict(ingest_options or {})
        unknown = sorted(set(extra) - set(SOURCES))
        if unknown:
            raise ValueError(f"ingest_options for unknown sources {unknown}; known sources: {', '.join(SOURCES)}")
        self.ingestors = {
            s: Ingestor(s, topology=topology, quarantine=self.quarantine, **kw, **extra.get(s, {})) for s in SOURCES
        }
        self.components = dict(components or {})
        for name, comp in self.components.items():
            check_component(name, comp)
        self.alerts = alerts
        self.notifications = 0  # notifications the alert manager sent
        self.findings_count = 0  # findings the components returned
        self.last_advance_ms: int | None = None
        self.next_tick_ms: int | None = None  # feed()'s next minute boundary
        n_part = topology.n_nodes(route_level)
        self.routed = np.zeros((len(SOURCES), n_part), dtype=np.int64)  # accepted rows per source x partition
        self.unrouted = np.zeros(len(SOURCES), dtype=np.int64)  # accepted rows of retired elements
        self.clock = EventClock(max_skew_ms, future_horizon_ms)
        self.n_batches = 0
        self.checkpoint_driver: dict | None = None  # the driver section of the checkpoint restored from
        self.seconds = {"ingest": 0.0, "route": 0.0, **{name: 0.0 for name in self.components}}
        if alerts is not None:
            self.seconds["alerts"] = 0.0
        self.commit_memory()

    def commit_memory(self) -> int:
        """Make the state's large arrays resident now (:func:`~telcoanalytics.pipeline.memory.commit_pages`):
        state of a size fixed by design then does not make resident memory grow while it fills
        (called after construction, a restore and a topology change). Returns the bytes touched."""
        from telcoanalytics.pipeline.memory import commit_pages

        self.committed_bytes = commit_pages(self.components, self.ingestors, self.alerts)
        return self.committed_bytes

    # ---- feeding ------------------------------------------------------------------------------
    @property
    def max_event_ms(self) -> int:
        """The robust event-time clock: what most recent rows say, not the single largest time
        (int64 min before any data; see ``telcoanalytics.ingest.clock``)."""
        return self.clock.now_ms

    @max_event_ms.setter
    def max_event_ms(self, value: int) -> None:
        self.clock.now_ms = int(value)

    @property
    def watermark_ms(self) -> int:
        """The robust clock minus the allowed lateness (int64 min before any data)."""
        now = self.clock.now_ms
        if now == _NO_DATA:
            return now
        return int(now - self.allowed_lateness_ms)

    def process(self, source: str, data):
        """Ingest one batch of ``source`` (any reader input or a ``RawChunk``), route it, feed the
        components; returns the ``IngestResult``."""
        if source not in self.ingestors:
            raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
        t0 = time.perf_counter()
        ing = self.ingestors[source]
        res = ing.ingest_chunk(data) if isinstance(data, RawChunk) else ing.ingest(data)
        t1 = time.perf_counter()
        self.seconds["ingest"] += t1 - t0
        self.n_batches += 1
        if res.n_accepted == 0:
            return res
        # robust clock: rows far ahead are quarantined, rows somewhat ahead wait (time_in_future);
        # the clock's pass over the times also routes the rows (node -1: retired element, kept, not routed)
        clock = self.clock
        t = res.accepted[TIME_FIELD[source]]
        idx = res.element_index
        route = self.topology.route_map(self.route_level)
        counts = np.zeros(self.routed.shape[1] + 1, dtype=np.int64)
        node, t_max = clock.observe_route(t, idx, route, counts)
        hold = None  # every row in time (the common case: no masks to build)
        if clock.now_ms != _NO_DATA and t_max - clock.now_ms > clock.max_skew_ms:
            now, hold, reject = clock.classify(t)
            if reject.any():
                res = ing.reject_accepted(res, reject, "time_in_future", TIME_FIELD[source])
                clock.n_rejected += int(reject.sum())
                now, hold = now[~reject], hold[~reject]
                if res.n_accepted == 0:
                    return res
                idx = res.element_index
                node = node[~reject]
                counts = np.bincount(node + 1, minlength=self.routed.shape[1] + 1)
            if not hold.any():
                hold = None
        si = SOURCES.index(source)
        self.routed[si] += counts[1:]
        self.unrouted[si] += counts[0]
        t2 = time.perf_counter()
        self.seconds["route"] += t2 - t1
        rows = res.accepted
        if hold is not None:
            clock.hold(source, rows[hold], idx[hold], res.accepted[TIME_FIELD[source]][hold])
            rows, idx, node = rows[now], idx[now], node[now]
        self._update(source, rows, idx, node)
        for src, r, ix in clock.due():  # rows that waited ahead of the clock: their time has come
            self._update(src, r, ix, route[ix])
        return res

    def _update(self, source: str, rows, idx, node) -> None:
        """One routed batch to every component; their findings to the alert manager."""
        batch = RoutedBatch(source, rows, idx, node)
        found = []
        for name, comp in self.components.items():
            tc = time.perf_counter()
            found += comp.update(batch)
            self.seconds[name] += time.perf_counter() - tc
        if found:
            self._deliver(found, self.watermark_ms)

    def feed(self, batches, tick_ms: int = 60_000) -> int:
        """Process ``(source, data)`` batches in order, advancing the components each time the
        watermark crosses a multiple of ``tick_ms`` (a minute by default); returns the rows read.

        The tick schedule is the pipeline's state (it is checkpointed), so feeding the same
        batches in several calls, or after a restore, ticks exactly as one call would. The end of
        the input is not an advance: call ``advance(max_event_ms + 1)`` and :meth:`finish` when
        the stream is over.
        """
        n = 0
        for source, data in batches:
            n += self.process(source, data).n_read
            wm = self.watermark_ms
            if wm == _NO_DATA:
                continue
            if self.next_tick_ms is None:
                self.next_tick_ms = wm - wm % tick_ms + tick_ms
            elif wm >= self.next_tick_ms:
                self.advance(wm)
                self.next_tick_ms = wm - wm % tick_ms + tick_ms
        return n

    def advance(self, watermark_ms: int | None = None) -> list:
        """Tell the components event time reached ``watermark_ms`` (default: the pipeline's).

        Returns
        -------
        list of Alert
            What the components found, in component order; they went to the alert manager, which
            was then ticked (its notifications went to its sinks).
        """
        wm = self.watermark_ms if watermark_ms is None else int(watermark_ms)
        found = []
        for name, comp in self.components.items():
            tc = time.perf_counter()
            found += comp.advance(wm)
            self.seconds[name] += time.perf_counter() - tc
        self.last_advance_ms = wm
        self._deliver(found, wm, tick=True)
        return found

    def _deliver(self, found: list, now_ms: int, tick: bool = False) -> None:
        """Findings to the alert manager (then, at an advance, a tick of it)."""
        self.findings_count += len(found)
        if self.alerts is None:
            return
        tc = time.perf_counter()
        if found:
            self.alerts.ingest(found, now_ms=now_ms)
        if tick:
            self.notifications += len(self.alerts.tick(now_ms=now_ms))
        self.seconds["alerts"] += time.perf_counter() - tc

    def finish(self) -> list:
        """End of input: components settle, the alert manager is drained at the last watermark."""
        wm = self.last_advance_ms if self.last_advance_ms is not None else self.watermark_ms
        found = []
        for name, comp in self.components.items():
            tc = time.perf_counter()
            found += comp.finish(wm)  # e.g. a coalescing component folds what it still buffers
            self.seconds[name] += time.perf_counter() - tc
        self._deliver(found, wm)
        if self.alerts is not None and self.last_advance_ms is not None:
            self.alerts.close(self.last_advance_ms, drain=True)
        return found

    def alert_report_lines(self) -> list[str]:
        """The alert manager's section of the report (empty without an alert manager)."""
        if self.alerts is None:
            return []
        names = ", ".join(Path(s.path).name if hasattr(s, "path") else type(s).__name__ for s in self.alerts.sinks)
        book = getattr(self.alerts, "incidents", None)
        if book is not None and book.path is not None:
            names += f", {book.path.name}"
        grouped = "grouped into incidents" if book is not None else "grouped by site"
        lines = [f"== alerts (deduplicated, {grouped}, inhibited along the topology; written to {names or 'no sink'})"]
        return lines + ["  " + x for x in self.alerts.summary_lines(self.last_advance_ms)]

    # ---- topology changes while data flows -----------------------------------------------------
    def change_topology(self, target: Topology, changes: list | None = None) -> list:
        """Switch to a new topology version without losing state.

        Parameters
        ----------
        target : Topology
            Either a freshly loaded topology (its own numbering; it is reconciled with the running
            one by :meth:`Topology.reconcile`, so existing elements keep their dense indices), or
            the result of changes made on the running topology (``add_elements``,
            ``rehome_elements``, ...), in which case pass those ``changes`` too.
        changes : list of TopologyChange, optional
            The changes that lead from the running topology to ``target``.

        Returns
        -------
        list of TopologyChange
            The changes applied. Routing counts are remapped; components remap their own state in
            their ``topology_changed(topology, changes)`` method. Batches processed after the call
            are validated and routed by the new structure.

        Raises
        ------
        ValueError
            If the changes do not start at the running version.
        """
        if not isinstance(target, Topology):
            raise TypeError(f"target must be a Topology, got {type(target).__name__}")
        if changes is None:
            target, changes = self.topology.reconcile(target)
        elif changes and changes[0].from_version != self.topology.version:
            raise ValueError(
                f"changes start at topology version {changes[0].from_version}, "
                f"the pipeline runs version {self.topology.version}"
            )
        routed = self.routed.T
        for ch in changes:
            routed = ch.remap(routed, level=self.route_level, fill=0)
        self.routed = np.ascontiguousarray(routed.T)
        self.topology = target
        for ing in self.ingestors.values():
            ing.topology = target
        found = []
        for comp in self.components.values():
            found += comp.topology_changed(target, changes)
        if self.alerts is not None:
            self.alerts.set_topology(target)
        now = self.last_advance_ms if self.last_advance_ms is not None else self.watermark_ms
        self._deliver(found, now)
        self.commit_memory()
        return changes

    # ---- accounting ---------------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Read / accepted / quarantined rows per source."""
        return {
            s: {"read": ing.n_read, "accepted": ing.n_accepted, "quarantined": ing.n_quarantined}
            for s, ing in self.ingestors.items()
        }

    def conserved(self) -> bool:
        """True when every row read is accepted or quarantined, and every accepted row routed."""
        for si, (_s, ing) in enumerate(self.ingestors.items()):
            if ing.n_accepted + ing.n_quarantined != ing.n_read:
                return False
            if self.routed[si].sum() + self.unrouted[si] != ing.n_accepted:
                return False
        return True

    def region_table(self) -> np.ndarray:
        """Accepted rows per partition (route level node) and source, as a structured array."""
        ids = self.topology.ids[self.route_level]
        dt = [(self.route_level + "_id", "i8")] + [(s, "i8") for s in SOURCES] + [("total", "i8")]
        out = np.zeros(len(ids), dtype=dt)
        out[self.route_level + "_id"] = ids
        for si, s in enumerate(SOURCES):
            out[s] = self.routed[si]
        out["total"] = self.routed.sum(axis=0)
        return out

    # ---- checkpoint ---------------------------------------------------------------------------
    def checkpoint(self, path, driver: dict | None = None) -> Path:
        """Write the whole state (ingestors, quarantine, routing counts, components, alert manager,
        tick schedule) to ``path``, atomically and durably (:mod:`telcoanalytics.pipeline.checkpoint`).

        ``driver`` is an optional JSON-able dict stored with it (a run's source positions and output
        lengths); :meth:`restore` puts it on ``checkpoint_driver``.
        """
        return write_checkpoint(self, path, driver)

    @classmethod
    def restore(cls, path, alert_sinks=()) -> Pipeline:
        """Rebuild a pipeline from :meth:`checkpoint`: components are rebuilt from their stored
        class and state (``from_state``), the alert manager (if the run had one) with
        ``alert_sinks`` (sinks are not state).

        Raises
        ------
        CheckpointError
            A missing, damaged, foreign or newer-format checkpoint (one line naming the file, the
            problem and what to do). Older formats load.
        """
        return restore_pipeline(cls, path, alert_sinks)
