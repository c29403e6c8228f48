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

import hashlib
import heapq
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

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
    "alerts_from_sla_events",
    "alerts_from_anomalies",
    "fingerprint_of",
    "rfc3339_ms",
    "postable_alert",
]

FIRING, RESOLVED = "firing", "resolved"
STATES = (FIRING, RESOLVED)
SEVERITIES = ("page", "critical", "major", "ticket", "minor", "warning", "info")
SLA_STATES = ("pending", FIRING, RESOLVED)
# Labels that describe an alert but do not identify it: an escalation from "minor" to "major",
# or an anomaly re-classified from "change" to "fault", updates the same alert.
IDENTITY_EXCLUDED_LABELS = frozenset({"severity", "classification"})
# Severity of an anomaly alert by its classification (unknown classes get "warning").
ANOMALY_SEVERITY = {
    "fault": "critical",
    "silence": "major",
    "collection_gap": "warning",
    "crowd": "warning",
    "surge": "minor",
    "change": "minor",
    "inhibited": "info",
}
ANOMALY_FIELDS = (
    "element_id",
    "metric",
    "start_ms",
    "end_ms",
    "peak_score",
    "direction",
    "classification",
    "baseline",
    "threshold",
    "value",
)
SLA_FIELDS = (
    "rule",
    "kpi",
    "severity",
    "state",
    "scope_level",
    "scope_id",
    "service",
    "t_ms",
    "start_ms",
    "end_ms",
    "value",
    "threshold",
    "worst_value",
    "summary",
)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GOOD_NAMES = frozenset(
    {
        "alertname",
        "source",
        "scope",
        "region",
        "site",
        "element",
        "service",
        "kpi",
        "rule",
        "metric",
        "severity",
        "classification",
    }
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_ms(t_ms: int) -> str:
    """Format event time (int64 ms UTC) as RFC 3339 with millisecond precision.

    Examples
    --------
    >>> rfc3339_ms(1_700_000_000_123)
    '2023-11-14T22:13:20.123Z'
    """
    t_ms = int(t_ms)
    s, ms = divmod(t_ms, 1000)
    if s < 0 or s > 253_402_300_799:  # outside years 1970..9999: the slow, general path
        d = _EPOCH + timedelta(milliseconds=t_ms)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ms:03d}Z"


def fingerprint_of(labels: dict[str, str]) -> str:
    """Stable 64-bit fingerprint (16 hex digits) of an alert's identifying labels.

    Parameters
    ----------
    labels : dict str -> str
        All labels; those in ``IDENTITY_EXCLUDED_LABELS`` and empty values are ignored.

    Returns
    -------
    str
        Hex digest of BLAKE2b-64 over the sorted ``name \\xff value \\xff`` pairs.

    Notes
    -----
    Like Alertmanager's ``model.LabelSet.Fingerprint`` the hash runs over the label pairs sorted
    by name, separated by the byte 0xff that cannot occur in UTF-8, so it does not depend on
    insertion order, process or platform (unlike Python's ``hash``).

    Examples
    --------
    >>> fingerprint_of({"b": "2", "a": "1"}) == fingerprint_of({"a": "1", "b": "2", "severity": "x"})
    True
    """
    parts = []
    for k in sorted(labels):
        v = labels[k]
        if k in IDENTITY_EXCLUDED_LABELS or v == "":
            continue
        parts.append(k.encode())
        parts.append(v.encode())
    parts.append(b"")
    h = hashlib.blake2b(b"\xff".join(parts), digest_size=8)
    return h.hexdigest()


def postable_alert(
    labels: dict,
    annotations: dict,
    state: str,
    starts_at_ms: int,
    ends_at_ms: int,
    generator_url: str = "",
    valid_until_ms: int | None = None,
) -> dict:
    """Alertmanager API v2 ``postableAlert`` from alert fields (see :meth:`Alert.to_v2`)."""
    d = {"labels": dict(labels), "annotations": dict(annotations), "startsAt": rfc3339_ms(starts_at_ms)}
    if state == RESOLVED:
        d["endsAt"] = rfc3339_ms(ends_at_ms)
    elif valid_until_ms is not None:
        d["endsAt"] = rfc3339_ms(valid_until_ms)
    d["generatorURL"] = generator_url
    return d


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.4g}"


# ---- the alert model -----------------------------------------------------------------------
@dataclass(slots=True)
class Alert:
    """One alert: identity labels, human-readable annotations and a lifecycle.

    Parameters
    ----------
    labels : dict str -> str
        Must contain ``alertname``. Empty values mean "absent" (as in Alertmanager) and are
        removed. Usual labels: alertname, source (sla|anomaly), scope, one per topology level
        (region, site, element), service, kpi, rule, metric, severity, classification.
    annotations : dict str -> str
        ``summary`` (one sentence with value and threshold) and ``description``.
    starts_at_ms : int
        Event time the condition began.
    ends_at_ms : int
        Event time it ended, -1 while firing.
    state : {"firing", "resolved"}
    updated_ms : int
        Event time of the last update (producer transition time); -1 means ``starts_at_ms``.
    generator_url : str
        Link back to the producer, sent as ``generatorURL``.
    fingerprint : str
        Computed from the identifying labels when empty (see :func:`fingerprint_of`).

    Raises
    ------
    ValueError
        Missing alertname, bad label name, non-string value, unknown state, or a resolved alert
        without an end time.
    """

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at_ms: int = 0
    ends_at_ms: int = -1
    state: str = FIRING
    updated_ms: int = -1
    generator_url: str = ""
    fingerprint: str = ""

    def __post_init__(self):
        if not isinstance(self.labels, dict) or not self.labels.get("alertname"):
            raise ValueError(
                f"Alert labels need a non-empty 'alertname', got {self.labels!r}; "
                "pass labels={'alertname': 'MyRule', ...}"
            )
        clean = {}
        for k, v in self.labels.items():
            if k not in _GOOD_NAMES and (not isinstance(k, str) or not _LABEL_NAME.match(k)):
                raise ValueError(
                    f"Alert label name {k!r} is invalid; label names must match "
                    "[a-zA-Z_][a-zA-Z0-9_]* (Alertmanager rule)"
                )
            if not isinstance(v, str):
                raise ValueError(
                    f"Alert label {k!r} has value {v!r} of type {type(v).__name__}; "
                    "label values must be str, convert with str()"
                )
            if v != "":
                clean[k] = v
        self.labels = clean
        if self.state not in STATES:
            raise ValueError(f"Alert state {self.state!r} is unknown; expected one of {STATES}")
        self.starts_at_ms = int(self.starts_at_ms)
        self.ends_at_ms = int(self.ends_at_ms)
        if self.state == RESOLVED and self.ends_at_ms < 0:
            raise ValueError(
                f"resolved alert {self.labels['alertname']!r} needs ends_at_ms >= 0, "
                f"got {self.ends_at_ms}; set it to the event time of the recovery"
            )
        if self.updated_ms < 0:
            self.updated_ms = self.ends_at_ms if self.state == RESOLVED else self.starts_at_ms
        self.updated_ms = int(self.updated_ms)
        if not self.fingerprint:
            self.fingerprint = fingerprint_of(self.labels)

    def copy(self) -> Alert:
        """An independent copy (labels and annotations copied), without re-validation."""
        c = object.__new__(Alert)
        c.labels, c.annotations = dict(self.labels), dict(self.annotations)
        c.starts_at_ms, c.ends_at_ms, c.state = self.starts_at_ms, self.ends_at_ms, self.state
        c.updated_ms, c.generator_url, c.fingerprint = self.updated_ms, self.generator_url, self.fingerprint
        return c

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def classification(self) -> str:
        return self.labels.get("classification", "")

    def to_v2(self, valid_until_ms: int | None = None) -> dict:
        """The Alertmanager API v2 ``postableAlert`` object.

        ``endsAt`` is the end time of a resolved alert; for a firing alert it is
        ``valid_until_ms`` (as Prometheus does: the receiver resolves the alert by itself if it
        is not refreshed by then) and is omitted when that is None.
        """
        return postable_alert(
            self.labels,
            self.annotations,
            self.state,
            self.starts_at_ms,
            self.ends_at_ms,
            self.generator_url,
            valid_until_ms,
        )

    def to_dict(self) -> dict:
        """Plain JSON-able dict that :meth:`from_dict` reads back exactly."""
        return {
            "fingerprint": self.fingerprint,
            "status": self.state,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at_ms": self.starts_at_ms,
            "ends_at_ms": self.ends_at_ms,
            "updated_ms": self.updated_ms,
            "generator_url": self.generator_url,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Alert:
        return cls(
            labels=dict(d["labels"]),
            annotations=dict(d.get("annotations", {})),
            starts_at_ms=d["starts_at_ms"],
            ends_at_ms=d.get("ends_at_ms", -1),
            state=d.get("status", FIRING),
            updated_ms=d.get("updated_ms", -1),
            generator_url=d.get("generator_url", ""),
            fingerprint=d.get("fingerprint", ""),
        )


# ---- matchers, silences, inhibition rules ---------------------------------------------------
_MATCHER_RE = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    """A label matcher as in Alertmanager: ``name op value`` with op in ``= != =~ !~``.

    Regular expressions are fully anchored; a missing label matches as the empty string.

    Examples
    --------
    >>> Matcher.parse("severity=~critical|major").matches({"severity": "major"})
    True
    >>> Matcher.parse("site!=7").matches({})
    True
    """

    name: str
    op: str
    value: str

    def __post_init__(self):
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"Matcher op {self.op!r} is unknown; use one of = != =~ !~")
        if not _LABEL_NAME.match(self.name):
            raise ValueError(f"Matcher label name {self.name!r} is invalid; it must match [a-zA-Z_][a-zA-Z0-9_]*")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_rx", re.compile(self.value))
            except re.error as e:
                raise ValueError(
                    f"Matcher {self.name}{self.op}{self.value!r} has a bad regular expression: {e}"
                ) from None

    @classmethod
    def parse(cls, text: str | Matcher | Sequence) -> Matcher:
        """From ``"name=~value"``, a ``(name, op, value)`` triple or a Matcher."""
        if isinstance(text, Matcher):
            return text
        if isinstance(text, (tuple, list)) and len(text) == 3:
            return cls(*map(str, text))
        m = _MATCHER_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(
                f"cannot parse matcher {text!r}; write 'name=value', 'name!=value', 'name=~regex' or 'name!~regex'"
            )
        val = m.group(3)
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        return cls(m.group(1), m.group(2), val)

    def matches(self, labels: dict[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = self._rx.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def _matchers(name: str, items) -> tuple[Matcher, ...]:
    if isinstance(items, (str, Matcher)):
        items = [items]
    try:
        return tuple(Matcher.parse(m) for m in items)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


@dataclass(frozen=True)
class Silence:
    """Mute alerts whose labels match all ``matchers`` while ``starts_at_ms <= now < ends_at_ms``.

    Parameters
    ----------
    matchers : sequence of Matcher or str
        At least one matcher.
    starts_at_ms, ends_at_ms : int
        Event-time interval, ``ends_at_ms > starts_at_ms``.
    created_by, comment : str
        Who and why (kept for the audit trail).
    id : str
        Assigned by :meth:`AlertManager.add_silence` when empty.
    """

    matchers: tuple
    starts_at_ms: int
    ends_at_ms: int
    created_by: str = ""
    comment: str = ""
    id: str = ""

    def __post_init__(self):
        ms = _matchers("Silence matchers", self.matchers)
        if not ms:
            raise ValueError("a Silence needs at least one matcher, e.g. ['site=17']")
        object.__setattr__(self, "matchers", ms)
        if int(self.ends_at_ms) <= int(self.starts_at_ms):
            raise ValueError(f"Silence ends_at_ms ({self.ends_at_ms}) must be after starts_at_ms ({self.starts_at_ms})")

    def active(self, now_ms: int) -> bool:
        return self.starts_at_ms <= now_ms < self.ends_at_ms

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at_ms": int(self.starts_at_ms),
            "ends_at_ms": int(self.ends_at_ms),
            "created_by": self.created_by,
            "comment": self.comment,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Silence:
        return cls(
            matchers=tuple(d["matchers"]),
            starts_at_ms=d["starts_at_ms"],
            ends_at_ms=d["ends_at_ms"],
            created_by=d.get("created_by", ""),
            comment=d.get("comment", ""),
            id=d.get("id", ""),
        )


RELATIONS = ("equal", "descendants", "descendants_or_self")


@dataclass(frozen=True)
class InhibitRule:
    """Mute target alerts while a matching source alert fires (rules are data).

    Parameters
    ----------
    source_matchers, target_matchers : sequence of Matcher or str
        Which alerts inhibit and which are inhibited (all matchers must match; empty = any).
    equal : sequence of str
        Labels that must have equal values on source and target (Alertmanager ``equal``).
    relation : {"equal", "descendants", "descendants_or_self"}
        ``equal``: only the ``equal`` labels relate source and target (plain Alertmanager).
        ``descendants``: the target must lie strictly below the source's scope in the
        topology (a site alert inhibits the site's cells). ``descendants_or_self`` also
        inhibits alerts at the source's own scope node (an element's other alerts).
    name : str
        For statistics and messages.

    Notes
    -----
    An alert never inhibits itself. A muted alert still counts as a source (as in Alertmanager).
    """

    source_matchers: tuple = ()
    target_matchers: tuple = ()
    equal: tuple = ()
    relation: str = "equal"
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "source_matchers", _matchers("InhibitRule source_matchers", self.source_matchers))
        object.__setattr__(self, "target_matchers", _matchers("InhibitRule target_matchers", self.target_matchers))
        eq = (self.equal,) if isinstance(self.equal, str) else tuple(self.equal)
        object.__setattr__(self, "equal", eq)
        if self.relation not in RELATIONS:
            raise ValueError(
                f"InhibitRule {self.name!r} relation {self.relation!r} is unknown; expected one of {RELATIONS}"
            )
        if not self.source_matchers:
            raise ValueError(
                f"InhibitRule {self.name!r} needs source_matchers, otherwise every alert would inhibit its peers"
            )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "source_matchers": [str(m) for m in self.source_matchers],
            "target_matchers": [str(m) for m in self.target_matchers],
            "equal": list(self.equal),
            "relation": self.relation,
        }

    @classmethod
    def from_dict(cls, d: dict) -> InhibitRule:
        """Build from a dict (e.g. parsed JSON/TOML); unknown keys are an error."""
        if not isinstance(d, dict):
            raise ValueError(f"an inhibit rule must be a dict, got {type(d).__name__}")
        extra = set(d) - {"name", "source_matchers", "target_matchers", "equal", "relation"}
        if extra:
            raise ValueError(
                f"inhibit rule {d.get('name', '')!r} has unknown keys {sorted(extra)}; "
                "allowed: name, source_matchers, target_matchers, equal, relation"
            )
        return cls(
            source_matchers=d.get("source_matchers", ()),
            target_matchers=d.get("target_matchers", ()),
            equal=d.get("equal", ()),
            relation=d.get("relation", "equal"),
            name=d.get("name", ""),
        )


_DOWN = "fault|down|failure|outage"
DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    # a site (or any non-leaf node) that is down mutes every alert below it
    InhibitRule(source_matchers=(f"classification=~{_DOWN}",), relation="descendants", name="down_mutes_descendants"),
    # an SLA rule named for an outage (e.g. "site_down", "cell_failure") does the same
    InhibitRule(
        source_matchers=(f"alertname=~(?i).*({_DOWN}).*",), relation="descendants", name="down_rule_mutes_descendants"
    ),
    # a down element mutes its own symptoms (throughput silence, ...) but not other faults
    InhibitRule(
        source_matchers=(f"classification=~{_DOWN}",),
        target_matchers=(f"classification!~{_DOWN}",),
        relation="descendants_or_self",
        name="down_mutes_own_symptoms",
    ),
    # a collection gap (region-wide or smaller) explains the "silence" below it
    InhibitRule(
        source_matchers=("classification=collection_gap",),
        target_matchers=("classification=silence",),
        relation="descendants_or_self",
        name="collection_gap_mutes_silence",
    ),
)


@dataclass(frozen=True)
class RollupRule:
    """Raise one alert for a topology node when enough of its elements have matching alerts.

    This turns "38 of a site's 40 cells report a fault" into one ``site_down`` alert at site
    scope, which the inhibition rules then use to mute the cells (one alert for the operator
    instead of 40), and "most elements of a region stopped reporting" into one region-wide
    collection-gap alert that mutes the region's silence alerts.

    Parameters
    ----------
    level : str
        Topology level of the raised alert (e.g. "site", "region").
    source_matchers : sequence of Matcher or str
        Which firing element-scope alerts count (all must match).
    alertname, classification, severity : str
        Labels of the raised alert (``source`` is "rollup", ``rule`` the rule name).
    min_fraction : float
        Fraction of the node's elements (active ones when the topology tracks it) that must
        have a counted alert, in (0, 1].
    min_count : int
        And at least this many elements.
    name : str

    Notes
    -----
    Evaluated at every :meth:`AlertManager.tick` (after a change) before the flushes; the raised
    alert starts at the tick the condition first holds, is updated when its member count
    changes, and resolves at the first tick the condition fails.
    """

    level: str
    source_matchers: tuple
    alertname: str
    classification: str
    severity: str = "critical"
    min_fraction: float = 0.5
    min_count: int = 2
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "source_matchers", _matchers("RollupRule source_matchers", self.source_matchers))
        if not self.source_matchers:
            raise ValueError(f"RollupRule {self.name!r} needs source_matchers")
        if not (0 < float(self.min_fraction) <= 1):
            raise ValueError(f"RollupRule {self.name!r} min_fraction must be in (0, 1], got {self.min_fraction}")
        if int(self.min_count) < 1:
            raise ValueError(f"RollupRule {self.name!r} min_count must be >= 1, got {self.min_count}")
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"RollupRule {self.name!r} severity {self.severity!r} is unknown; expected one of {SEVERITIES}"
            )
        if not self.alertname or not self.level:
            raise ValueError(f"RollupRule {self.name!r} needs an alertname and a level")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "level": self.level,
            "alertname": self.alertname,
            "classification": self.classification,
            "severity": self.severity,
            "source_matchers": [str(m) for m in self.source_matchers],
            "min_fraction": float(self.min_fraction),
            "min_count": int(self.min_count),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RollupRule:
        """Build from a dict (e.g. parsed JSON/TOML); unknown keys are an error."""
        if not isinstance(d, dict):
            raise ValueError(f"a rollup rule must be a dict, got {type(d).__name__}")
        allowed = {
            "name",
            "level",
            "alertname",
            "classification",
            "severity",
            "source_matchers",
            "min_fraction",
            "min_count",
        }
        extra = set(d) - allowed
        if extra:
            raise ValueError(
                f"rollup rule {d.get('name', '')!r} has unknown keys {sorted(extra)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        missing = {"level", "alertname", "classification", "source_matchers"} - set(d)
        if missing:
            raise ValueError(f"rollup rule {d.get('name', '')!r} lacks {sorted(missing)}")
        return cls(**d)


DEFAULT_ROLLUP_RULES: tuple[RollupRule, ...] = (
    RollupRule(
        "site",
        (f"classification=~{_DOWN}",),
        alertname="site_down",
        classification="down",
        severity="critical",
        min_fraction=0.5,
        min_count=2,
        name="site_down",
    ),
    RollupRule(
        "region",
        ("classification=collection_gap",),
        alertname="region_collection_gap",
        classification="collection_gap",
        severity="warning",
        min_fraction=0.5,
        min_count=2,
        name="region_collection_gap",
    ),
)


# ---- notifications --------------------------------------------------------------------------
@dataclass(frozen=True)
class Notification:
    """One message for one group: its alerts (snapshots) at flush time ``t_ms``.

    ``valid_until_ms`` is the ``endsAt`` sent for firing alerts (see :meth:`Alert.to_v2`).
    """

    group_key: str
    group_labels: dict
    alerts: tuple
    t_ms: int
    valid_until_ms: int
    receiver: str = "telcoanalytics"

    @property
    def status(self) -> str:
        return FIRING if any(a.state == FIRING for a in self.alerts) else RESOLVED

    def v2_alerts(self) -> list[dict]:
        """Body of ``POST /api/v2/alerts``: a list of postable alerts."""
        return [a.to_v2(self.valid_until_ms) for a in self.alerts]

    def to_dict(self) -> dict:
        """Alertmanager webhook (version 4) shaped dict with exact ms fields added."""
        common = dict(self.alerts[0].labels) if self.alerts else {}
        for a in self.alerts[1:]:
            common = {k: v for k, v in common.items() if a.labels.get(k) == v}
        return {
            "version": "4",
            "groupKey": self.group_key,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": dict(self.group_labels),
            "commonLabels": common,
            "t_ms": int(self.t_ms),
            "valid_until_ms": int(self.valid_until_ms),
            "alerts": [a.to_dict() for a in self.alerts],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Notification:
        return cls(
            group_key=d["groupKey"],
            group_labels=dict(d["groupLabels"]),
            alerts=tuple(Alert.from_dict(a) for a in d["alerts"]),
            t_ms=d["t_ms"],
            valid_until_ms=d["valid_until_ms"],
            receiver=d.get("receiver", "telcoanalytics"),
        )


# ---- converters -----------------------------------------------------------------------------
class _Labeler:
    """Maps (scope level, external id) to the label dict of the node and all its ancestors."""

    def __init__(self, topology):
        self.topology = topology
        self.levels = tuple(topology.levels) if topology is not None else ()
        self._lookup: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _dense(self, level: str, ids: np.ndarray) -> np.ndarray:
        topo = self.topology
        if level == topo.element_level:
            return topo.index_of(ids)
        if level not in self._lookup:
            node_ids = topo.ids[level]
            order = np.argsort(node_ids, kind="stable")
            self._lookup[level] = (node_ids[order], order.astype(np.int64))
        sorted_ids, order = self._lookup[level]
        if len(sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[pos] == ids, order[pos], -1)

    def labels(self, level: str, ids: np.ndarray) -> tuple[list[dict], np.ndarray]:
        """Label dicts per id and a bool mask of ids found in the topology."""
        ids = np.asarray(ids, dtype=np.int64)
        out = [{"scope": level, level: str(int(i))} for i in ids]
        if level not in self.levels:
            return out, np.zeros(len(ids), dtype=bool)
        dense = self._dense(level, ids)
        found = dense >= 0
        topo = self.topology
        depth = self.levels.index(level)
        if depth and found.any():
            # ancestors of a level-L node: go through any element below it is not possible for
            # childless nodes, so walk the parent arrays upward from this level
            node = np.where(found, dense, 0)
            for up in range(depth, 0, -1):
                node = topo.parent[self.levels[up]][node]
                name = self.levels[up - 1]
                vals = topo.ids[name][node].tolist()
                for j in np.flatnonzero(found).tolist():
                    out[j][name] = str(vals[j])
        return out, found


def _sla_fields(ev, i: int) -> dict:
    """The SLA_FIELDS of one event (object or dict) as a dict; ValueError naming a missing one."""
    if isinstance(ev, dict):
        d = ev
    else:
        try:
            d = {name: getattr(ev, name) for name in SLA_FIELDS}
        except AttributeError:
            d = {name: getattr(ev, name) for name in SLA_FIELDS if hasattr(ev, name)}
    if not all(name in d for name in SLA_FIELDS):
        name = next(n for n in SLA_FIELDS if n not in d)
        raise ValueError(
            f"SLA event #{i} ({type(ev).__name__}) has no field {name!r}; expected the fields {SLA_FIELDS}"
        )
    return d


def alerts_from_sla_events(
    events: Iterable, topology, *, include_pending: bool = False, generator_url: str = ""
) -> list[Alert]:
    """Convert SLA lifecycle events (``telcoanalytics.sla.sla.SlaEvent`` or dicts) into alerts.

    Parameters
    ----------
    events : iterable of SlaEvent-like objects or dicts
        Fields rule, kpi, severity, state, scope_level, scope_id, service, t_ms, start_ms,
        end_ms, value, threshold, worst_value, summary.
    topology : Topology or None
        Fills the ancestor labels (e.g. region of a site). Scopes whose level is not a topology
        level (e.g. "network") or whose id is unknown keep only their own label and get the
        annotation ``topology`` saying so (they are still alerted, never dropped).
    include_pending : bool
        ``pending`` events are not alerts (Prometheus sends only firing ones); they are skipped
        unless this is True, in which case they raise (a pending alert has no meaning here).
    generator_url : str
        ``generatorURL`` of the alerts.

    Returns
    -------
    list of Alert
        One per firing or resolved event, in input order. alertname is the rule name; the
        fingerprint covers rule, kpi, scope, service (severity may change without a new alert).

    Raises
    ------
    ValueError
        Missing field, unknown state or severity, or a pending event with include_pending.
    """
    labeler = _Labeler(topology)
    out: list[Alert] = []
    keep: list[dict] = []
    for i, ev in enumerate(events):
        d = _sla_fields(ev, i)
        state = d["state"]
        if state not in SLA_STATES:
            raise ValueError(f"SLA event #{i} has state {state!r}; expected one of {SLA_STATES}")
        if state == "pending":
            if include_pending:
                raise ValueError(
                    f"SLA event #{i} is pending; only firing/resolved events become "
                    "alerts, filter pending events or use include_pending=False"
                )
            continue
        if d["severity"] not in SEVERITIES:
            raise ValueError(
                f"SLA event #{i} (rule {d['rule']!r}) has severity {d['severity']!r}; expected one of {SEVERITIES}"
            )
        keep.append(d)
    by_level: dict[str, list[int]] = {}
    for j, d in enumerate(keep):
        by_level.setdefault(str(d["scope_level"]), []).append(j)
    scope_labels: list = [None] * len(keep)
    found_all = np.zeros(len(keep), dtype=bool)
    for level, js in by_level.items():
        ids = np.array([int(keep[j]["scope_id"]) for j in js], dtype=np.int64)
        labs, found = labeler.labels(level, ids)
        for k, j in enumerate(js):
            scope_labels[j] = labs[k]
            found_all[j] = found[k]
    for j, d in enumerate(keep):
        rule, kpi, level, sid = str(d["rule"]), str(d["kpi"]), str(d["scope_level"]), int(d["scope_id"])
        service, state, sev = str(d["service"] or ""), d["state"], d["severity"]
        value, thr = _fmt(d["value"]), _fmt(d["threshold"])
        labels = {
            "alertname": rule,
            "source": "sla",
            "rule": rule,
            "kpi": kpi,
            "service": service,
            "severity": sev,
            "classification": "sla",
        }
        labels.update(scope_labels[j])
        svc = f" ({service})" if service else ""
        if state == FIRING:
            summary = f"{kpi} = {value} breaches threshold {thr} on {level} {sid}{svc}"
        else:
            summary = f"{kpi} = {value} back within threshold {thr} on {level} {sid}{svc}"
        start_ms, t_ms, end_ms = int(d["start_ms"]), int(d["t_ms"]), int(d["end_ms"])
        desc = f"SLA rule {rule} ({sev}): violation since {rfc3339_ms(start_ms)}, worst {kpi} {_fmt(d['worst_value'])}"
        if d["summary"]:
            desc += f". {d['summary']}"
        ann = {"summary": summary, "description": desc, "value": value, "threshold": thr}
        if not found_all[j]:
            ann["topology"] = f"{level} {sid} is not in the topology; ancestor labels missing"
        out.append(
            Alert(
                labels=labels,
                annotations=ann,
                starts_at_ms=start_ms,
                ends_at_ms=(end_ms if end_ms >= 0 else t_ms) if state == RESOLVED else -1,
                state=state,
                updated_ms=t_ms,
                generator_url=generator_url,
            )
        )
    return out


def alerts_from_anomalies(
    rows: np.ndarray, topology, *, severity: dict | None = None, generator_url: str = ""
) -> list[Alert]:
    """Convert anomaly records (``ANOMALY_DTYPE`` rows) into element-scope alerts.

    Parameters
    ----------
    rows : structured ndarray
        Fields element_id, metric, start_ms, end_ms (-1 while open), peak_score, direction,
        classification, baseline, threshold, value (``slot`` is optional; an optional ``t_ms``,
        the event time of the transition, becomes ``updated_ms``, so a re-issued row with a new
        classification updates the alert and an older row cannot override a newer one).
    topology : Topology or None
        Fills the site/region labels of each element; unknown elements keep only the element
        label and get the annotation ``topology`` (still alerted, never dropped).
    severity : dict classification -> severity, optional
        Overrides :data:`ANOMALY_SEVERITY`; unknown classifications get "warning".
    generator_url : str
        ``generatorURL`` of the alerts.

    Returns
    -------
    list of Alert
        One per row: firing while ``end_ms == -1``, else resolved at ``end_ms``. alertname is
        ``anomaly_<metric>``; the classification is a label but not part of the fingerprint,
        so a re-classified anomaly updates its alert.

    Raises
    ------
    ValueError
        ``rows`` is not a structured array with the fields above.
    """
    names = getattr(getattr(rows, "dtype", None), "names", None)
    if names is None:
        raise ValueError(
            f"rows must be a structured array with fields {ANOMALY_FIELDS}, got "
            f"{type(rows).__name__}; pass the ANOMALY_DTYPE array from anomaly.py"
        )
    missing = [f for f in ANOMALY_FIELDS if f not in names]
    if missing:
        raise ValueError(f"anomaly rows lack fields {missing}; expected {ANOMALY_FIELDS}")
    rows = np.atleast_1d(rows)
    sev_map = dict(ANOMALY_SEVERITY)
    sev_map.update(severity or {})
    bad = [s for s in sev_map.values() if s not in SEVERITIES]
    if bad:
        raise ValueError(f"severity map has unknown severities {bad}; expected {SEVERITIES}")
    labeler = _Labeler(topology)
    level = topology.element_level if topology is not None else "element"
    scope_labels, found = labeler.labels(level, rows["element_id"])
    c = {f: rows[f].tolist() for f in ANOMALY_FIELDS}  # plain Python values, no numpy scalars
    # optional extension field: event time of this transition (open, close, re-issue)
    t_col = rows["t_ms"].tolist() if "t_ms" in names else None
    found = found.tolist()
    out = []
    for j in range(len(rows)):
        metric, cls = c["metric"][j], c["classification"][j]
        eid, end_ms, start = c["element_id"][j], c["end_ms"][j], c["start_ms"][j]
        labels = {
            "alertname": f"anomaly_{metric}" if metric else "anomaly",
            "source": "anomaly",
            "metric": metric,
            "classification": cls,
            "severity": sev_map.get(cls, "warning"),
        }
        labels.update(scope_labels[j])
        value, thr, score = _fmt(c["value"][j]), _fmt(c["threshold"][j]), _fmt(c["peak_score"][j])
        dirn = "above" if c["direction"][j] > 0 else "below"
        summary = f"{cls} on element {eid} {metric}: {value} {dirn} threshold {thr} (baseline {_fmt(c['baseline'][j])})"
        if end_ms >= 0:
            summary = f"resolved: {summary}"
        ann = {
            "summary": summary,
            "description": f"anomaly since {rfc3339_ms(start)}, peak score {score}, classified {cls}",
            "value": value,
            "threshold": thr,
            "peak_score": score,
        }
        if not found[j]:
            ann["topology"] = f"element {eid} is not in the topology; site/region labels missing"
        out.append(
            Alert(
                labels=labels,
                annotations=ann,
                starts_at_ms=start,
                ends_at_ms=end_ms if end_ms >= 0 else -1,
                state=RESOLVED if end_ms >= 0 else FIRING,
                updated_ms=(t_col[j] if t_col is not None and t_col[j] >= 0 else end_ms if end_ms >= 0 else start),
                generator_url=generator_url,
            )
        )
    return out


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
                key, gl = self._group_key(a.labels)
                self._group_of[fp] = key
                g = self._groups.get(key)
                if g is None:
                    g = self._groups[key] = _Group(key, gl, next_flush_ms=now + self.group_wait_ms)
                    heapq.heappush(self._heap, (g.next_flush_ms, key))
                g.fps.add(fp)
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
    def _sizes(self, level: str) -> dict[str, int]:
        topo = self.topology
        key = f"{level}@{getattr(topo, 'version', 0)}"
        if key not in self._node_sizes:
            up = topo.element_to(level)
            active = getattr(topo, "active", None)
            if active is not None:
                up = up[np.asarray(active, dtype=bool)]
            counts = np.bincount(up, minlength=len(topo.ids[level]))
            self._node_sizes[key] = dict(zip(map(str, topo.ids[level].tolist()), counts.tolist()))
        return self._node_sizes[key]

    def _evaluate_rollups(self, now: int) -> None:
        """Raise / resolve the roll-up alerts (see :class:`RollupRule`)."""
        leaf = self.levels[-1]
        firing = [
            a
            for a in self._alerts.values()
            if a.state == FIRING
            and a.labels.get("source") != "rollup"
            and leaf in a.labels
            and a.labels.get("scope", leaf) == leaf
        ]
        out = []
        for i, r in enumerate(self.rollup_rules):
            members: dict[str, dict[str, Alert]] = {}
            for a in firing:
                node = a.labels.get(r.level, "")
                if node and all(m.matches(a.labels) for m in r.source_matchers):
                    members.setdefault(node, {}).setdefault(a.labels[leaf], a)
            sizes = self._sizes(r.level)
            qualified = set()
            for node, elems in members.items():
                n = sizes.get(node, 0)
                k = len(elems)
                if n == 0 or k < r.min_count or k < r.min_fraction * n:
                    continue
                qualified.add(node)
                first = next(iter(elems.values()))
                labels = {
                    "alertname": r.alertname,
                    "source": "rollup",
                    "rule": r.name or r.alertname,
                    "scope": r.level,
                    "classification": r.classification,
                    "severity": r.severity,
                }
                for lv in self.levels[: self.levels.index(r.level) + 1]:
                    labels[lv] = first.labels.get(lv, "")
                key = f"{i}|{node}"
                prev = self._rollup_active.get(key)
                if prev is not None:
                    cur = self._alerts.get(prev[0])
                    if cur is not None and cur.state == FIRING and cur.annotations.get("members") == str(k):
                        continue
                start = prev[1] if prev is not None else now
                ann = {
                    "summary": f"{r.alertname}: {k} of {n} elements of {r.level} {node} have "
                    f"{' '.join(map(str, r.source_matchers))} alerts",
                    "description": f"roll-up rule {r.name or r.alertname}: at least "
                    f"{r.min_fraction:.0%} and {r.min_count} elements",
                    "members": str(k),
                }
                a = Alert(labels, ann, starts_at_ms=start, updated_ms=now)
                self._rollup_active[key] = (a.fingerprint, start)
                out.append(a)
            for key in [k for k in self._rollup_active if k.startswith(f"{i}|")]:
                node = key.split("|", 1)[1]
                if node in qualified:
                    continue
                fp, _ = self._rollup_active.pop(key)
                cur = self._alerts.get(fp)
                if cur is not None and cur.state == FIRING:
                    out.append(
                        Alert(
                            dict(cur.labels),
                            dict(cur.annotations),
                            starts_at_ms=cur.starts_at_ms,
                            ends_at_ms=now,
                            state=RESOLVED,
                            updated_ms=max(now, cur.updated_ms),
                        )
                    )
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
        if sent:
            self.stats["notifications"] += len(sent)
            for s in self.sinks:
                s.submit(sent)
        return sent

    def _flush(self, g: _Group, now: int) -> Notification | None:
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
        return n

    def close(self, now_ms: int | None = None, *, drain: bool = True, flush_timeout_s: float | None = 10.0) -> bool:
        """Flush pending groups (``drain``), then flush and close every sink.

        Returns True when every sink confirmed delivery within ``flush_timeout_s``.
        """
        if drain:
            self.tick(now_ms, drain=True)
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
        return mgr
