"""One alert model for SLA violations and anomalies, and the manager that routes it to sinks.

The model follows the Prometheus Alertmanager: an alert is a set of labels (its identity), a
set of annotations (human-readable text), a start and an end. The :class:`AlertManager`
deduplicates alerts by fingerprint, groups them along the topology (one notification for a
site's cells), mutes them by inhibition rules and silences, repeats still-firing groups and
sends resolved notifications. Time is event time (int64 ms UTC) handed in by the caller or an
injectable clock, so replays and tests are deterministic.

Usage in a replay or a service (event time as "now")::

    mgr = AlertManager(topology, sinks=[JsonlSink("alerts.jsonl"),
                                        WebhookSink("http://127.0.0.1:9093", spool_dir="spool/am")])
    for each micro-batch:
        mgr.ingest_sla(sla_monitor.advance(watermark_ms), watermark_ms)
        mgr.ingest_anomalies(anomaly_rows, watermark_ms)
        mgr.tick(watermark_ms)                # due groups -> notifications -> sinks
    mgr.close(end_ms)                         # drain groups, flush and close the sinks
    print("\n".join(mgr.summary_lines()))

References
----------
Prometheus Alertmanager, "Configuration" (route ``group_by``, ``group_wait``,
``group_interval``, ``repeat_interval``, ``inhibit_rules``) and the API v2 OpenAPI spec
(``postableAlert``): https://prometheus.io/docs/alerting/latest/configuration/
"""

from __future__ import annotations

import heapq
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from telcoanalytics.alerts.convert import alerts_from_anomalies, alerts_from_sla_events
from telcoanalytics.alerts.incidents import IncidentBook, flush_incident, incident_notification
from telcoanalytics.alerts.model import (
    ANOMALY_FIELDS,
    ANOMALY_SEVERITY,
    FIRING,
    IDENTITY_EXCLUDED_LABELS,
    RESOLVED,
    SEVERITIES,
    SLA_FIELDS,
    Alert,
    Notification,
    fingerprint_of,
    postable_alert,
    rfc3339_ms,
)
from telcoanalytics.alerts.rules import (
    DEFAULT_INHIBIT_RULES,
    DEFAULT_ROLLUP_RULES,
    InhibitRule,
    Matcher,
    RollupRule,
    Silence,
    rollup_alerts,
)

__all__ = [
    "Alert",
    "Matcher",
    "Silence",
    "InhibitRule",
    "Notification",
    "AlertManager",
    "DEFAULT_INHIBIT_RULES",
    "DEFAULT_ROLLUP_RULES",
    "RollupRule",
    "ANOMALY_SEVERITY",
    "SEVERITIES",
    "IDENTITY_EXCLUDED_LABELS",
    "ANOMALY_FIELDS",
    "SLA_FIELDS",
    "alerts_from_sla_events",
    "alerts_from_anomalies",
    "fingerprint_of",
    "rfc3339_ms",
    "postable_alert",
]


# ---- the manager ----------------------------------------------------------------------------
@dataclass
class _Group:
    key: str
    labels: dict
    fps: set = field(default_factory=set)  # alerts currently in the group
    next_flush_ms: int = 0
    last_notify_ms: int = -1
    notified_firing: set = field(default_factory=set)  # firing set of the last notification


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class AlertManager:
    """Deduplicate, group, inhibit, silence and route alerts to sinks (Alertmanager semantics).

    Parameters
    ----------
    topology : Topology or None
        Its ``levels`` order the scopes for topology inhibition (root first). None means
        ``("region", "site", "element")``.
    sinks : sequence
        Objects with ``submit(list_of_notifications)``, ``flush(timeout_s)`` and ``close()``
        (see :mod:`telcoanalytics.alerts.sinks`).
    group_by : tuple of str
        Labels forming the group key: by default one group per (region, site, alertname), so
        a site's 40 cells with the same alert make one notification.
    group_wait_ms : int
        Delay before a new group's first notification, collecting its other alerts.
    group_interval_ms : int
        Minimum delay between notifications of a group about changes (new or resolved alerts).
    repeat_interval_ms : int
        Re-send a group whose firing set did not change after this long.
    inhibit_rules : sequence of InhibitRule or dict
        Default :data:`DEFAULT_INHIBIT_RULES`: a down/fault node mutes everything below it and
        its own symptoms; a collection gap mutes the "silence" alerts below it.
    rollup_rules : sequence of RollupRule or dict, optional
        Default :data:`DEFAULT_ROLLUP_RULES` when a topology is given (``site_down`` when half
        of a site's elements report a fault, ``region_collection_gap`` when half of a region's
        elements have a collection gap), none without a topology.
    silences : sequence of Silence or dict
    clock : callable () -> int ms, optional
        Used when ``now_ms`` is not passed. Default wall-clock ms; replays pass event time.
    valid_for_ms : int, optional
        ``endsAt`` of firing alerts = notification time + this (default 2 x repeat interval):
        a receiving Alertmanager resolves the alert if we stop refreshing it.
    suppress_classifications : tuple of str
        Alerts with these classifications are kept (and counted) but never notified
        (default "inhibited": the anomaly detector already judged them consequences).
    resolved_retention_ms : int
        How long the fingerprint and end of a resolved alert is remembered, so late duplicates
        of its events do not re-open it (expired silences are kept as long, then dropped).
    receiver : str
    incidents : IncidentBook, optional
        Group by incident instead of ``group_by``: alerts sharing a cause (one site, or under a
        firing region incident) form one group, notified when it opens, escalates, repeats and
        resolves (see :mod:`telcoanalytics.alerts.incidents`).

    Notes
    -----
    Semantics follow Alertmanager's dispatcher and notification pipeline: a group is flushed
    ``group_wait`` after its creation and then every ``group_interval`` while it holds alerts;
    a flush notifies when there is a firing alert not in the last notification, a resolved
    alert that was notified as firing, or ``repeat_interval`` elapsed. Deviations: muting is
    evaluated at flush time, and a resolved alert whose firing was notified is always notified
    as resolved, even when muted by then (operators see every incident closed).

    Examples
    --------
    >>> mgr = AlertManager(None, sinks=[], group_wait_ms=0)
    >>> a = Alert({"alertname": "x", "site": "1"}, starts_at_ms=0)
    >>> mgr.ingest([a, a], now_ms=0)
    >>> [len(n.alerts) for n in mgr.tick(now_ms=0)]
    [1]
    """

    def __init__(
        self,
        topology=None,
        sinks: Sequence = (),
        *,
        group_by: Sequence[str] = ("region", "site", "alertname"),
        group_wait_ms: int = 30_000,
        group_interval_ms: int = 300_000,
        repeat_interval_ms: int = 4 * 3_600_000,
        inhibit_rules: Sequence | None = None,
        rollup_rules: Sequence | None = None,
        silences: Sequence = (),
        clock: Callable[[], int] | None = None,
        valid_for_ms: int | None = None,
        suppress_classifications: Sequence[str] = ("inhibited",),
        resolved_retention_ms: int = 24 * 3_600_000,
        receiver: str = "telcoanalytics",
        incidents: IncidentBook | None = None,
    ):
        self.topology = topology
        self.levels = tuple(topology.levels) if topology is not None else ("region", "site", "element")
        for i, s in enumerate(sinks):
            if not all(callable(getattr(s, m, None)) for m in ("submit", "flush", "close")):
                raise TypeError(
                    f"sinks[{i}] ({type(s).__name__}) lacks submit/flush/close; use a "
                    "sink from telcoanalytics.alerts.sinks or CallbackSink(fn)"
                )
        self.sinks = list(sinks)
        if isinstance(group_by, str):
            group_by = (group_by,)
        self.group_by = tuple(group_by)
        for name, v, lo in (
            ("group_wait_ms", group_wait_ms, 0),
            ("group_interval_ms", group_interval_ms, 1),
            ("repeat_interval_ms", repeat_interval_ms, 1),
            ("resolved_retention_ms", resolved_retention_ms, 0),
        ):
            if int(v) < lo:
                raise ValueError(f"{name} must be >= {lo} ms, got {v}")
        self.group_wait_ms = int(group_wait_ms)
        self.group_interval_ms = int(group_interval_ms)
        self.repeat_interval_ms = int(repeat_interval_ms)
        self.valid_for_ms = int(valid_for_ms) if valid_for_ms is not None else 2 * self.repeat_interval_ms
        self.resolved_retention_ms = int(resolved_retention_ms)
        rules = DEFAULT_INHIBIT_RULES if inhibit_rules is None else inhibit_rules
        self.inhibit_rules = tuple(r if isinstance(r, InhibitRule) else InhibitRule.from_dict(r) for r in rules)
        if rollup_rules is None:
            rollup_rules = DEFAULT_ROLLUP_RULES if topology is not None else ()
        self.rollup_rules = tuple(r if isinstance(r, RollupRule) else RollupRule.from_dict(r) for r in rollup_rules)
        if self.rollup_rules and topology is None:
            raise ValueError(
                "rollup_rules need a topology (to count each node's elements); pass the Topology or rollup_rules=()"
            )
        for r in self.rollup_rules:
            if r.level not in self.levels[:-1]:
                raise ValueError(
                    f"RollupRule {r.name!r} level {r.level!r} must be a topology level "
                    f"above the elements: one of {self.levels[:-1]}"
                )
        # "rule_index|node value" -> (fingerprint, start_ms) of the raised roll-up alert
        self._rollup_active: dict[str, tuple[str, int]] = {}
        self._rollup_dirty = True
        self._node_sizes: dict[str, dict[str, int]] = {}
        self.suppress_classifications = frozenset(suppress_classifications)
        self.receiver = receiver
        self.clock = clock or _wall_ms
        self._alerts: dict[str, Alert] = {}
        self._group_of: dict[str, str] = {}
        self._groups: dict[str, _Group] = {}
        self._heap: list[tuple[int, str]] = []
        self._tombstones: dict[str, int] = {}  # fingerprint -> ends_at_ms of resolved
        self._last_prune_ms = -(2**62)
        self._silences: dict[str, Silence] = {}
        self._silence_seq = 0
        self._inhibit_cache = None
        self.stats: Counter = Counter()
        self.seen_severity: Counter = Counter()
        self.seen_classification: Counter = Counter()
        if incidents is not None and tuple(incidents.levels) != self.levels:
            raise ValueError(f"incidents has levels {incidents.levels}, the manager {self.levels}; build it with these")
        self.incidents = incidents
        for s in silences:
            self.add_silence(s)

    # ---- silences -------------------------------------------------------------------------
    def add_silence(self, silence: Silence | dict) -> str:
        """Add a silence; returns its id (assigned if empty)."""
        if isinstance(silence, dict):
            silence = Silence.from_dict(silence)
        if not silence.id:
            self._silence_seq += 1
            silence = replace(silence, id=f"s{self._silence_seq}")
        self._silences[silence.id] = silence
        return silence.id

    def expire_silence(self, silence_id: str, now_ms: int | None = None) -> None:
        """End a silence now (raises KeyError naming the id if unknown)."""
        if silence_id not in self._silences:
            raise KeyError(f"no silence with id {silence_id!r}; known: {sorted(self._silences)}")
        now = self._now(now_ms)
        s = self._silences[silence_id]
        if now <= s.starts_at_ms:
            del self._silences[silence_id]
        else:
            self._silences[silence_id] = replace(s, ends_at_ms=min(s.ends_at_ms, now))

    @property
    def silences(self) -> list[Silence]:
        return list(self._silences.values())

    # ---- ingestion ------------------------------------------------------------------------
    def _now(self, now_ms):
        return int(self.clock() if now_ms is None else now_ms)

    def _group_key(self, labels: dict) -> tuple[str, dict]:
        gl = {k: labels.get(k, "") for k in self.group_by}
        gl = {k: v for k, v in gl.items() if v}
        return "{" + ",".join(f'{k}="{v}"' for k, v in gl.items()) + "}", gl

    def ingest(self, alerts: Iterable[Alert], now_ms: int | None = None) -> None:
        """Add or update alerts (deduplicated by fingerprint); notifications go out on ``tick``.

        Parameters
        ----------
        alerts : iterable of Alert
        now_ms : int, optional
            Event time of this batch (default ``clock()``); a new group waits ``group_wait_ms``
            from here.

        Raises
        ------
        TypeError
            An item is not an :class:`Alert`.
        """
        now = self._now(now_ms)
        st = self.stats
        for i, a in enumerate(alerts):
            if not isinstance(a, Alert):
                raise TypeError(
                    f"alerts[{i}] is a {type(a).__name__}, expected Alert; convert with "
                    "alerts_from_sla_events / alerts_from_anomalies"
                )
            st["received"] += 1
            fp = a.fingerprint
            cur = self._alerts.get(fp)
            if cur is None:
                tomb = self._tombstones.get(fp)
                if tomb is not None and a.updated_ms <= tomb:
                    # a copy issued before the resolution (a firing issued after it re-opens the
                    # alert even when its violation started earlier, e.g. after late data)
                    st["stale"] += 1
                    continue
                if a.state == RESOLVED:
                    st["resolved_unseen"] += 1  # its firing never reached us: nothing to resolve
                    self._tombstones[fp] = a.ends_at_ms
                    continue
                a = a.copy()
                self._alerts[fp] = a
                self._inhibit_cache = None
                self._rollup_dirty = True
                st["new"] += 1
                self.seen_severity[a.severity] += 1
                self.seen_classification[a.classification] += 1
                if self.incidents is None:
                    key, gl = self._group_key(a.labels)
                else:
                    inc = self.incidents.assign(a, now)
                    key, gl = inc.key, inc.group_labels(self.levels)
                self._group_of[fp] = key
                g = self._groups.get(key)
                if g is None:
                    g = self._groups[key] = _Group(key, gl, next_flush_ms=now + self.group_wait_ms)
                    heapq.heappush(self._heap, (g.next_flush_ms, key))
                g.labels = gl
                g.fps.add(fp)
                if self.incidents is not None and inc.notified_state != FIRING:
                    self._reschedule(g, now + self.group_wait_ms)  # it may be confirmed now: no delay
                continue
            if a.updated_ms < cur.updated_ms:
                st["stale"] += 1
                continue
            if a.state == FIRING and cur.state == RESOLVED:
                if a.updated_ms <= cur.ends_at_ms:
                    st["stale"] += 1
                    continue
                st["refired"] += 1  # resolved and re-opened before being notified
                cur.state, cur.ends_at_ms, cur.starts_at_ms = FIRING, -1, a.starts_at_ms
                self._inhibit_cache = None
                self._rollup_dirty = True
            elif a.state == RESOLVED and cur.state == FIRING:
                st["resolved"] += 1
                cur.state, cur.ends_at_ms = RESOLVED, a.ends_at_ms
                self._inhibit_cache = None
                self._rollup_dirty = True
            else:
                st["deduplicated"] += 1
                if cur.state == FIRING:
                    cur.starts_at_ms = min(cur.starts_at_ms, a.starts_at_ms)
            if a.labels != cur.labels:
                self._inhibit_cache = None
                self._rollup_dirty = True
            cur.labels = dict(a.labels)
            cur.annotations = dict(a.annotations)
            cur.updated_ms = a.updated_ms

    def _reschedule(self, g: _Group, t_ms: int) -> None:
        """Flush group ``g`` at ``t_ms`` if that is earlier than its next flush."""
        if t_ms < g.next_flush_ms:
            g.next_flush_ms = t_ms
            heapq.heappush(self._heap, (t_ms, g.key))

    def ingest_sla(self, events: Iterable, now_ms: int | None = None) -> int:
        """Convert SLA events with this manager's topology and ingest them; returns the number
        of alerts (pending events are skipped, see :func:`alerts_from_sla_events`)."""
        alerts = alerts_from_sla_events(events, self.topology)
        self.ingest(alerts, now_ms)
        return len(alerts)

    def ingest_anomalies(self, rows: np.ndarray, now_ms: int | None = None) -> int:
        """Convert ``ANOMALY_DTYPE`` rows with this manager's topology and ingest them."""
        alerts = alerts_from_anomalies(rows, self.topology)
        self.ingest(alerts, now_ms)
        return len(alerts)

    def set_topology(self, topology) -> None:
        """Use a changed topology (elements added, retired or re-homed) from now on.

        Alerts already held keep their labels; roll-up node sizes are recomputed.

        Raises
        ------
        ValueError
            The new topology has other levels (the alert labels would no longer fit).
        """
        if topology is None or tuple(topology.levels) != self.levels:
            raise ValueError(
                f"set_topology needs a topology with levels {self.levels}, got "
                f"{None if topology is None else tuple(topology.levels)}"
            )
        self.topology = topology
        self._node_sizes.clear()
        self._rollup_dirty = True

    # ---- muting ---------------------------------------------------------------------------
    def _depth(self, a: Alert) -> int:
        scope = a.labels.get("scope", "")
        if scope in self.levels:
            return self.levels.index(scope)
        deepest = -1
        for d, lv in enumerate(self.levels):
            if lv in a.labels:
                deepest = d
        return deepest

    def _build_inhibit_index(self):
        index = []
        firing = [a for a in self._alerts.values() if a.state == FIRING]
        for r in self.inhibit_rules:
            src: dict[tuple, set] = {}
            for a in firing:
                if all(m.matches(a.labels) for m in r.source_matchers):
                    eq = tuple(a.labels.get(k, "") for k in r.equal)
                    if r.relation == "equal":
                        src.setdefault((None, None, eq), set()).add(a.fingerprint)
                    else:
                        d = self._depth(a)
                        if d >= 0:
                            lv = self.levels[d]
                            src.setdefault((lv, a.labels.get(lv, ""), eq), set()).add(a.fingerprint)
            index.append(src)
        self._inhibit_cache = index

    def inhibited_by(self, a: Alert) -> str:
        """Name of the first inhibit rule muting ``a`` ("" when none)."""
        if self._inhibit_cache is None:
            self._build_inhibit_index()
        for r, src in zip(self.inhibit_rules, self._inhibit_cache):
            if not src or not all(m.matches(a.labels) for m in r.target_matchers):
                continue
            eq = tuple(a.labels.get(k, "") for k in r.equal)
            if r.relation == "equal":
                keys = [(None, None, eq)]
            else:
                d = self._depth(a)
                top = d + 1 if r.relation == "descendants_or_self" else d
                keys = [(lv, a.labels.get(lv, ""), eq) for lv in self.levels[: max(top, 0)]]
            for k in keys:
                fps = src.get(k)
                if fps and (len(fps) > 1 or a.fingerprint not in fps):
                    return r.name or "inhibit_rule"
        return ""

    def silenced_by(self, a: Alert, now_ms: int) -> str:
        """Id of the first active silence matching ``a`` ("" when none)."""
        for s in self._silences.values():
            if s.active(now_ms) and s.matches(a.labels):
                return s.id
        return ""

    def muted(self, a: Alert, now_ms: int) -> str:
        """Why ``a`` is muted at ``now_ms``: "suppressed", "silenced", "inhibited" or ""."""
        if a.classification in self.suppress_classifications:
            return "suppressed"
        if self.silenced_by(a, now_ms):
            return "silenced"
        if self.inhibited_by(a):
            return "inhibited"
        return ""

    # ---- topology roll-up ------------------------------------------------------------------
    def _evaluate_rollups(self, now: int) -> None:
        """Raise / resolve the roll-up alerts (see :class:`RollupRule`)."""
        out = rollup_alerts(self, now)
        if out:
            self.stats["rollup_updates"] += len(out)
            self.ingest(out, now)
        self._rollup_dirty = False

    # ---- flushing -------------------------------------------------------------------------
    def tick(self, now_ms: int | None = None, *, drain: bool = False) -> list[Notification]:
        """Flush every group that is due at ``now_ms`` and hand notifications to the sinks.

        Parameters
        ----------
        now_ms : int, optional
            Event time now (default ``clock()``).
        drain : bool
            Flush every group now regardless of its timers (end of a replay).

        Returns
        -------
        list of Notification
            What was sent, in group flush order.
        """
        now = self._now(now_ms)
        if self.rollup_rules and self._rollup_dirty:
            self._evaluate_rollups(now)
        due: list[str] = []
        if drain:
            due = sorted(self._groups, key=lambda k: self._groups[k].next_flush_ms)
            self._heap = []
        else:
            while self._heap and self._heap[0][0] <= now:
                t, key = heapq.heappop(self._heap)
                g = self._groups.get(key)
                if g is not None and g.next_flush_ms == t:
                    due.append(key)
        sent = []
        for key in due:
            n = self._flush(self._groups[key], now)
            if n is not None:
                sent.append(n)
        if drain:
            for key, g in self._groups.items():
                heapq.heappush(self._heap, (g.next_flush_ms, key))
        if drain or now - self._last_prune_ms >= 60_000:
            horizon = now - self.resolved_retention_ms
            self._tombstones = {k: v for k, v in self._tombstones.items() if v >= horizon}
            self._silences = {k: v for k, v in self._silences.items() if v.ends_at_ms >= horizon}
            self._last_prune_ms = now
        if self.incidents is not None:
            sent += [incident_notification(self, i, "resolve", (), now) for i in self.incidents.expire(now)]
        if sent:
            self.stats["notifications"] += len(sent)
            for s in self.sinks:
                s.submit(sent)
        return sent

    def _flush(self, g: _Group, now: int) -> Notification | None:
        if self.incidents is not None:
            return flush_incident(self, g, now)
        st = self.stats
        firing, resolved, gone = [], [], []
        for fp in sorted(g.fps, key=lambda f: (self._alerts[f].starts_at_ms, f)):
            a = self._alerts[fp]
            if a.state == RESOLVED:
                gone.append(fp)
                if fp in g.notified_firing:
                    resolved.append(a)
                else:
                    st["resolved_before_notify"] += 1
                continue
            why = self.muted(a, now)
            if why:
                st[f"muted_{why}"] += 1
            else:
                firing.append(a)
        fire_fps = {a.fingerprint for a in firing}
        notify = (
            bool(resolved)
            or bool(fire_fps - g.notified_firing)
            or (bool(firing) and g.last_notify_ms >= 0 and now - g.last_notify_ms >= self.repeat_interval_ms)
        )
        n = None
        if notify:
            if firing and not (fire_fps - g.notified_firing) and not resolved:
                st["repeats"] += 1
            n = Notification(
                g.key,
                dict(g.labels),
                tuple(a.copy() for a in firing + resolved),
                now,
                now + self.valid_for_ms,
                self.receiver,
            )
            g.last_notify_ms = now
            # muted alerts that were announced stay in the set: their resolution is announced
            g.notified_firing = fire_fps | {
                fp for fp in g.notified_firing if fp in g.fps and self._alerts[fp].state == FIRING
            }
            st["alerts_notified_firing"] += len(firing)
            st["alerts_notified_resolved"] += len(resolved)
        self._drop_gone(g, gone, now)
        return n

    def _drop_gone(self, g: _Group, gone: list, now: int) -> None:
        """Remove the resolved alerts of a flushed group; schedule its next flush or drop it."""
        for fp in gone:
            a = self._alerts.pop(fp)
            g.fps.discard(fp)
            g.notified_firing.discard(fp)
            del self._group_of[fp]
            self._tombstones[fp] = a.ends_at_ms  # resolved alerts are no inhibition sources
        if g.fps:
            g.next_flush_ms = now + self.group_interval_ms
            heapq.heappush(self._heap, (g.next_flush_ms, g.key))
        else:
            del self._groups[g.key]

    def close(self, now_ms: int | None = None, *, drain: bool = True, flush_timeout_s: float | None = 10.0) -> bool:
        """Flush pending groups (``drain``), then flush and close every sink.

        Returns True when every sink confirmed delivery within ``flush_timeout_s``.
        """
        if drain:
            self.tick(now_ms, drain=True)
        if self.incidents is not None:
            now = self._now(now_ms)
            done = [incident_notification(self, i, "resolve", (), now) for i in self.incidents.finish(now)]
            if done:
                self.stats["notifications"] += len(done)
                for s in self.sinks:
                    s.submit(done)
        ok = True
        for s in self.sinks:
            ok = bool(s.flush(flush_timeout_s)) and ok
            s.close()
        return ok

    # ---- reporting ------------------------------------------------------------------------
    @property
    def active_alerts(self) -> list[Alert]:
        return list(self._alerts.values())

    def counts(self, now_ms: int | None = None) -> dict:
        """Counts of current alerts by state and mute reason, and of all alerts seen by
        severity and classification, plus the event statistics."""
        now = self._now(now_ms)
        cur = Counter()
        for a in self._alerts.values():
            cur[a.state] += 1
            if a.state == FIRING:
                why = self.muted(a, now)
                cur[why or "notifiable"] += 1
        return {
            "current": dict(cur),
            "severity": dict(self.seen_severity),
            "classification": dict(self.seen_classification),
            "stats": dict(self.stats),
            "groups": len(self._groups),
            "silences": len(self._silences),
        }

    def summary_lines(self, now_ms: int | None = None) -> list[str]:
        """Short printable lines for the replay: counts by state, severity, classification."""
        c = self.counts(now_ms)
        s = c["stats"]

        def kv(d):
            return ", ".join(f"{k or '-'}={v}" for k, v in sorted(d.items())) or "none"

        lines = [
            f"alerts: {s.get('new', 0)} opened, {s.get('resolved', 0)} resolved, "
            f"{s.get('deduplicated', 0)} duplicates merged, {s.get('stale', 0)} stale, "
            f"{s.get('resolved_unseen', 0)} resolutions of unseen alerts",
            f"now: {kv(c['current'])} in {c['groups']} groups, {c['silences']} silences",
            f"by severity: {kv(c['severity'])}",
            f"by classification: {kv(c['classification'])}",
            f"notifications: {s.get('notifications', 0)} ({s.get('alerts_notified_firing', 0)} firing, "
            f"{s.get('alerts_notified_resolved', 0)} resolved alert entries, {s.get('repeats', 0)} repeats); "
            f"muted at flush: silenced={s.get('muted_silenced', 0)}, "
            f"inhibited={s.get('muted_inhibited', 0)}, suppressed={s.get('muted_suppressed', 0)}",
        ]
        for i, sink in enumerate(self.sinks):
            sst = getattr(sink, "stats", None)
            if sst:
                lines.append(f"sink {i} {getattr(sink, 'name', type(sink).__name__)}: {kv(dict(sst))}")
        if self.incidents is not None:
            lines += self.incidents.summary_lines()
        return lines

    # ---- checkpoint -----------------------------------------------------------------------
    def to_state(self) -> dict:
        """Checkpoint as plain scalars/strings (the alert store as a JSON string)."""
        groups = [
            {
                "key": g.key,
                "labels": g.labels,
                "fps": sorted(g.fps),
                "next_flush_ms": g.next_flush_ms,
                "last_notify_ms": g.last_notify_ms,
                "notified_firing": sorted(g.notified_firing),
            }
            for g in self._groups.values()
        ]
        body = {
            "alerts": [a.to_dict() for a in self._alerts.values()],
            "groups": groups,
            "tombstones": self._tombstones,
            "silences": [s.to_dict() for s in self._silences.values()],
            "silence_seq": self._silence_seq,
            "stats": dict(self.stats),
            "rollup_active": self._rollup_active,
            "seen_severity": dict(self.seen_severity),
            "seen_classification": dict(self.seen_classification),
            "incidents": self.incidents.to_state() if self.incidents is not None else None,
            "config": {
                "levels": list(self.levels),
                "group_by": list(self.group_by),
                "group_wait_ms": self.group_wait_ms,
                "group_interval_ms": self.group_interval_ms,
                "repeat_interval_ms": self.repeat_interval_ms,
                "valid_for_ms": self.valid_for_ms,
                "resolved_retention_ms": self.resolved_retention_ms,
                "suppress_classifications": sorted(self.suppress_classifications),
                "inhibit_rules": [r.to_dict() for r in self.inhibit_rules],
                "rollup_rules": [r.to_dict() for r in self.rollup_rules],
                "receiver": self.receiver,
            },
        }
        return {"version": 1, "state_json": json.dumps(body, sort_keys=True)}

    @classmethod
    def from_state(
        cls, d: dict, topology=None, sinks: Sequence = (), clock: Callable[[], int] | None = None
    ) -> AlertManager:
        """Restore a manager saved by :meth:`to_state` (sinks and clock are not state)."""
        if d.get("version") != 1 or "state_json" not in d:
            raise ValueError(
                f"not an AlertManager state (version {d.get('version')!r}); "
                "pass the dict returned by AlertManager.to_state()"
            )
        b = json.loads(d["state_json"])
        c = b["config"]
        rollups = c["rollup_rules"]
        if rollups and topology is None:
            raise ValueError("this AlertManager state has rollup_rules: pass the topology to from_state")
        mgr = cls(
            topology,
            sinks,
            group_by=c["group_by"],
            group_wait_ms=c["group_wait_ms"],
            group_interval_ms=c["group_interval_ms"],
            repeat_interval_ms=c["repeat_interval_ms"],
            inhibit_rules=c["inhibit_rules"],
            rollup_rules=rollups,
            clock=clock,
            valid_for_ms=c["valid_for_ms"],
            suppress_classifications=c["suppress_classifications"],
            resolved_retention_ms=c["resolved_retention_ms"],
            receiver=c["receiver"],
            incidents=IncidentBook.from_state(b["incidents"]) if b.get("incidents") else None,
        )
        if topology is None:
            mgr.levels = tuple(c["levels"])
        mgr._rollup_active = {k: (v[0], int(v[1])) for k, v in b["rollup_active"].items()}
        for ad in b["alerts"]:
            a = Alert.from_dict(ad)
            mgr._alerts[a.fingerprint] = a
        for gd in b["groups"]:
            g = _Group(
                gd["key"],
                gd["labels"],
                set(gd["fps"]),
                gd["next_flush_ms"],
                gd["last_notify_ms"],
                set(gd["notified_firing"]),
            )
            mgr._groups[g.key] = g
            for fp in g.fps:
                mgr._group_of[fp] = g.key
            heapq.heappush(mgr._heap, (g.next_flush_ms, g.key))
        mgr._tombstones = {k: int(v) for k, v in b["tombstones"].items()}
        for sd in b["silences"]:
            s = Silence.from_dict(sd)
            mgr._silences[s.id] = s
        mgr._silence_seq = b["silence_seq"]
        mgr.stats = Counter(b["stats"])
        mgr.seen_severity = Counter(b["seen_severity"])
        mgr.seen_classification = Counter(b["seen_classification"])
        if mgr.incidents is not None:  # members are the manager's live alerts again
            for fp, a in mgr._alerts.items():
                inc = mgr.incidents.incident(mgr.incidents._of.get(fp, ""))
                if inc is not None:
                    inc.members[fp] = a
        return mgr
