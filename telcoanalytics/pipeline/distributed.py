"""Run mergeable analyses partitioned by a topology level, in-process or on a Dask cluster.

The design rests on one property of every state in telcoanalytics: partial states of disjoint
partitions merge into the state of one pass over all data. So a batch is split by a topology
level (region, say) with the counting-sort partition kernel, each partition is processed on its
own (a Dask worker each, or one after another in this process), and the partial states are folded
with their ``merge``. The same functions run with ``client=None`` (no cluster, no Dask import) and
with a ``dask.distributed.Client``; the tests check both give identical results.

Dask is an optional extra: ``pip install telcoanalytics[distributed]``.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.topology.model import Topology


def split_by_level(topology: Topology, element_index, columns: dict, level: str = "region") -> list[dict]:
    """Split the rows of a batch into one dict of columns per node of ``level``.

    Parameters
    ----------
    topology : Topology
    element_index : int array (n,)
        Dense element index of each row (``topology.index_of``).
    columns : dict name -> array (n,)
        Columns to split (each is gathered in partition order).
    level : str
        Partition level.

    Returns
    -------
    list of dict
        One entry per non-empty node: its rows in stable input order, plus ``"_node"`` (the
        node's dense index).

    Raises
    ------
    ValueError
        If any row is unrouted (unknown or retired element): validate with an ``Ingestor`` first,
        which quarantines unknown elements, so nothing is silently left out here.
    """
    idx = np.ascontiguousarray(element_index, dtype=np.int64)
    for name, col in columns.items():
        if len(col) != len(idx):
            raise ValueError(f"column {name!r} has {len(col)} rows, element_index has {len(idx)}")
    order, offsets = topology.partition(idx, level)
    n_unrouted = int(offsets[-1] - offsets[-2])
    if n_unrouted:
        first = int(order[offsets[-2]])
        raise ValueError(
            f"{n_unrouted} rows belong to unknown or retired elements (first at row {first}, "
            f"element index {idx[first]}); validate the batch with an Ingestor first"
        )
    gathered = {name: np.asarray(col)[order] for name, col in columns.items()}
    parts = []
    for k in range(topology.n_nodes(level)):
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        if hi > lo:
            part = {name: col[lo:hi] for name, col in gathered.items()}
            part["_node"] = k
            parts.append(part)
    return parts


def map_merge(parts: list, fn: Callable, merge: Callable, client=None):
    """Apply ``fn(part)`` to every partition and fold the results with ``merge(a, b) -> a``.

    Parameters
    ----------
    parts : list
        Partitions (e.g. from :func:`split_by_level`).
    fn : callable
        A module-level function (picklable, for Dask) returning a mergeable partial state.
    merge : callable
        Associative merge of two partial states; may update and return its first argument.
    client : dask.distributed.Client, optional
        Run the partitions on the cluster (results gathered here and merged in partition order);
        default: one after another in this process.

    Returns
    -------
    The merged state, or None when there are no partitions.
    """
    if client is None:
        results = [fn(p) for p in parts]
    else:
        futures = client.map(fn, parts, pure=False)
        results = client.gather(futures)
    out = None
    for r in results:
        out = r if out is None else merge(out, r)
    return out


# ---- ready-made partitioned analyses --------------------------------------------------------------
def _windows_partial(part: dict):
    from telcoanalytics.windows.sliding import SlidingWindows

    w = SlidingWindows(part["_n_slots"], part["_resolutions"], part["_lateness"], part["_half_lives"])
    w.update(part["ts_ms"], part["slot"], part["value"])
    return w


def _merge_windows(a, b):
    return a.merge(b)


def windows_by_partition(
    topology: Topology,
    element_index,
    ts_ms,
    slot,
    value,
    n_slots: int,
    resolutions,
    allowed_lateness_ms: int = 0,
    half_lives_s=(),
    level: str = "region",
    client=None,
):
    """Sliding windows built per partition of ``level`` and merged: equal to one pass over all rows.

    Parameters
    ----------
    topology, element_index, level, client
        As in :func:`split_by_level` and :func:`map_merge`.
    ts_ms, slot, value : arrays (n,)
        The events (slots are global, e.g. ``element_index * n_metrics + metric``).
    n_slots, resolutions, allowed_lateness_ms, half_lives_s
        As in :class:`telcoanalytics.windows.sliding.SlidingWindows`.

    Returns
    -------
    SlidingWindows

    Notes
    -----
    Each partition applies the allowed lateness against its own newest event; when the input is
    in order within the lateness (every event newer than ``max seen - allowed_lateness_ms``
    globally), the merged state equals one pass exactly (counts, min, max) and to rounding (sums).
    """
    parts = split_by_level(topology, element_index, {"ts_ms": ts_ms, "slot": slot, "value": value}, level)
    for p in parts:
        p.update(
            _n_slots=int(n_slots),
            _resolutions=tuple(map(tuple, resolutions)),
            _lateness=int(allowed_lateness_ms),
            _half_lives=tuple(half_lives_s),
        )
    out = map_merge(parts, _windows_partial, _merge_windows, client)
    if out is None:
        from telcoanalytics.windows.sliding import SlidingWindows

        out = SlidingWindows(n_slots, resolutions, allowed_lateness_ms, half_lives_s)
    return out


# ---- the pipeline itself, partitioned ---------------------------------------------------------------
class HistoryView:
    """What a component's ``learn(day, until_ms)`` reads of a synthetic day (``start_ms``,
    ``sources``, ``raw(source)``), restricted to the rows of some elements and to the clean rows
    that arrived before ``until_ms``: the history a partition learns from, small enough to ship to
    its worker.

    Parameters
    ----------
    day : SyntheticDay
    until_ms : int
    keep_element : callable, optional
        ``keep_element(source, element_ids) -> bool mask`` of the rows to keep (default all).
    """

    def __init__(self, day, until_ms: int, keep_element=None):
        from telcoanalytics.records import ELEMENT_FIELD
        from telcoanalytics.synth.stream import ORIGIN_CLEAN

        self.start_ms = int(day.start_ms)
        self.sources = tuple(getattr(day, "sources", ()))
        self._raw = {}
        for source in self.sources:
            rows, arrival_ms, origin = day.raw(source)
            keep = (origin == ORIGIN_CLEAN) & (arrival_ms < until_ms)
            if keep_element is not None:
                keep &= keep_element(source, rows[ELEMENT_FIELD[source]])
            self._raw[source] = (rows[keep], arrival_ms[keep], origin[keep])

    @classmethod
    def _of(cls, start_ms: int, sources: tuple, raw: dict) -> HistoryView:
        v = cls.__new__(cls)
        v.start_ms, v.sources, v._raw = start_ms, sources, raw
        return v

    def raw(self, source: str):
        """``(rows, arrival_ms, origin)`` of ``source`` (empty for a source the day does not have)."""
        return self._raw[source]

    def split(self, topology: Topology, level: str, n_partitions: int) -> list[HistoryView]:
        """One view per partition (route-level node ``% n_partitions``, as :class:`PartitionedComponents`
        splits the stream; rows of unknown elements go nowhere)."""
        from telcoanalytics.records import ELEMENT_FIELD

        route = topology.route_map(level)
        parts = [{} for _ in range(n_partitions)]
        for source, (rows, arr, org) in self._raw.items():
            idx = topology.index_of(rows[ELEMENT_FIELD[source]])
            part = np.where(idx >= 0, route[np.maximum(idx, 0)], -2)
            part = np.where(part == -1, 0, np.where(part >= 0, part % n_partitions, -1))
            for k in range(n_partitions):
                m = part == k
                parts[k][source] = (rows[m], arr[m], org[m])
        return [HistoryView._of(self.start_ms, self.sources, r) for r in parts]


class _Capture:
    """Stands in for an :class:`~telcoanalytics.pipeline.run.OutputLog` on a worker: keeps the
    finding lines a component writes until the driver takes them (:meth:`take`)."""

    seq = 0

    def __init__(self):
        self.lines: list[str] = []

    def write_lines(self, lines) -> None:
        # an item may hold several newline-joined lines (the anomaly log writes one text per part)
        for x in lines:
            self.lines.extend(x.split("\n") if "\n" in x else (x,))

    def take(self) -> list[str]:
        out, self.lines = self.lines, []
        return out

    def read_lines(self) -> list[str]:
        return list(self.lines)

    def state(self) -> dict:
        return {"bytes": sum(len(x) + 1 for x in self.lines)}


def _anomaly_update_keys(comp, found, seq: int, pos, batch) -> list[tuple]:
    """Merge keys of the anomaly rows one update found: ``(0, seq, t_ms, kind, position)``, where
    ``position`` is the row of the driver's whole batch whose event raised it and ``kind`` orders
    a QoS row's latency event before its loss event, as the in-process component scores them (a
    stable sort of the batch by time, latencies then losses)."""
    n = len(found)
    if pos is None or not len(batch.rows):
        return [(0, seq, 0, 0, -1)] * n
    nm = comp.net.n_metrics
    slot = found["slot"].astype(np.int64)
    t = found["t_ms"].astype(np.int64)
    fe, fm = slot // nm, slot % nm
    ts = batch.rows["ts_ms"].astype(np.int64)
    t0 = int(ts.min())
    ev = (batch.element_index.astype(np.int64) << 32) | (ts - t0)
    order = np.argsort(ev, kind="stable")
    q = (fe << 32) | np.clip(t - t0, 0, (1 << 32) - 1)
    at = np.minimum(np.searchsorted(ev[order], q), len(ev) - 1)
    hit = (ev[order][at] == q) & (t >= t0)
    gpos = np.where(hit, np.asarray(pos, dtype=np.int64)[order[at]], -1)
    kind = (fm == comp.n_eq + 1).astype(np.int64) if batch.source == "qos" else np.zeros(n, np.int64)
    return list(zip([0] * n, [seq] * n, t.tolist(), kind.tolist(), gpos.tolist()))


def _sla_key(comp, ev: dict, prev_tick, topology) -> tuple:
    """Merge key of an SLA event (a JSON dict): re-evaluated ticks (at or before ``prev_tick``, the
    last tick before the advance) first, rule by rule, then new ticks tick by tick, rule by rule;
    within a rule by node."""
    names = getattr(comp, "_rule_order", None)
    if names is None:
        names = comp._rule_order = {r.name: i for i, r in enumerate(comp.mon.rules)}
    r = names.get(ev.get("rule"), len(names))
    lvl = ev.get("scope_level")
    try:
        node = int(topology.index_of(np.array([ev["scope_id"]]), None if lvl == topology.element_level else lvl)[0])
    except (KeyError, ValueError, TypeError):
        node = -1
    tick = int(ev.get("t_ms", 0)) // 60_000
    if prev_tick is None:
        return (2, r, node, tick)
    if tick <= prev_tick:
        return (0, r, node, tick)
    return (1, tick, r, node)


def merge_keyed_lines(per_partition: list[list]) -> list[str]:
    """The lines of several partitions (each a list of ``(key, line)`` in the order the partition
    wrote them) interleaved by key, each partition's own order kept (ties: lower partition first)."""
    its = [[(k, j, i, x) for i, (k, x) in enumerate(lst)] for j, lst in enumerate(per_partition) if lst]
    if len(its) == 1:
        return [x for _k, _j, _i, x in its[0]]
    return [x for _k, _j, _i, x in heapq.merge(*its, key=lambda e: e[:2])]


class PartitionWorker:
    """The analysis components of one partition (a set of route-level nodes). Built from plain
    values so it pickles cheaply; a :class:`PartitionGroup` holds the partitions of one process."""

    def __init__(self, topology_state: dict, enabled, allowed_lateness_ms: int, options: dict, state=None):
        from telcoanalytics.pipeline.components import build_components
        from telcoanalytics.pipeline.contract import load_class

        topo = Topology.from_state(topology_state)
        if isinstance(state, str):  # a partition checkpoint file, read where the partition runs
            state = _read_partition_checkpoint(state)
        if state is None:
            self.components = build_components(topo, enabled, allowed_lateness_ms=allowed_lateness_ms, options=options)
        else:
            self.components = {name: load_class(cls).from_state(st, topo) for name, (cls, st) in state.items()}
        self.topology = topo
        self.cpu_s = dict.fromkeys(self.components, 0.0)  # CPU of each component's update / advance calls
        self._captures: dict = {}  # component -> (log name, _Capture) of the streamed components
        self._tags: dict = {}  # anomaly-like component -> merge keys of its pending update rows
        self._lines: dict = {}  # log name -> [(key, line)] not handed back yet

    def apply(self, batches, watermark_ms=None, finish: bool = False) -> dict:
        """Feed ``batches`` (RoutedBatch, or ``(seq, positions, RoutedBatch)`` as
        :class:`PartitionedComponents` ships them), then advance (and finish) at ``watermark_ms``;
        returns ``{component: findings}`` (update findings first), and under ``"__lines__"`` the
        finding lines the streamed components wrote (see :meth:`capture_logs`) with their merge keys."""
        out = {name: [] for name in self.components}
        cpu = self.cpu_s
        clock = time.process_time
        for b in batches:
            seq, pos, b = b if len(b) == 3 else (-1, None, b)
            for name, comp in self.components.items():
                tags = self._tags.get(name)
                n0 = len(comp._pending) if tags is not None else 0
                c0 = clock()
                out[name] += comp.update(b)
                cpu[name] += clock() - c0
                if tags is not None and len(comp._pending) > n0:
                    tags.append(_anomaly_update_keys(comp, comp._pending[-1], seq, pos, b))
        if watermark_ms is not None:
            for name, comp in self.components.items():
                before = self._before_advance(name, comp)
                c0 = clock()
                out[name] += comp.finish(watermark_ms) if finish else comp.advance(watermark_ms)
                cpu[name] += clock() - c0
                self._keyed(name, comp, before)
        lines = self._take_lines()
        if lines:
            out["__lines__"] = lines
        return out

    # ---- findings streamed back to the driver ---------------------------------------------------------
    def log_names(self) -> dict:
        """``{component: LOG_NAME}`` of the components that can stream their findings."""
        return {
            name: comp.LOG_NAME
            for name, comp in self.components.items()
            if getattr(comp, "LOG_NAME", None) is not None and hasattr(comp, "attach_log")
        }

    def capture_logs(self) -> dict:
        """The streamed components write their findings to a buffer that each call hands back to
        the driver (under ``"__lines__"``), which merges the partitions' lines into one file in the
        in-process run's order; returns the lines of findings held so far (keyed first)."""
        for name, log_name in self.log_names().items():
            comp = self.components[name]
            self._captures[name] = (log_name, _Capture())
            from telcoanalytics.pipeline.components import AnomalyComponent

            if isinstance(comp, AnomalyComponent):
                self._tags[name] = []
            comp.attach_log(self._captures[name][1])
            cap = self._captures[name][1]
            self._lines.setdefault(log_name, []).extend(((-1,), x) for x in cap.take())
        return self._take_lines()

    def _before_advance(self, name: str, comp):
        if name not in self._captures:
            return None
        if name in self._tags:  # the update rows' keys, then the silence rows'
            pend = self._tags[name]
            n_untagged = sum(len(p) for p in comp._pending) - sum(len(k) for k in pend)
            keys = [(-1,)] * max(n_untagged, 0)
            for k in pend:
                keys += k
            return keys
        return getattr(getattr(comp, "mon", None), "last_tick", None)

    def _keyed(self, name: str, comp, before) -> None:
        """The lines ``comp`` wrote in this call, each with its merge key: the position its finding
        has in the in-process run (see :func:`merge_keyed_lines`)."""
        if name not in self._captures:
            return
        log_name, cap = self._captures[name]
        if name in self._tags and not comp._pending:  # the pending update rows were settled
            self._tags[name] = []
        lines = cap.take()
        if not lines:
            return
        if name in self._tags:
            keys = before[: len(lines)]
            for x in lines[len(keys) :]:  # silence rows, after the updates' rows: opened, then closed, by element
                r = json.loads(x)
                e = int(self.topology.index_of(np.array([r["element_id"]]))[0])
                keys.append((2, int(r["end_ms"] >= 0), e))
        elif before is not None and hasattr(comp, "mon"):
            keys = [_sla_key(comp, json.loads(x), before, self.topology) for x in lines]
        else:
            keys = [(0,)] * len(lines)
        self._lines.setdefault(log_name, []).extend(zip(keys, lines))

    def _take_lines(self) -> dict:
        for name, (log_name, cap) in self._captures.items():  # written outside an advance (topology change)
            rest = cap.take()
            if rest:
                comp = self.components[name]
                keys = [
                    _sla_key(comp, json.loads(x), None, self.topology) if hasattr(comp, "mon") else (3,) for x in rest
                ]
                self._lines.setdefault(log_name, []).extend(zip(keys, rest))
        out, self._lines = self._lines, {}
        return out

    def learn(self, history: HistoryView, until_ms: int) -> list[str]:
        """Components with a ``learn`` method learn from the partition's history; returns their names."""
        done = []
        for name, comp in self.components.items():
            fn = getattr(comp, "learn", None)
            if fn is not None:
                fn(history, until_ms)
                done.append(name)
        return done

    def topology_changed(self, batches: list, topology_state: dict, changes: list) -> dict:
        out = self.apply(batches)
        topo = Topology.from_state(topology_state)
        for name, comp in self.components.items():
            out[name] += comp.topology_changed(topo, changes)
        self.topology = topo
        lines = self._take_lines()
        for log_name, x in lines.items():
            out.setdefault("__lines__", {}).setdefault(log_name, []).extend(x)
        return out

    def to_state(self, batches: list = ()) -> tuple[dict, dict]:
        """Pending batches applied first (their findings returned), then every component's class and state."""
        from telcoanalytics.pipeline.contract import class_path

        found = self.apply(list(batches))
        return found, {name: (class_path(c), c.to_state()) for name, c in self.components.items()}

    def to_state_light(self, batches: list = ()) -> tuple[dict, dict]:
        """Pending batches applied first (their findings returned), then :meth:`report_state`."""
        return self.apply(list(batches)), self.report_state()

    def write_checkpoint(self, path: str, batches: list = ()) -> tuple[dict, str]:
        """Apply pending batches, then write this partition's own checkpoint (atomic; large entries
        compacted losslessly as in the pipeline's checkpoint) where it runs."""
        import json

        from telcoanalytics.pipeline.checkpoint import _flatten, _write_entries

        found, state = self.to_state(batches)
        flat: dict = {}
        classes = {}
        for name, (cls, st) in state.items():
            classes[name] = cls
            _flatten(f"comp.{name}", st, flat)
        del state
        _write_entries(path, flat, json.dumps({"classes": classes}))
        return found, path

    def report_lines(self) -> list[str]:
        return [x for comp in self.components.values() for x in comp.report_lines()]

    def component_names(self) -> list[str]:
        return list(self.components)

    def report_state(self) -> dict:
        """``{component: (class path, state)}`` of what the merged report reads: the full state of
        the windows, cubes and analysis; of the SLA monitor and the anomaly detector only their
        report's figures (rule count, counter memory; slots, late events, paging counts) and held
        findings, not their per-slot state (about half the partition's state)."""
        from telcoanalytics.pipeline.components import AnomalyComponent, SlaComponent
        from telcoanalytics.pipeline.contract import class_path

        out = {}
        for name, comp in self.components.items():
            if type(comp) is SlaComponent:
                light = {"n_rules": len(comp.mon.rules), "memory_bytes": int(comp.mon.store.memory_bytes())}
                st = {"light": light, "events": [e.to_dict() for e in comp._events]}
            elif type(comp) is AnomalyComponent:
                det = comp.net.detector
                light = {"n_slots": int(det.n_obs.size), "n_backwards": int(getattr(det, "n_backwards", 0))}
                rows = np.concatenate(comp._rows) if comp._rows else None
                st = {"light": light, "rows": rows, "policy": comp.policy.to_state()}
            else:
                st = comp.to_state()
            out[name] = (class_path(comp), st)
        return out


class PartitionGroup:
    """The partitions one process runs, each its own :class:`PartitionWorker`: a Dask actor on a
    worker process (one per worker, so each round trip serves all of that worker's partitions),
    or, without a cluster, all partitions in this process.

    Parameters
    ----------
    topology_state, enabled, allowed_lateness_ms, options
        As :class:`PartitionWorker`.
    states : dict partition -> state or None
        The partitions of this group (None: fresh components).
    """

    def __init__(self, topology_state: dict, enabled, allowed_lateness_ms: int, options: dict, states: dict):
        c0 = time.process_time()
        self.cpu_start_s = c0  # the process' CPU before this group: interpreter, Dask, the worker's start
        self.parts = {
            int(k): PartitionWorker(topology_state, enabled, allowed_lateness_ms, options, st)
            for k, st in states.items()
        }
        self.cpu_build_s = time.process_time() - c0  # imports of the components, states restored
        self.cpu_calls_s = 0.0  # CPU in run / call (the components' work, JIT cache loads on first calls)
        self.n_calls = 0

    def cpu(self) -> dict:
        """Where this worker process' CPU went (seconds of ``time.process_time``, all its threads):
        before the group was built, building it, in its calls, and the rest (Dask's own work:
        messages, (de)serialisation, the event loop), with its page faults and resident memory."""
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        total = time.process_time()
        return {
            "process_s": total,
            "before_s": self.cpu_start_s,
            "build_s": self.cpu_build_s,
            "calls_s": self.cpu_calls_s,
            "other_s": total - self.cpu_start_s - self.cpu_build_s - self.cpu_calls_s,
            "n_calls": self.n_calls,
            "components_s": {
                name: sum(w.cpu_s.get(name, 0.0) for w in self.parts.values())
                for name in next(iter(self.parts.values())).cpu_s
            },
            "minflt": ru.ru_minflt,
            "majflt": ru.ru_majflt,
            "max_rss_mib": ru.ru_maxrss / 1024,
        }

    def run(self, steps: list) -> list[dict]:
        """Run ``steps`` in order, each ``(watermark_ms, finish, {partition: [RoutedBatch, ...]})``:
        every partition of the group feeds its batches, then advances (or finishes) at the
        watermark, exactly as one advance of the pipeline. Returns per step
        ``{partition: {component: findings}}`` (components without findings left out)."""
        c0 = time.process_time()
        out = []
        for wm, finish, batches in steps:
            found = {}
            for k, w in self.parts.items():
                r = w.apply(batches.get(k, ()), wm, finish)
                found[k] = {name: f for name, f in r.items() if f}
            out.append(found)
        self.cpu_calls_s += time.process_time() - c0
        self.n_calls += 1
        return out

    def call(self, method: str, args: dict) -> dict:
        """``{partition: getattr(worker, method)(*args[partition])}`` for the partitions in ``args``."""
        c0 = time.process_time()
        out = {k: getattr(self.parts[k], method)(*a) for k, a in args.items()}
        self.cpu_calls_s += time.process_time() - c0
        self.n_calls += 1
        return out


def balance(sizes, n_groups: int) -> list[list[int]]:
    """Assign partitions of the given sizes to ``n_groups`` groups, largest first to the least
    loaded group (ties to the lower index); each group's partitions in increasing order.

    Examples
    --------
    >>> balance([5, 1, 4, 3], 2)
    [[0, 1], [2, 3]]
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups!r}")
    load = [0] * n_groups
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    for k in sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i)):
        g = min(range(n_groups), key=lambda j: (load[j], j))
        groups[g].append(k)
        load[g] += int(sizes[k])
    return [sorted(g) for g in groups if g]


def _read_partition_checkpoint(path: str) -> dict:
    import json

    from telcoanalytics.pipeline.checkpoint import CheckpointError, _unflatten, decode_entries

    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
        meta = json.loads(bytes(flat.pop("__meta__")).decode())
        classes = meta["classes"]
        decode_entries(flat, meta.get("encoded") or {})
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"partition checkpoint {path} is missing or damaged ({type(exc).__name__}: {exc}); resume from an "
            "older checkpoint or start afresh"
        ) from None
    return {name: (cls, _unflatten(f"comp.{name}", flat)) for name, cls in classes.items()}


_PART_FILE = "partition-{k}-{token}.npz"  # a generation's partition files (PartitionedComponents.parts_dir)


class PartitionedComponents:
    """One pipeline component that runs the real components partitioned by the pipeline's route
    level: each partition (route-level nodes ``node % n_partitions``) has its own component
    states, on a Dask worker process or, without a client, in this process.

    Use it as the only component of a :class:`~telcoanalytics.pipeline.Pipeline` (best a
    :class:`PartitionedPipeline`, see :func:`partitioned_pipeline`): ingest, validation,
    quarantine, routing, the tick schedule and the alert manager stay in the driving process;
    each partition's rows are buffered and shipped with the advance they precede. On a cluster
    the partitions are spread over the workers (balanced by their elements), one actor
    (:class:`PartitionGroup`) per worker, so one round trip serves all partitions of a worker.
    Findings come back per component and are merged in component order, partition by partition,
    so a run is identical whatever the number of workers, and identical with and without Dask
    (bitwise).

    The work can be shipped as *steps* (:meth:`defer`: the rows so far and an advance at a
    watermark), several per round trip (:meth:`submit`), while the caller goes on ingesting;
    :meth:`settle` waits for them and :meth:`collect` hands each step's findings back in order.
    The component contract's methods (``advance``, ``finish``, ...) run any deferred steps first,
    then their own, and return at once.

    Parameters
    ----------
    topology : Topology
    route_level : str
        Must be the pipeline's ``route_level`` (rows are split by ``RoutedBatch.partition``).
    n_partitions : int
        Partitions (default: one per route-level node).
    enabled, allowed_lateness_ms, options
        As :func:`telcoanalytics.pipeline.components.build_components`.
    client : dask.distributed.Client, optional
        Run the partitions on the cluster's workers; None: in this process.
    checkpoint_dir : path, optional
        Each partition writes its own checkpoint file there (on its worker, in parallel) when the
        pipeline checkpoints (``partition-<k>.npz``, replaced each time); the pipeline's checkpoint
        then holds only their names. None: the partitions' states are gathered into the
        pipeline's checkpoint (a :class:`PartitionedPipeline` on a cluster has its partitions write
        a new generation of files next to each checkpoint instead, see :attr:`parts_dir`).

    Notes
    -----
    Rows of retired elements (``partition == -1``) go to partition 0. A component sees only its
    partition's rows, so state that spans partitions (a rule scoped above the route level, the
    windows' own lateness clock) is per partition: choose a route level at or above the scopes
    of the SLA rules (``region`` for the default rules).
    """

    def __init__(
        self,
        topology: Topology,
        route_level: str = "region",
        n_partitions: int | None = None,
        enabled=None,
        allowed_lateness_ms: int = 900_000,
        options: dict | None = None,
        client=None,
        checkpoint_dir=None,
        _states=None,
    ):
        n_nodes = topology.n_nodes(route_level)
        self.n_partitions = int(n_partitions or n_nodes)
        if not 1 <= self.n_partitions <= n_nodes:
            raise ValueError(f"n_partitions must be in 1..{n_nodes} (nodes of {route_level!r}), got {n_partitions!r}")
        self.topology = topology
        self.route_level = route_level
        self.client = client
        self.checkpoint_dir = checkpoint_dir
        self.parts_dir = None
        """A folder where :meth:`to_state` writes a new generation of partition files
        (``partition-<k>-<token>.npz``) at each checkpoint, never overwriting the files the last
        checkpoint refers to (set by :class:`PartitionedPipeline` for each checkpoint, and by a
        restore from such files)."""
        self._generations: dict[str, list[str]] = {}  # parts_dir -> the files of its last generation
        self.config = {
            "enabled": None if enabled is None else list(enabled),
            "allowed_lateness_ms": int(allowed_lateness_ms),
            "options": dict(options or {}),
        }
        ts = topology.to_state()
        states = _states or [None] * self.n_partitions
        common = (ts, self.config["enabled"], self.config["allowed_lateness_ms"], self.config["options"])
        if client is None:
            self.assignment = [list(range(self.n_partitions))]
            self.groups = [PartitionGroup(*common, dict(enumerate(states)))]
        else:
            workers = sorted(client.scheduler_info()["workers"])
            self.assignment = balance(self.partition_sizes(), min(len(workers), self.n_partitions))
            futures = [
                client.submit(
                    PartitionGroup,
                    *common,
                    {k: states[k] for k in ks},
                    actor=True,
                    pure=False,
                    workers=[w],
                    allow_other_workers=False,
                )
                for w, ks in zip(workers, self.assignment)
            ]
            self.groups = [f.result() for f in futures]
        self.pending: list[list] = [[] for _ in range(self.n_partitions)]
        if _states is not None and isinstance(_states[0], str):  # files read by the partitions: ask them
            self.names = None
        elif _states is not None:
            self.names = list(_states[0])
        else:
            from telcoanalytics.pipeline.components import COMPONENTS

            self.names = [n for n in COMPONENTS if enabled is None or n in enabled]
        self._carry: list = []  # findings of pending rows applied outside an advance (none for the built-ins)
        self._steps: list = []  # deferred steps not shipped yet: (watermark_ms, finish, {partition: batches})
        self._inflight = None  # (calls per group, watermarks of their steps)
        self._ready: list = []  # (watermark_ms, findings) of settled steps, not collected yet
        self.logs: dict = {}  # log name -> OutputLog the partitions' findings stream to (attach_logs)
        self._seq = 0  # batches received (their order within a step, for the merge of finding lines)
        if self.names is None:
            self.names = list(self._call("component_names", [()] * self.n_partitions)[0])

    def partition_sizes(self) -> np.ndarray:
        """Elements of each partition (retired ones in partition 0)."""
        route = self.topology.route_map(self.route_level)
        part = np.where(route < 0, 0, route % self.n_partitions)
        return np.bincount(part, minlength=self.n_partitions)

    # ---- calls on every partition, in parallel ------------------------------------------------------
    def _call(self, method: str, per_partition_args) -> list:
        """``method`` on every partition (deferred steps run first); results in partition order."""
        self.flush()
        calls = [
            g.call(method, {k: tuple(per_partition_args[k]) for k in ks}) for g, ks in zip(self.groups, self.assignment)
        ]
        out = [None] * self.n_partitions
        for r in calls if self.client is None else [c.result() for c in calls]:
            for k, v in r.items():
                out[k] = v
        return out

    def _merge(self, results: list[dict]) -> list:
        found = []
        for name in self.names:
            for r in results:
                found += r.get(name, [])
        return found

    def _take_pending(self) -> list[list]:
        p, self.pending = self.pending, [[] for _ in range(self.n_partitions)]
        return p

    # ---- findings streamed to the driver's logs ---------------------------------------------------------
    def log_names(self) -> list[str]:
        """The finding logs of the partitions' streamed components (``sla_events``, ``anomalies``),
        in component order."""
        names = self._call("log_names", [()] * self.n_partitions)
        return list(dict.fromkeys(v for d in names for v in d.values()))

    def attach_logs(self, logs: dict) -> None:
        """Stream the partitions' findings to ``logs`` (log name -> OutputLog, see :meth:`log_names`)
        in this process: each partition's streamed components hand their finding lines back with
        every call, and the lines of a step are merged into the order the in-process components
        write them (so ``sla_events.jsonl`` and ``anomalies.jsonl`` equal an in-process run's); the
        partitions keep none."""
        self.logs = dict(logs)
        self._write_lines(self._call("capture_logs", [()] * self.n_partitions))

    def _write_lines(self, per_partition: list[dict]) -> None:
        names = list(dict.fromkeys(n for d in per_partition for n in d))
        for name in names:
            lines = merge_keyed_lines([d.get(name, []) for d in per_partition])
            if lines:
                if name not in self.logs:
                    raise RuntimeError(f"partitions wrote {name} lines but no {name} log is attached")
                self.logs[name].write_lines(lines)

    # ---- deferred steps ---------------------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        """Deferred steps not shipped yet."""
        return len(self._steps)

    def defer(self, watermark_ms: int, finish: bool = False) -> None:
        """One step: the rows buffered so far, then an advance (or the finish) at ``watermark_ms``;
        it runs at the next :meth:`submit`."""
        batches = {k: b for k, b in enumerate(self._take_pending()) if b}
        self._steps.append((int(watermark_ms), bool(finish), batches))

    def submit(self) -> None:
        """Ship the deferred steps, all in one call per worker (after settling the call in flight:
        one call at a time per worker keeps them in order). In this process they run now."""
        if self._inflight is not None:
            self.settle()
        if not self._steps:
            return
        steps, self._steps = self._steps, []
        calls = [
            g.run([(wm, fin, {k: b[k] for k in ks if k in b}) for wm, fin, b in steps])
            for g, ks in zip(self.groups, self.assignment)
        ]
        self._inflight = (calls, [wm for wm, _f, _b in steps])
        if self.client is None:
            self.settle()

    def busy(self) -> bool:
        """Is a call still running on some worker?"""
        if self._inflight is None:
            return False
        return self.client is not None and not all(c.done() for c in self._inflight[0])

    def settle(self) -> None:
        """Wait for the call in flight; its steps' findings join the ready ones (:meth:`collect`)."""
        if self._inflight is None:
            return
        calls, wms = self._inflight
        self._inflight = None
        results = calls if self.client is None else [c.result() for c in calls]
        for i, wm in enumerate(wms):
            per_part = {}
            for r in results:
                per_part.update(r[i])
            ordered = [per_part[k] for k in sorted(per_part)]
            self._write_lines([r.get("__lines__", {}) for r in ordered])
            self._ready.append((wm, self._merge(ordered)))

    def flush(self) -> None:
        """Run every deferred step and wait for it."""
        if self._steps:
            self.submit()
        self.settle()

    def collect(self) -> list[tuple[int, list]]:
        """``(watermark_ms, findings)`` of every settled step not collected yet, in order."""
        r, self._ready = self._ready, []
        return r

    def _run_now(self, watermark_ms: int, finish: bool = False) -> list:
        self.defer(watermark_ms, finish)
        self.flush()
        return self._carried() + [f for _wm, found in self.collect() for f in found]

    # ---- the component contract ---------------------------------------------------------------------------
    def update(self, batch) -> list:
        from telcoanalytics.pipeline.contract import RoutedBatch

        self._seq += 1
        if self.n_partitions == 1:
            self.pending[0].append((self._seq, None, batch))
            return []
        part = np.where(batch.partition < 0, 0, batch.partition % self.n_partitions)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.n_partitions + 1))
        keyed = batch.source in ("equip", "qos")  # anomaly rows are merged by their rows' positions
        for k in range(self.n_partitions):
            sel = order[bounds[k] : bounds[k + 1]]
            if len(sel):
                self.pending[k].append(
                    (
                        self._seq,
                        sel.astype(np.int32) if keyed else None,
                        RoutedBatch(batch.source, batch.rows[sel], batch.element_index[sel], batch.partition[sel]),
                    )
                )
        return []

    def _carried(self) -> list:
        c, self._carry = self._carry, []
        return c

    def learn(self, day, until_ms: int) -> list[str]:
        """The history warm-up of an unpartitioned run, per partition: each partition's components
        learn (``learn(day, until_ms)``) from the clean history rows of its own elements that arrived
        before ``until_ms`` (shipped to its worker as a :class:`HistoryView`); returns the names of
        the components that learned."""
        views = HistoryView(day, until_ms).split(self.topology, self.route_level, self.n_partitions)
        return list(self._call("learn", [(v, int(until_ms)) for v in views])[0])

    def advance(self, watermark_ms: int) -> list:
        """Deferred steps, then the rows since and an advance at ``watermark_ms``; their findings."""
        return self._run_now(watermark_ms)

    def finish(self, watermark_ms: int) -> list:
        return self._run_now(watermark_ms, finish=True)

    def topology_changed(self, topology, changes) -> list:
        self.flush()
        ready = [f for _wm, found in self.collect() for f in found]
        ts = topology.to_state()
        res = self._call("topology_changed", [(b, ts, changes) for b in self._take_pending()])
        self._write_lines([r.get("__lines__", {}) for r in res])
        found = self._merge(res)
        self.topology = topology
        return self._carried() + ready + found

    def report_lines(self) -> list[str]:
        where = "on a Dask cluster" if self.client is not None else "in this process"
        lines = [
            f"== partitioned by {self.route_level}: {self.n_partitions} partitions ({where}); components "
            f"{', '.join(self.names)}"
        ]
        for k, part in enumerate(self.partition_report_lines()):
            lines += [f"-- partition {k} (nodes {k}, {k} + {self.n_partitions}, ... of {self.route_level})"] + part
        return lines

    def report_states(self) -> list[dict]:
        """Each partition's :meth:`PartitionWorker.report_state` (pending rows applied first)."""
        self.flush()
        res = self._call("to_state_light", [(b,) for b in self._take_pending()])
        self._write_lines([found.get("__lines__", {}) for found, _st in res])
        self._carry += self._merge([found for found, _st in res])
        return [st for _found, st in res]

    def worker_cpu(self) -> list[dict]:
        """Each group's (worker process') CPU account (:meth:`PartitionGroup.cpu`)."""
        self.flush()
        calls = [g.cpu() for g in self.groups]
        return calls if self.client is None else [c.result() for c in calls]

    def partition_report_lines(self) -> list[list[str]]:
        """Each partition's own component report."""
        return self._call("report_lines", [()] * self.n_partitions)

    def states(self) -> list[dict]:
        """Each partition's ``{component: (class path, state)}``; pending rows are applied first
        (their findings, if any, are returned by the next advance)."""
        self.flush()
        res = self._call("to_state", [(b,) for b in self._take_pending()])
        self._write_lines([found.get("__lines__", {}) for found, _st in res])
        self._carry += self._merge([found for found, _st in res])
        return [st for _found, st in res]

    def merged_windows(self):
        """The partitions' sliding windows merged (equal to one pass over all rows)."""
        out = None
        for st in self.states():
            from telcoanalytics.windows.sliding import SlidingWindows

            w = SlidingWindows.from_state(st["windows"][1]["win"])
            out = w if out is None else out.merge(w)
        return out

    def merged_cubes(self):
        """The partitions' cubes merged."""
        from telcoanalytics.cube import CubeSet

        out = None
        for st in self.states():
            c = CubeSet.from_state(st["cube"][1]["cubes"])
            out = c if out is None else out.merge(c)
        return out

    def to_state(self) -> dict:
        head = {
            "route_level": self.route_level,
            "n_partitions": self.n_partitions,
            "config": self.config,
        }
        if self.parts_dir is not None or self.checkpoint_dir is not None:
            self.flush()
            if self.parts_dir is not None:
                d = Path(self.parts_dir).resolve()
                d.mkdir(parents=True, exist_ok=True)
                token = f"{time.time_ns():x}"
                paths = [str(d / _PART_FILE.format(k=k, token=token)) for k in range(self.n_partitions)]
            else:
                d = Path(self.checkpoint_dir)
                d.mkdir(parents=True, exist_ok=True)
                paths = [str(d / f"partition-{k}.npz") for k in range(self.n_partitions)]
            res = self._call("write_checkpoint", [(p, b) for p, b in zip(paths, self._take_pending())])
            self._write_lines([found.get("__lines__", {}) for found, _p in res])
            self._carry += self._merge([found for found, _p in res])
            if self.parts_dir is not None:
                self._new_generation(str(d), paths)
            return {**head, "files": paths, **({"generations": True} if self.parts_dir is not None else {})}
        return {
            **head,
            "partitions": {
                str(k): {n: {"cls": c, "state": s} for n, (c, s) in st.items()} for k, st in enumerate(self.states())
            },
        }

    def _new_generation(self, folder: str, paths: list[str]) -> None:
        """Files of ``folder`` but those of the previous generation and ``paths`` are removed (a
        checkpoint refers to the previous generation until the one being written lands)."""
        keep = set(paths) | set(self._generations.get(folder, []))
        self._generations[folder] = list(paths)
        _remove_partition_files(folder, keep)

    def checkpoint_done(self) -> None:
        """The checkpoint that refers to the newest generation of partition files is durable: the
        older generations in its folder are removed."""
        for folder, paths in self._generations.items():
            _remove_partition_files(folder, set(paths))

    @classmethod
    def from_state(cls, state: dict, topology, client=None) -> PartitionedComponents:
        """Rebuild; the partitions go to ``client``, or to the current Dask client when there is
        one (``distributed.get_client``), else run in this process."""
        if client is None:
            try:
                from distributed import get_client

                client = get_client()
            except (ImportError, ValueError):
                client = None
        n = int(state["n_partitions"])
        if "files" in state:  # each partition reads its own file where it runs (not shipped from here)
            states = [str(p) for p in state["files"]]
        else:
            parts = state["partitions"]
            states = [{name: (v["cls"], v["state"]) for name, v in parts[str(k)].items()} for k in range(n)]
        cfg = state["config"]
        generations = bool(state.get("generations"))
        folder = None if "files" not in state else str(Path(state["files"][0]).parent)
        out = cls(
            topology,
            state["route_level"],
            n,
            cfg["enabled"],
            cfg["allowed_lateness_ms"],
            cfg["options"],
            client=client,
            checkpoint_dir=None if generations else folder,
            _states=states,
        )
        if generations:  # later checkpoints write new generations next to these files
            out.parts_dir = folder
            out._generations[folder] = list(state["files"])
        return out


def _remove_partition_files(folder: str, keep: set) -> None:
    for p in Path(folder).glob(_PART_FILE.format(k="*", token="*")):
        if str(p) not in keep:
            p.unlink(missing_ok=True)
    for p in Path(folder).glob("." + _PART_FILE.format(k="*", token="*") + ".*.tmp"):  # a write killed midway
        p.unlink(missing_ok=True)


class PartitionedPipeline(Pipeline):
    """A :class:`~telcoanalytics.pipeline.Pipeline` whose one component is a
    :class:`PartitionedComponents` (see :func:`partitioned_pipeline`). On a Dask cluster,
    :meth:`feed` does not wait for the partitions at each minute: each tick becomes a deferred
    step, the steps are shipped several at a time (one call per worker), and the driver ingests
    the next minutes while the workers run them. The findings of each step reach the alert
    manager in order, at that step's watermark, exactly as one advance at a time would deliver
    them, so the alerts, incidents and counts are identical; they arrive later in wall time
    (at most :attr:`max_steps` minutes of event time behind the ingest, or at once when the
    input comes slower than :attr:`live_gap_s` per tick, as in real time).

    Everything that needs the pipeline settled runs the shipped steps first and delivers their
    findings (:meth:`drain`): a direct :meth:`advance`, :meth:`finish`, :meth:`change_topology`,
    :meth:`checkpoint`. A driver that records its outputs' lengths before a checkpoint (the
    :class:`~telcoanalytics.pipeline.run.Runner`) calls :meth:`drain` first.

    On a cluster the partitions write their own checkpoint files, in parallel on their workers,
    into ``<checkpoint>.parts/`` next to each checkpoint: a new generation of files each time
    (the previous generation stays until the checkpoint referring to the new one is durable).
    """

    min_steps = 10
    """Steps (minutes) gathered before a call when the workers are idle."""
    max_steps = 60
    """Steps at which the driver waits for the workers' call in flight (bounds the rows held)."""
    live_gap_s = 1.0
    """A tick that comes this many wall seconds after the previous one is run at once (real time)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        parts = [c for c in self.components.values() if isinstance(c, PartitionedComponents)]
        if len(parts) != 1 or len(self.components) != 1:
            raise ValueError(
                "a PartitionedPipeline has exactly one component, a PartitionedComponents "
                f"(got {', '.join(f'{n}: {type(c).__name__}' for n, c in self.components.items()) or 'none'})"
            )
        self.partitions = parts[0]
        self.partitions_name = next(iter(self.components))
        self._deferring = False
        self._last_tick_wall: float | None = None

    def feed(self, batches, tick_ms: int = 60_000) -> int:
        """:meth:`Pipeline.feed`, with the partitions' ticks deferred and shipped in batches on a cluster."""
        if self.partitions.client is None:
            return super().feed(batches, tick_ms)
        self._deferring = True
        try:
            return super().feed(batches, tick_ms)
        finally:
            self._deferring = False

    def advance(self, watermark_ms: int | None = None) -> list:
        if not self._deferring:
            self.drain()
            return super().advance(watermark_ms)
        wm = self.watermark_ms if watermark_ms is None else int(watermark_ms)
        tc = time.perf_counter()
        part = self.partitions
        part.defer(wm)
        self.last_advance_ms = wm
        live = self._last_tick_wall is not None and tc - self._last_tick_wall >= self.live_gap_s
        if live:
            part.flush()
        elif part.busy():
            if part.n_steps >= self.max_steps:
                part.settle()
                part.submit()
        elif part.n_steps >= self.min_steps:
            part.submit()  # settles the finished call first
        self.seconds[self.partitions_name] += time.perf_counter() - tc
        self._deliver_ready()
        self._last_tick_wall = time.perf_counter()
        return []

    def _deliver_ready(self) -> None:
        for wm, found in self.partitions.collect():
            self._deliver(found, wm, tick=True)

    def drain(self) -> None:
        """Run every deferred step and deliver its findings (in order, each at its watermark)."""
        tc = time.perf_counter()
        self.partitions.flush()
        self.seconds[self.partitions_name] += time.perf_counter() - tc
        self._deliver_ready()

    def finish(self) -> list:
        self.drain()
        return super().finish()

    def change_topology(self, target, changes=None) -> list:
        self.drain()
        return super().change_topology(target, changes)

    @property
    def component_names(self) -> list[str]:
        """The partitioned components' names (in run order)."""
        return list(self.partitions.names)

    def report_view(self, context_day=None):
        """The pipeline as its report reads it: the partitions' components merged into one of each
        (:func:`merged_components`; their findings read back from the attached logs), so the
        report and the scorecard equal the in-process run's. Gathers every partition's state."""
        part = self.partitions
        cpu = part.worker_cpu() if part.client is not None else None  # before the states are gathered
        comps = merged_components(part.report_states(), self.topology, part.logs, context_day)
        where = "in this process"
        if cpu is not None:
            comp_s = {n: sum(c["components_s"].get(n, 0.0) for c in cpu) for n in cpu[0]["components_s"]}
            where = (
                f"{len(cpu)} workers, their CPU "
                + " + ".join(f"{c['process_s']:.1f}" for c in cpu)
                + " s: components "
                + ", ".join(f"{n} {v:.1f}" for n, v in comp_s.items())
                + " s; other calls (learning, states, merge keys) "
                + " + ".join(f"{c['calls_s'] - sum(c['components_s'].values()):.1f}" for c in cpu)
                + " s, start "
                + " + ".join(f"{c['before_s'] + c['build_s']:.1f}" for c in cpu)
                + " s, Dask "
                + " + ".join(f"{c['other_s']:.1f}" for c in cpu)
                + " s"
            )
        seconds = {(f"partitions ({where})" if k == self.partitions_name else k): v for k, v in self.seconds.items()}
        return _ReportView(self, comps, seconds)

    def checkpoint(self, path, driver: dict | None = None) -> Path:
        self.drain()
        part = self.partitions
        if part.client is None or part.checkpoint_dir is not None:
            return super().checkpoint(path, driver)
        path = Path(path)
        previous = part.parts_dir
        part.parts_dir = str(path.parent / f"{path.name}.parts")
        try:
            out = super().checkpoint(path, driver)
            part.checkpoint_done()
        finally:
            part.parts_dir = previous
        return out


def _merged_states(cls, states: list):
    """``cls.from_state`` of each partition's state, merged in partition order by ``cls.merge``."""
    out = None
    for st in states:
        x = cls.from_state(st)
        out = x if out is None else out.merge(x)
    return out


# ---- the partitions' components merged, for a report equal to the in-process run's ---------------------------------
def merged_components(states: list[dict], topology, logs: dict | None = None, context_day=None) -> dict:
    """One component per name, merged from the partitions' states (``{name: (class path, state)}``
    each, :meth:`PartitionedComponents.states`): what one unpartitioned pipeline would hold, for
    its report and scorecard. Each partition holds the state of its own elements (the others'
    untouched), so the merges are exact: windows and cubes by their ``merge``, SLA and anomaly
    findings read back from ``logs`` (the driver's merged finding logs), counters summed, the
    analysis' cubes merged, flows and series put together. A component of another class reports
    partition by partition.
    """
    from telcoanalytics.analysis.component import AnalysisComponent
    from telcoanalytics.pipeline.components import AnomalyComponent, CubeComponent, SlaComponent, WindowsComponent
    from telcoanalytics.pipeline.contract import load_class

    logs = logs or {}
    out = {}
    for name in states[0]:
        cls = load_class(states[0][name][0])
        sts = [st[name][1] for st in states]
        if cls is WindowsComponent:
            from telcoanalytics.windows.sliding import SlidingWindows

            comp = WindowsComponent(topology, _win=_merged_states(SlidingWindows, [st["win"] for st in sts]))
            comp.n_side = sum(int(st["n_side"]) for st in sts)
        elif cls is CubeComponent:
            from telcoanalytics.cube import CubeSet

            comp = CubeComponent(topology, _cubes=_merged_states(CubeSet, [st["cubes"] for st in sts]))
            comp.n = sum(int(st["n"]) for st in sts)
        elif cls is SlaComponent and "light" in sts[0]:
            from types import SimpleNamespace

            comp = SlaComponent.__new__(SlaComponent)
            mem = sts[0]["light"]["memory_bytes"]  # each partition's store covers every element
            store = SimpleNamespace(memory_bytes=lambda mem=mem: mem)
            comp.mon = SimpleNamespace(rules=[None] * sts[0]["light"]["n_rules"], store=store)
            comp.topology = topology
            comp._events = [_sla_event(e) for st in sts for e in st["events"]]
        elif cls is SlaComponent:
            comp = SlaComponent.from_state(sts[0], topology)
            comp._events = [_sla_event(e) for st in sts for e in st["events"]]  # held ones (not streamed)
        elif cls is AnomalyComponent and "light" in sts[0]:
            from types import SimpleNamespace

            from telcoanalytics.anomaly.policy import PagingPolicy

            comp = AnomalyComponent.__new__(AnomalyComponent)
            det = SimpleNamespace(
                n_obs=SimpleNamespace(size=sts[0]["light"]["n_slots"]),  # every partition has every slot
                n_backwards=sum(st["light"]["n_backwards"] for st in sts),
            )
            comp.net = SimpleNamespace(detector=det)
            comp.topology, comp._pending, comp._read_cache = topology, [], None
            comp.policy = PagingPolicy.from_state(sts[0]["policy"])
            from collections import Counter

            counts = Counter()
            for st in sts:
                counts.update(dict(st["policy"]["counts"]))
            comp.policy.counts = counts
            comp._rows = [st["rows"] for st in sts if st["rows"] is not None and len(st["rows"])]
        elif cls is AnomalyComponent:
            comp = AnomalyComponent.from_state(sts[0], topology)
            det = comp.net.detector
            det.n_backwards = sum(int(_find(st["net"], "n_backwards")) for st in sts)
            from collections import Counter

            counts = Counter()
            for st in sts:
                counts.update(dict(st["policy"]["counts"]))
            comp.policy.counts = counts
            comp._rows = [r for st in sts for r in ([st["rows"]] if len(st["rows"]) else [])]
        elif cls is AnalysisComponent:
            comp = _merged_analysis(sts, topology)
            comp.context_day = context_day
        else:  # a component this module cannot merge: its partitions' own reports, one after another
            comp = _PartitionReports([cls.from_state(st, topology) for st in sts])
        log_name = getattr(comp, "LOG_NAME", None)
        if log_name in logs:
            comp._clear_held()
            comp._log = logs[log_name]
        out[name] = comp
    return out


def _sla_event(d: dict):
    from telcoanalytics.sla.sla import SlaEvent

    return SlaEvent(**d)


def _find(d: dict, key: str):
    """``d[key]``, or the first value of ``key`` in the dicts nested in ``d``."""
    if key in d:
        return d[key]
    for v in d.values():
        if isinstance(v, dict):
            try:
                return _find(v, key)
            except KeyError:
                pass
    raise KeyError(key)


def _merged_analysis(sts: list[dict], topology):
    from telcoanalytics.analysis.component import AnalysisComponent, _flow_columns, _flows_of
    from telcoanalytics.analysis.series import SERIES

    iv = int(sts[0]["interval_ms"])
    flows = np.concatenate([_flows_of(st["flows"], iv) for st in sts])
    flows = flows[np.argsort(flows["ts_ms"], kind="stable")]
    first = dict(sts[0], flows=_flow_columns(flows, iv), n_flows_expired=sum(int(st["n_flows_expired"]) for st in sts))
    first["n"] = np.sum([np.asarray(st["n"]) for st in sts], axis=0)
    ser = [st["series"] for st in sts]
    layout = ("bin_ms", "max_bins", "first_bin", "off", "width")
    differ = [k for k in layout if any(int(x[k]) != int(ser[0][k]) for x in ser)]
    if differ:
        raise ValueError(
            f"the partitions' analysis series are laid out differently ({', '.join(differ)}: "
            f"{[[int(x[k]) for k in differ] for x in ser]}), so they cannot be added; report the partitions "
            "one by one (PartitionedComponents.partition_report_lines)"
        )
    keys = [f"sums_{s}" for s in SERIES] + [f"counts_{s}" for s in SERIES] + ["complaints"]
    first["series"] = dict(ser[0], **{k: np.sum([np.asarray(x[k]) for x in ser], axis=0) for k in keys})
    comp = AnalysisComponent.from_state(first, topology)
    for st in sts[1:]:
        other = AnalysisComponent.from_state(dict(st, flows=_flow_columns(flows[:0], iv)), topology)
        comp._cubes = comp._cubes.merge(other._cubes)
        comp._complaints = comp._complaints.merge(other._complaints)
    return comp


class _PartitionReports:
    """Stands in for a component that cannot be merged: each partition's report in turn."""

    def __init__(self, parts: list):
        self.parts = parts

    def report_lines(self) -> list[str]:
        out = []
        for k, comp in enumerate(self.parts):
            out += [f"-- partition {k}"] + comp.report_lines()
        return out


class _ReportView:
    """A pipeline seen through its merged components (``components``); everything else is the
    pipeline's."""

    def __init__(self, pipe, components: dict, seconds: dict):
        self._pipe = pipe
        self.components = components
        self.seconds = seconds

    def __getattr__(self, name):
        return getattr(self._pipe, name)


WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 2**31 - 1,
    "distributed.nanny.pre-spawn-environ.MALLOC_TOP_PAD_": 256 << 20,
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 32 << 20,
}
"""Dask settings of :func:`local_client`'s worker processes: no statistical profiler (a thread
sampling every worker's stacks every 10 ms), and the malloc settings of
:func:`telcoanalytics.tune_malloc` instead of Dask's aggressive trimming (freed batch arrays stay in
the heap for the next batch instead of being faulted in again)."""


def local_client(n_workers: int):
    """A context manager: a local Dask cluster of ``n_workers`` single-threaded worker processes
    (with :data:`WORKER_CONFIG`) and a client of it (``with local_client(2) as client: ...``).

    Raises
    ------
    ImportError
        Dask is not installed (``pip install 'telcoanalytics[distributed]'``).
    """
    import contextlib

    import dask
    from distributed import Client, LocalCluster

    @contextlib.contextmanager
    def cm():
        with dask.config.set(WORKER_CONFIG):
            cluster = LocalCluster(
                processes=True, n_workers=int(n_workers), threads_per_worker=1, dashboard_address=None
            )
        with cluster, Client(cluster) as client:
            yield client

    return cm()


def partitioned_pipeline(
    topology: Topology,
    route_level: str = "region",
    n_partitions: int | None = None,
    enabled=None,
    allowed_lateness_ms: int = 900_000,
    options: dict | None = None,
    client=None,
    alerts=None,
    checkpoint_dir=None,
    ingest_options: dict | None = None,
) -> PartitionedPipeline:
    """A :class:`PartitionedPipeline` whose analysis runs partitioned by ``route_level`` (see
    :class:`PartitionedComponents`); ``alerts`` is its alert manager.

    Examples
    --------
    >>> from telcoanalytics.synth.network import generate
    >>> day = generate(n_elements=60, n_regions=2, days=0.02, seed=1)
    >>> p = partitioned_pipeline(day.topology, enabled=["windows", "cube"], allowed_lateness_ms=60_000)
    >>> _ = p.feed(day.raw_batches())
    >>> p.components["partitions"].n_partitions, p.conserved()
    (2, True)
    """
    part = PartitionedComponents(
        topology, route_level, n_partitions, enabled, allowed_lateness_ms, options, client, checkpoint_dir
    )
    return PartitionedPipeline(
        topology,
        route_level=route_level,
        allowed_lateness_ms=allowed_lateness_ms,
        components={"partitions": part},
        alerts=alerts,
        ingest_options=ingest_options,
    )
