"""The alert model: labels, annotations and lifecycle of one alert, its fingerprint, the
Alertmanager API v2 wire form, and the notification that carries a group of alerts to sinks.

References
----------
Prometheus Alertmanager API v2 OpenAPI spec (``postableAlert``) and webhook payload (version 4):
https://prometheus.io/docs/alerting/latest/configuration/
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = [
    "Alert",
    "Notification",
    "ANOMALY_SEVERITY",
    "SEVERITIES",
    "IDENTITY_EXCLUDED_LABELS",
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
