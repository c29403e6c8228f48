"""The analysis components of a replay, each implementing the contract of
:mod:`telcoanalytics.pipeline.contract`, and the registry that builds them by name.

=========  =====================================================================================
name       what it keeps
=========  =====================================================================================
windows    per-element sliding windows (1 min x 60, 1 h x 24) and continuous EW statistics of
           call holding time, QoS latency and equipment throughput
sla        KPI counter stores from raw records, the default SLA rules and SLOs, lifecycles
anomaly    seasonal self-tuning detection on equipment metrics and QoS, silence, classification
cube       the exploration cube (drop rates by region, site, class, service, hour) and a
           subscriber cube (distinct subscribers, holding-time percentiles)
=========  =====================================================================================

Their findings travel as alerts through :meth:`Pipeline.advance` to the pipeline's alert manager
(:func:`build_alert_manager`), never sideways between components.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from telcoanalytics.pipeline.coalesce import DEFAULT_COALESCE_ROWS, BatchBuffer
from telcoanalytics.pipeline.contract import RoutedBatch

COMPONENTS: dict = {}
"""name -> factory(topology, options) of the available components, in run order. ``options`` is a
dict of the run's settings (``allowed_lateness_ms``) that a factory passes on where it applies."""

ALL_NAMES = ("windows", "alerts", "sla", "anomaly", "cube", "analysis")
"""What ``--components`` accepts: the components and ``alerts`` (the pipeline's alert manager)."""


def build_components(
    topology, enabled=None, *, allowed_lateness_ms: int = 900_000, options: dict | None = None
) -> dict:
    """Instantiate the enabled components (default: all, in run order); ``"alerts"`` in ``enabled``
    is not a component (see :func:`build_alert_manager`) and is skipped here.

    ``options`` maps a component name to its settings (the ``[components.<name>]`` tables of a
    configuration file, :mod:`telcoanalytics.pipeline.config`); each factory receives them with
    ``allowed_lateness_ms``.

    Raises
    ------
    ValueError
        An unknown name, listing the known ones.
    """
    names = list(COMPONENTS) if enabled is None else [n for n in enabled if n != "alerts"]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown components {unknown}; available: {', '.join(ALL_NAMES)}")
    options = options or {}
    base = {"allowed_lateness_ms": int(allowed_lateness_ms)}
    return {n: COMPONENTS[n](topology, {**base, **options.get(n, {})}) for n in COMPONENTS if n in names}


def build_alert_manager(topology, out_dir: Path):
    """The replay's alert manager: deduplicated, inhibited along the topology, grouped by incident
    (alerts sharing a cause), written to ``out_dir/alerts.jsonl`` (one line per alert of each
    notification) and ``out_dir/incidents.jsonl`` (one line per incident), both emptied first."""
    from telcoanalytics.alerts.incidents import IncidentBook
    from telcoanalytics.alerts.manager import AlertManager
    from telcoanalytics.alerts.sinks import JsonlSink

    path = Path(out_dir) / "alerts.jsonl"
    path.unlink(missing_ok=True)
    book = IncidentBook(topology.levels, path=Path(out_dir) / "incidents.jsonl")
    return AlertManager(topology, sinks=[JsonlSink(path, fsync=False)], incidents=book)


class _Base:
    """Defaults of the contract for components that find nothing in some calls."""

    def update(self, batch: RoutedBatch) -> list:
        return []

    def advance(self, watermark_ms: int) -> list:
        return []

    def finish(self, watermark_ms: int) -> list:
        return []


class _Streamed:
    """Findings that can stream to an append-only log instead of living in memory and checkpoints.

    ``attach_log(log)`` (an :class:`telcoanalytics.pipeline.run.OutputLog`; the replay and the
    real-time runner attach ``sla_events.jsonl`` / ``anomalies.jsonl``) makes the component write
    each finding as one JSON line and keep none; reading them (the report, the scorecard) then
    reads the retained files back. The log's length is recorded by each checkpoint, so a resumed
    run continues the file exactly.
    """

    _log = None

    def attach_log(self, log) -> None:
        """Stream findings to ``log`` from now on (those held so far are written first)."""
        self._log = log
        held = self._held()
        self._clear_held()
        if held:
            self._write(held)

    @property
    def streaming(self) -> bool:
        return self._log is not None


# ---- windows -------------------------------------------------------------------------------------
_NO_CODES = np.zeros(0, np.int32)  # select_events: every row


class WindowsComponent(_Base):
    """Per-element sliding windows of three replay metrics, with continuous EW decay.

    Slots are ``element_index * 3 + k`` for k = 0 call holding time (s, answered CDRs),
    1 QoS latency (ms), 2 equipment throughput (Mbit/s). Resolutions: 1 min x 60 and 1 h x 24;
    continuous EW mean/variance at half-lives 60 s, 1 h and 1 day. Memory is reported.
    """

    METRICS = ("holding_s", "latency_ms", "throughput_mbps")
    RESOLUTIONS = ((60_000, 60), (3_600_000, 24))
    HALF_LIVES_S = (60.0, 3600.0, 86400.0)

    def __init__(self, topology, allowed_lateness_ms: int = 900_000, _win=None, resolutions=None, half_lives_s=None):
        from telcoanalytics.records import METRIC_CODE
        from telcoanalytics.windows.sliding import SlidingWindows

        self.topology = topology
        self.win = _win or SlidingWindows(
            topology.n_elements * 3,
            tuple(map(tuple, resolutions or self.RESOLUTIONS)),
            allowed_lateness_ms,
            tuple(half_lives_s or self.HALF_LIVES_S),
        )
        self.n_side = 0  # events behind the windows' watermark (side output), counted, not folded in
        self._throughput = METRIC_CODE["throughput_mbps"]
        self._ts = self._slot = self._val = self._status = np.empty(0)  # per-batch buffers (grown as needed)

    def update(self, batch: RoutedBatch) -> list:
        """The batch's events selected, their slots and values computed, in one compiled pass per
        batch (``kernels.windows.select_answered_calls`` / ``select_events``) into buffers kept
        between batches, then folded into the windows."""
        from kernels.windows import N_LATE, select_answered_calls, select_events

        source, rows, element_index = batch.source, batch.rows, batch.element_index
        n = len(rows)
        if source not in ("cdr", "qos", "equip") or not n:
            return []
        if len(self._ts) < n:
            cap = max(n, 2 * len(self._ts))
            self._ts, self._slot = np.empty(cap, np.int64), np.empty(cap, np.int64)
            self._val, self._status = np.empty(cap), np.empty(cap, np.int8)
        out = (self._ts, self._slot, self._val)
        if source == "cdr":
            m, lo, hi = select_answered_calls(
                rows["start_ms"], rows["answer_ms"], rows["end_ms"], element_index, 3, 0, *out
            )
        elif source == "qos":
            m, lo, hi = select_events(rows["ts_ms"], rows["latency_ms"], _NO_CODES, 0, element_index, 3, 1, *out)
        else:
            m, lo, hi = select_events(
                rows["ts_ms"], rows["value"], rows["metric_id"], self._throughput, element_index, 3, 2, *out
            )
        if not m:
            return []
        ts, slot, val = self._ts[:m], self._slot[:m], self._val[:m]
        w = self.win
        if w.dedup or lo < 0 or hi >= w.n_slots:  # not windows this component builds: the public
            w.update(ts, slot, val)  # update raises its error (record ids missing / a slot out of range)
        late = int(w.counters[N_LATE])
        w._fold(ts, slot, val, ts, self._status[:m])
        self.n_side += int(w.counters[N_LATE]) - late  # the events the kernel marked late
        return []

    def topology_changed(self, topology, changes) -> list:
        """Added elements get new slots; existing elements keep theirs (dense indices are stable)."""
        n_new = topology.n_elements * 3
        if n_new > self.win.n_slots:
            self.win = self.win.rollup(np.arange(self.win.n_slots), n_new)  # identity groups: grow
        self.topology = topology
        return []

    def report_lines(self):
        from telcoanalytics.windows.decay import Decay

        w = self.win
        lines = [
            f"== windowed statistics ({len(self.RESOLUTIONS)} resolutions: 1 min x 60, 1 h x 24; "
            f"EW half-lives 60 s / 1 h / 1 day; state {w.nbytes / 2**20:.0f} MiB for {w.n_slots:,} slots)"
        ]
        t = w.max_ts_ms
        if t is None:
            return lines + ["  no data"]
        q_day = w.query(t, 24 * 3_600_000).reshape(-1, 3)
        q_hour = w.query(t, 3_600_000, decay=Decay.exponential(half_life_s=900.0)).reshape(-1, 3)
        ew = w.ew_values(t).reshape(-1, 3, len(self.HALF_LIVES_S))
        busiest = np.argsort(-q_day["count"][:, 0], kind="stable")[:5]
        eids = self.topology.ids[self.topology.element_level]
        lines.append("  busiest elements over the last 24 h (calls answered, holding time, QoS latency, throughput):")
        lines.append(
            "  element      calls  hold_mean_s  hold_std_s  lat_mean_ms  lat_max_ms  lat_last_h_ms*  "
            "lat_ew1h_ms  thr_mean_mbps"
        )
        for e in busiest:
            a, b, c = q_day[e]
            lines.append(
                f"  {eids[e]:<10} {a['count']:7.0f} {a['mean']:12.1f} {a['std']:11.1f} {b['mean']:12.2f} "
                f"{b['max']:11.2f} {q_hour[e, 1]['mean']:14.2f} {ew[e, 1, 1]['mean']:12.2f} {c['mean']:14.1f}"
            )
        lines.append("  * last hour, exponentially decayed (half-life 15 min)")
        # roll the element slots up to regions (merge of window states along the topology)
        topo = self.topology
        slot = np.arange(w.n_slots)
        region = topo.element_to("region")[slot // 3] * 3 + slot % 3
        reg = w.rollup(region, topo.n_nodes("region") * 3).query(t, 3_600_000).reshape(-1, 3)
        lines.append("  regions over the last hour (windows rolled up the topology):")
        lines.append("  region    calls  hold_mean_s  lat_mean_ms  lat_std_ms  lat_max_ms")
        for r in range(topo.n_nodes("region")):
            a, b = reg[r, 0], reg[r, 1]
            lines.append(
                f"  {topo.ids['region'][r]:<7} {a['count']:7.0f} {a['mean']:12.1f} {b['mean']:12.2f} "
                f"{b['std']:11.2f} {b['max']:11.2f}"
            )
        lines.append(f"  events behind the windows' watermark (side output, not folded in): {self.n_side:,}")
        return lines

    def to_state(self) -> dict:
        return {"win": self.win.to_state(), "n_side": self.n_side}

    @classmethod
    def from_state(cls, state: dict, topology) -> WindowsComponent:
        from telcoanalytics.windows.sliding import SlidingWindows

        comp = cls(topology, _win=SlidingWindows.from_state(state["win"]))
        comp.n_side = int(state["n_side"])
        return comp


COMPONENTS["windows"] = lambda topology, options: WindowsComponent(
    topology,
    options["allowed_lateness_ms"],
    resolutions=options.get("resolutions"),
    half_lives_s=options.get("half_lives_s"),
)


# ---- KPI / SLA monitoring ----------------------------------------------------------------------------
class SlaComponent(_Streamed, _Base):
    """KPIs from raw records and SLA rules/SLOs (default rule set); firing and resolved events
    become alerts (and stream to ``sla_events.jsonl`` in a replay or real-time run)."""

    LOG_NAME = "sla_events"

    def __init__(self, topology, rules=None, _mon=None, **monitor_options):
        from telcoanalytics.sla.sla import SlaMonitor

        self.mon = _mon or SlaMonitor(topology, rules, **monitor_options)
        self._events = []
        self.topology = topology

    @property
    def events(self) -> list:
        """Every SLA event so far (read back from the log when streaming)."""
        if self._log is None:
            return self._events
        from telcoanalytics.sla.sla import SlaEvent

        return [SlaEvent(**json.loads(x)) for x in self._log.read_lines()]

    def _held(self):
        return self._events

    def _clear_held(self):
        self._events = []

    def _write(self, events):
        self._log.write_lines([json.dumps(e.to_dict(), sort_keys=True) for e in events])

    def update(self, batch: RoutedBatch) -> list:
        if batch.source in ("cdr", "equip", "qos"):
            self.mon.update(batch.source, batch.rows, batch.element_index)
        return []

    def _alerts(self, events) -> list:
        from telcoanalytics.alerts.manager import alerts_from_sla_events

        if self._log is not None:
            self._write(events)
        else:
            self._events.extend(events)
        return alerts_from_sla_events(events, self.topology) if events else []

    def advance(self, watermark_ms: int) -> list:
        return self._alerts(self.mon.advance(int(watermark_ms)))

    def topology_changed(self, topology, changes) -> list:
        """New elements get counters, re-homed ones count toward their new parents from now on;
        violations whose scope went away (retired elements) are closed."""
        ev = self.mon.set_topology(topology, changes)
        self.topology = topology
        return self._alerts(ev)

    def report_lines(self) -> list[str]:
        lines = [
            f"== SLA monitoring ({len(self.mon.rules)} rules, KPIs from raw records; "
            f"counter store {self.mon.store.memory_bytes() / 2**20:.0f} MiB)"
        ]
        events = self.events
        by = Counter((e.rule, e.state) for e in events)
        rules = sorted({r for r, _ in by})
        if not rules:
            return lines + ["  no violations"]
        lines.append("  rule                          pending  firing  resolved")
        for r in rules:
            lines.append(f"  {r:<29} {by[(r, 'pending')]:7d} {by[(r, 'firing')]:7d} {by[(r, 'resolved')]:9d}")
        firing = [e for e in events if e.state == "firing"]
        lines.append(f"  first firing violations (of {len(firing)}):")
        for e in firing[:8]:
            lines.append(f"    {e.summary}")
        return lines

    def to_state(self) -> dict:
        return {"mon": self.mon.to_state(), "events": [e.to_dict() for e in self._events]}

    @classmethod
    def from_state(cls, state: dict, topology) -> SlaComponent:
        from telcoanalytics.sla.sla import SlaEvent, SlaMonitor

        mon = SlaMonitor.from_state(state["mon"])
        comp = cls(mon.topology, _mon=mon)
        comp._events = [SlaEvent(**e) for e in state["events"]]
        return comp


def _sla_factory(topology, options):
    """``rules`` / ``slos`` (lists of rule dicts) or ``rules_file``; ``kpis`` (user KPI dicts);
    ``reeval_minutes``; none given: the default rule set."""
    rules = None
    if options.get("rules_file"):
        rules = options["rules_file"]
    elif options.get("rules") or options.get("slos"):
        rules = {"rules": list(options.get("rules", [])), "slos": list(options.get("slos", []))}
    kw = {k: options[k] for k in ("kpis", "reeval_minutes") if k in options}
    return SlaComponent(topology, rules, **kw)


COMPONENTS["sla"] = _sla_factory


# ---- anomaly detection ---------------------------------------------------------------------------------
class AnomalyComponent(_Streamed, _Base):
    """Seasonal, self-tuning anomaly detection on equipment metrics and QoS latency/loss.

    Events are scored as they arrive (time-sorted within each batch); silence is checked at
    every advance against the pipeline's watermark (which already trails by the allowed lateness,
    so late-but-allowed reports do not look like silence). The paging policy is
    :class:`telcoanalytics.anomaly.policy.PagingPolicy` (checkpointed with the component): faults
    per element once they persist or another metric family corroborates them, silences at once,
    collection gaps once per region, degradations unless the element's own load explains them;
    crowd/surge, change and benign findings are reported here, not paged.
    """

    LOG_NAME = "anomalies"

    def __init__(self, topology, _net=None, detector: dict | None = None):
        import dataclasses

        from telcoanalytics.anomaly.detector import NetworkAnomalyDetector
        from telcoanalytics.evaluate.evaluate import SYNTH_METRICS, synth_detector_config
        from telcoanalytics.records import METRICS

        self.metrics = SYNTH_METRICS
        self.n_eq = len(METRICS)
        if _net is None:
            cfg = dataclasses.replace(synth_detector_config(), **(detector or {}))
            _net = NetworkAnomalyDetector(topology, SYNTH_METRICS, cfg, silence_metrics=METRICS)
        from telcoanalytics.anomaly.policy import PagingPolicy

        self.net = _net
        self.net.detector.warn_late = False  # late rows across batches are normal here: counted, reported
        self.topology = topology
        self._rows = []
        self._pending = []
        self._read_cache = None  # (log position, rows) of the last read-back
        self.policy = PagingPolicy()  # what of the findings pages (state: held faults, recent load)
        self.data_ms = -(2**62)  # newest event time scored (the paging policy's clock)

    @property
    def rows(self) -> list:
        """Anomaly rows found so far, as a list of ``ANOMALY_DTYPE`` arrays (read back from the
        log when streaming)."""
        if self._log is None:
            return self._rows
        from telcoanalytics.anomaly.detector import ANOMALY_DTYPE

        key = (self._log.seq, self._log.state()["bytes"])
        if self._read_cache is not None and self._read_cache[0] == key:
            return self._read_cache[1]
        rows = records_from_json_lines(self._log.read_lines(), ANOMALY_DTYPE)
        out = [rows] if len(rows) else []
        self._read_cache = (key, out)
        return out

    def _held(self):
        return self._rows

    def _clear_held(self):
        self._rows = []

    def _write(self, parts):
        from telcoanalytics.anomaly.jsonl import json_text_of_records

        texts = []  # each part's lines, newline-joined (compiled; the general path for what it leaves)
        for rows in parts:
            text = json_text_of_records(rows) if len(rows) else ""
            text = "\n".join(json_lines_of_records(rows)) if text is None else text
            if text:
                texts.append(text)
        self._log.write_lines(texts)

    def learn(self, day, until_ms: int) -> None:
        """Learn baselines and thresholds from a synthetic day's history: the clean equipment and
        QoS rows that *arrived* before ``until_ms`` (as a deployment restores them from yesterday's
        checkpoint). Rows arriving later are the replay's, so nothing is learned twice; findings of
        the history are dropped.

        The events are those of :meth:`_events` over each source's rows in arrival order,
        equipment first, fed by :func:`~telcoanalytics.anomaly.warmup.warm_up`; they are gathered
        an hour at a time, so no copy of the whole history is made."""
        history = {source: self._history(day, source, until_ms) for source in ("equip", "qos")}
        self._learn_rows(history, day.start_ms, until_ms)

    def _learn_rows(self, history: dict, start_ms: int, until_ms: int) -> None:
        """:meth:`learn` of ``history``: source -> ``(rows, index)`` as :meth:`_history` gives them.

        Each hour's rows become events in one compiled pass (element ids looked up in a table
        of ``topology.index_of`` over the topology's ids: the same dense indices, -1 unknown)."""
        from kernels import anomaly_events as _ke
        from telcoanalytics.anomaly.warmup import warm_up_parts

        topo = self.topology
        ids = np.asarray(topo.ids[topo.element_level], dtype=np.int64)
        size = 1 << int(max(4 * len(ids), 16) - 1).bit_length()  # a power of two, load <= 1/4
        keys, vals = np.zeros(size, dtype=np.int64), np.full(size, -1, dtype=np.int64)
        _ke.id_table(ids, topo.index_of(ids), keys, vals)
        n_eq = self.n_eq

        def equip(rows):
            cols = rows["ts_ms"], rows["element_id"], rows["metric_id"], rows["value"]

            def gather(p):
                n = len(p)
                out = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
                _ke.gather_rows(p, *cols, keys, vals, *out)
                return [out]

            return gather

        def qos(rows):
            cols = rows["ts_ms"], rows["element_id"], rows["latency_ms"], rows["loss_pct"]

            def gather(p):  # latency of every row, then loss: the two groups of _events
                n = 2 * len(p)
                out = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
                _ke.gather_pairs(p, *cols, n_eq, n_eq + 1, keys, vals, *out)
                return [out]

            return gather

        parts = [
            (history[s][0]["ts_ms"], history[s][1], make(history[s][0])) for s, make in (("equip", equip), ("qos", qos))
        ]
        warm_up_parts(self.net, parts, start_ms, until_ms)

    @staticmethod
    def _history(day, source: str, until_ms: int):
        """``(rows, index)``: the clean rows of ``source`` that arrived before ``until_ms`` are
        ``rows[index]``, in arrival order (what ``day.raw(source)`` gives, less what arrived
        later and the duplicates and corrupted rows). Of a generated
        :class:`~telcoanalytics.synth.network.SynthDay` they are read from its clean rows and
        arrival order without building the arrival stream."""
        from telcoanalytics.synth.network import SynthDay
        from telcoanalytics.synth.stream import ORIGIN_CLEAN

        st = day._streams.get(source) if isinstance(day, SynthDay) else None
        if st is not None:
            k = int(np.searchsorted(st.clean_arrival_sorted, until_ms, side="left"))
            return day[source], st.clean_order[:k]
        rows, arrival_ms, origin = day.raw(source)
        return rows, np.flatnonzero((origin == ORIGIN_CLEAN) & (arrival_ms < until_ms))

    def _events(self, source, rows, element_index):
        """(ts_ms, element, metric, value) of equipment metrics and QoS latency/loss rows."""
        if source == "equip":
            return rows["ts_ms"], element_index, rows["metric_id"].astype(np.int64), rows["value"]
        n = len(rows)
        return (
            np.concatenate([rows["ts_ms"], rows["ts_ms"]]),
            np.concatenate([element_index, element_index]),
            np.repeat(np.array([self.n_eq, self.n_eq + 1], dtype=np.int64), n),
            np.concatenate([rows["latency_ms"], rows["loss_pct"]]),
        )

    def update(self, batch: RoutedBatch) -> list:
        if batch.source not in ("equip", "qos") or not len(batch.rows):
            return []
        from kernels import anomaly_events as _ke

        rows = batch.rows
        ts = rows["ts_ms"]
        # causal scoring: in event-time order within the batch (ties as they came)
        o = np.arange(len(ts)) if _ke.is_sorted(ts) else np.argsort(ts, kind="stable")
        n = len(o) * (1 if batch.source == "equip" else 2)
        out = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n)
        if batch.source == "equip":
            _ke.gather_events(o, ts, batch.element_index, rows["metric_id"], rows["value"], *out)
        else:  # latency and loss of each row (the order of a stable sort of all latencies, then all losses)
            _ke.pair_events(
                o, ts, batch.element_index, rows["latency_ms"], rows["loss_pct"], self.n_eq, self.n_eq + 1, *out
            )
        self.data_ms = max(self.data_ms, int(out[0][-1]))
        # checked, time-ordered events (late rows across batches are normal here: counted, reported)
        found = self.net._update_events(*out, ts_sorted=True)
        if len(found):
            self._pending.append(found)
        return []

    def advance(self, watermark_ms: int) -> list:
        from kernels import detect as _kd
        from telcoanalytics.anomaly.detector import ANOMALY_DTYPE
        from telcoanalytics.anomaly.policy import relabel_benign

        s = self.net.check_silence(int(watermark_ms))
        if len(s):
            self._pending.append(s)
        if len(self._pending) > 1:
            found = np.concatenate(self._pending)
        else:  # one part: a copy (concatenating structured rows promotes their dtype field by field)
            found = self._pending[0].copy() if self._pending else np.zeros(0, ANOMALY_DTYPE)
        self._pending = []
        if len(found):
            relabel_benign(found)
            if self._log is not None:
                self._write([found])
            else:
                self._rows.append(found)
        data_ms = max(self.data_ms, int(watermark_ms))
        st = self.net.detector.state  # per slot: newest event time scored, latest alarm point of the episode
        return self.policy.page(
            found,
            self.topology,
            int(watermark_ms),
            data_ms=data_ms,
            slot_time=st.last_t.__getitem__,
            last_alarm=lambda slots: st.sx[slots, _kd.X_LASTA],
            peak_value=lambda slots: st.sx[slots, _kd.X_PEAKV],
        )

    def report_lines(self):
        from telcoanalytics.anomaly.detector import ANOMALY_DTYPE

        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, ANOMALY_DTYPE)
        opened = rows[rows["end_ms"] < 0]
        lines = [
            f"== anomalies (seasonal baselines, self-tuning thresholds, change and silence detection; "
            f"{self.net.detector.n_obs.size:,} slots)"
        ]
        n_back = int(getattr(self.net.detector, "n_backwards", 0))
        if n_back:
            lines.append(f"  late events older than their slot's previous event (scored, not learned): {n_back:,}")
        if not len(opened):
            return lines + ["  none"]
        by = Counter(opened["classification"].tolist())
        lines.append(self.policy.report_line())
        lines.append(
            "  episodes opened by classification: "
            + ", ".join(f"{k}={v}" for k, v in sorted(by.items()))
            + "   (paged: fault, silence; collection gaps once per region; benign = a deviation in the harmless direction)"
        )
        top = opened[np.isin(opened["classification"], ("fault", "silence"))]
        top = top[np.argsort(-np.nan_to_num(top["peak_score"], nan=np.inf), kind="stable")][:8]
        for r in top:
            lines.append(
                f"    {r['classification']:<8} element {r['element_id']} {r['metric']:<16} "
                f"from {_hhmm(r['start_ms'])} value {r['value']:.4g} vs baseline {r['baseline']:.4g} "
                f"(score {r['peak_score']:.1f}, threshold {r['threshold']:.1f})"
            )
        gaps = opened[opened["classification"] == "collection_gap"]
        if len(gaps):
            reg = self.topology.ids["region"][
                self.topology.element_to("region")[self.topology.index_of(gaps["element_id"])]
            ]
            for rid in np.unique(reg):
                g = gaps[reg == rid]
                lines.append(
                    f"  collection gap: region {rid}, {len(g)} elements silent together from "
                    f"{_hhmm(g['start_ms'].min())} (network fine, collector down: silence alerts inhibited)"
                )
        crowd = opened[np.isin(opened["classification"], ("crowd", "surge"))]
        if len(crowd):
            sites = Counter(int(x) for x in crowd["scope_id"])
            lines.append(
                f"  crowd / demand surge (reported, not paged): {len(crowd)} episodes at scopes "
                + ", ".join(f"{k} (x{v})" for k, v in sites.most_common(5))
            )
        return lines

    def topology_changed(self, topology, changes) -> list:
        self.net.set_topology(topology)
        self.topology = topology
        return []

    def to_state(self) -> dict:
        from telcoanalytics.anomaly.detector import ANOMALY_DTYPE

        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, ANOMALY_DTYPE)
        pending = np.concatenate(self._pending) if self._pending else np.zeros(0, ANOMALY_DTYPE)
        return {
            "net": self.net.to_state(),
            "rows": rows,
            "pending": pending,
            "policy": self.policy.to_state(),
            "data_ms": self.data_ms,
        }

    @classmethod
    def from_state(cls, state: dict, topology) -> AnomalyComponent:
        from telcoanalytics.anomaly.detector import NetworkAnomalyDetector

        comp = cls(topology, _net=NetworkAnomalyDetector.from_state(state["net"], topology))
        comp._rows = [state["rows"]] if len(state["rows"]) else []
        pending = state.get("pending")  # found by updates, not yet settled by an advance
        comp._pending = [pending] if pending is not None and len(pending) else []
        if "policy" in state:  # checkpoints before the stateful paging policy start it afresh
            from telcoanalytics.anomaly.policy import PagingPolicy

            comp.policy = PagingPolicy.from_state(state["policy"])
            comp.data_ms = int(state["data_ms"])
        return comp


def _plain(v):
    """A JSON-able scalar of an anomaly row field (NaN as null)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, float) and v != v:
        return None
    return v


def _json_column(col: np.ndarray) -> list[str] | None:
    """The JSON text of every value of one field (as ``json.dumps`` writes it, NaN as null); None
    for a kind it does not handle."""
    kind = col.dtype.kind
    vals = col.tolist()
    if kind in "iu":
        return list(map(str, vals))
    if kind == "b":
        return ["true" if v else "false" for v in vals]
    if kind == "f":
        out = list(map(repr, vals))
        bad = np.flatnonzero(~np.isfinite(col))
        for i in bad.tolist():
            v = vals[i]
            out[i] = "null" if v != v else ("Infinity" if v > 0 else "-Infinity")
        return out
    if kind in "US":
        memo: dict = {}
        return [memo[v] if v in memo else memo.setdefault(v, json.dumps(_plain(v))) for v in vals]
    return None


def json_lines_of_records(rows: np.ndarray) -> list[str]:
    """One JSON object per row of a structured array (field order kept, NaN as null, bytes as
    text), exactly as ``json.dumps(dict(zip(names, row)))`` writes it, built column by column.

    >>> a = np.array([(1, 0.5, "x"), (2, np.nan, "y")], dtype=[("k", "i8"), ("v", "f8"), ("s", "U4")])
    >>> json_lines_of_records(a)
    ['{"k": 1, "v": 0.5, "s": "x"}', '{"k": 2, "v": null, "s": "y"}']
    """
    names = rows.dtype.names
    if not len(rows):
        return []
    cols = []
    for n in names:
        texts = _json_column(rows[n])
        if texts is None:  # an unusual field type: the general path
            return [json.dumps(dict(zip(names, (_plain(v) for v in r)))) for r in rows.tolist()]
        cols.append(texts)
    template = "{" + ", ".join(json.dumps(n).replace("%", "%%") + ": %s" for n in names) + "}"
    return [template % t for t in zip(*cols)]


def records_from_json_lines(lines: list[str], dtype: np.dtype) -> np.ndarray:
    """The structured array of JSON lines written by :func:`json_lines_of_records` (null as NaN).

    Parsed by pyarrow's JSON reader when it is installed and the fields are numbers, booleans and
    text (the same values: numbers are read correctly rounded either way), else by :mod:`json`."""
    out = np.zeros(len(lines), dtype=dtype)
    if not lines:
        return out
    if _records_from_json_lines_arrow(lines, dtype, out):
        return out
    recs = json.loads("[" + ",".join(lines) + "]")
    nan = float("nan")
    for n in dtype.names:
        vals = [r[n] for r in recs]
        if dtype[n].kind == "f":
            vals = [nan if v is None else v for v in vals]
        out[n] = vals
    return out


_ARROW_KINDS = {"i": "int64", "u": "uint64", "f": "float64", "U": "string", "b": "bool_"}
_ARROW_CHUNK = 16_384  # lines per pyarrow read


def _records_from_json_lines_arrow(lines: list[str], dtype: np.dtype, out: np.ndarray) -> bool:
    """Fill ``out`` from ``lines`` with pyarrow's JSON reader, ``_ARROW_CHUNK`` lines at a time
    (small transient buffers); False when pyarrow is missing, a field has another type, the text
    is not what the reader takes, or a field other than a float is null or missing (the
    :mod:`json` path then decides; ``out`` may then hold part of the records)."""
    if any(dtype[n].kind not in _ARROW_KINDS or dtype[n].shape for n in dtype.names):
        return False
    try:
        import io

        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:  # pragma: no cover - pyarrow is installed in the test environment
        return False
    schema = pa.schema([pa.field(n, getattr(pa, _ARROW_KINDS[dtype[n].kind])()) for n in dtype.names])
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    for lo in range(0, len(lines), _ARROW_CHUNK):
        part = lines[lo : lo + _ARROW_CHUNK]
        try:
            table = pj.read_json(io.BytesIO(("\n".join(part) + "\n").encode()), parse_options=opts)
        except (pa.ArrowInvalid, UnicodeEncodeError):
            return False
        if table.num_rows != len(part):
            return False
        cols = {}
        for n in dtype.names:
            col = table.column(n).combine_chunks()
            kind = dtype[n].kind
            if col.null_count and kind != "f":
                return False
            if kind == "U":  # few distinct texts: convert each once
                enc = col.dictionary_encode()
                cols[n] = np.array(enc.dictionary.to_pylist(), dtype=dtype[n])[enc.indices.to_numpy()]
            else:
                cols[n] = col.to_numpy(zero_copy_only=False)  # null floats become NaN
        for n, v in cols.items():
            out[n][lo : lo + len(part)] = v
    del table, cols
    pa.default_memory_pool().release_unused()  # the reader's buffers back to the system
    return True


def _hhmm(t_ms) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M")


COMPONENTS["anomaly"] = lambda topology, options: AnomalyComponent(topology, detector=options.get("detector"))


# ---- cubes -------------------------------------------------------------------------------------------------
class CubeComponent(_Base):
    """Cubes kept up to date from the CDR stream: the exploration cube (drop rates by region,
    site, equipment class, service, hour of day) and a subscriber cube (distinct subscribers and
    holding-time percentiles by region, service and hour)."""

    def __init__(self, topology, _cubes=None, specs: dict | None = None, coalesce_rows: int = DEFAULT_COALESCE_ROWS):
        from telcoanalytics.cube import CubeSet, CubeSpec, explore_spec

        self.topology = topology
        self._buffer = BatchBuffer(coalesce_rows)  # CDR batches not yet folded (see pipeline.coalesce)
        if _cubes is None:
            if specs is None:
                specs = {
                    "explore": explore_spec(),
                    "subscribers": CubeSpec(
                        dimensions=["region", "service", "hour_of_day"],
                        measures=["count", "distinct:imsi_hash", "p95:duration_ms", "sum:bytes"],
                    ),
                }
            else:
                specs = {k: v if isinstance(v, CubeSpec) else CubeSpec(**_spec_args(v)) for k, v in specs.items()}
            _cubes = CubeSet(specs, topology)
        self._cubes = _cubes
        self.n = 0

    @property
    def cubes(self):
        """The cube set, with every batch received so far folded in."""
        self._fold()
        return self._cubes

    def _fold(self) -> None:
        for b in self._buffer.drain():
            self._cubes.update(b.rows, element_idx=b.element_index)

    def update(self, batch: RoutedBatch) -> list:
        if batch.source == "cdr":
            self.n += len(batch.rows)
            if self._buffer.add(batch):
                self._fold()
        return []

    def topology_changed(self, topology, changes) -> list:
        """Cells keep the parents their events had; later rows roll up by the new structure."""
        self.cubes.set_topology(topology, changes)
        self.topology = topology
        return []

    def report_lines(self):
        from telcoanalytics.cube import explore_summary

        mem = sum(self.cubes[name].nbytes for name in self.cubes)
        lines = [f"== cubes ({len(self.cubes)} cubes over {self.n:,} call records; {mem / 2**20:.1f} MiB)"]
        names = list(self.cubes)
        if "explore" in names:
            lines += ["  " + x for x in explore_summary(self.cubes)]
        for name in names:
            if name not in ("explore", "subscribers"):
                lines.append(f"  cube {name}: {self.cubes[name].nbytes / 2**20:.1f} MiB")
        if "subscribers" not in names:
            return lines
        sub = self.cubes["subscribers"].view().group_by("region", "service").top_k("distinct:imsi_hash", 5)
        lines.append("  most distinct subscribers by region x service (HyperLogLog, ~1.6% error):")
        for r in sub:
            lines.append(
                f"    region {r['region']} {r['service']:<6} subscribers~{r['distinct_imsi_hash']:,.0f} "
                f"calls {r['count']:,} p95 duration {r['p95_duration_ms'] / 1000:.0f} s "
                f"bytes {r['sum_bytes'] / 1e9:.1f} GB"
            )
        return lines

    def to_state(self) -> dict:
        return {"cubes": self.cubes.to_state(), "n": self.n}

    @classmethod
    def from_state(cls, state: dict, topology) -> CubeComponent:
        from telcoanalytics.cube import CubeSet

        comp = cls(topology, _cubes=CubeSet.from_state(state["cubes"]))
        comp.n = int(state["n"])
        return comp

    def finish(self, watermark_ms: int) -> list:
        self._fold()
        return []


def _spec_args(d: dict) -> dict:
    """CubeSpec arguments from a configuration table (cuboids as tuples)."""
    d = dict(d)
    if isinstance(d.get("cuboids"), list):
        d["cuboids"] = [tuple(c) for c in d["cuboids"]]
    return d


COMPONENTS["cube"] = lambda topology, options: CubeComponent(
    topology, specs=options.get("cubes"), coalesce_rows=options.get("coalesce_rows", DEFAULT_COALESCE_ROWS)
)


# ---- analysis (localisation, routing, complaints, statistics over the kept series) --------------------------------
def _analysis(topology, options):
    from telcoanalytics.analysis.component import DEFAULT_RETENTION_MS as DEFAULT_ANALYSIS_RETENTION_MS
    from telcoanalytics.analysis.component import AnalysisComponent

    return AnalysisComponent(
        topology,
        int(options.get("interval_ms", 300_000)),
        options.get("capacity_mbps"),
        coalesce_rows=options.get("coalesce_rows", DEFAULT_COALESCE_ROWS),
        retention_ms=options.get("retention_ms", DEFAULT_ANALYSIS_RETENTION_MS),
    )


COMPONENTS["analysis"] = _analysis
