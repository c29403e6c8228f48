"""Label matchers, silences, inhibition rules and topology roll-up rules (Alertmanager style)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from telcoanalytics.alerts.model import _LABEL_NAME, FIRING, RESOLVED, SEVERITIES, Alert

__all__ = ["Matcher", "Silence", "InhibitRule", "RollupRule", "DEFAULT_INHIBIT_RULES", "DEFAULT_ROLLUP_RULES"]

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


# ---- roll-up evaluation (a helper of AlertManager.tick) ---------------------------------------
def node_sizes(mgr, level: str) -> dict[str, int]:
    topo = mgr.topology
    key = f"{level}@{getattr(topo, 'version', 0)}"
    if key not in mgr._node_sizes:
        up = topo.element_to(level)
        active = getattr(topo, "active", None)
        if active is not None:
            up = up[np.asarray(active, dtype=bool)]
        counts = np.bincount(up, minlength=len(topo.ids[level]))
        mgr._node_sizes[key] = dict(zip(map(str, topo.ids[level].tolist()), counts.tolist()))
    return mgr._node_sizes[key]


def rollup_alerts(mgr, now: int) -> list:
    """The roll-up alerts to raise, update or resolve at ``now`` for an AlertManager ``mgr`` (see
    :class:`RollupRule`); ``mgr._rollup_active`` is updated."""
    leaf = mgr.levels[-1]
    firing = [
        a
        for a in mgr._alerts.values()
        if a.state == FIRING
        and a.labels.get("source") != "rollup"
        and leaf in a.labels
        and a.labels.get("scope", leaf) == leaf
    ]
    out = []
    for i, r in enumerate(mgr.rollup_rules):
        members: dict[str, dict[str, Alert]] = {}
        for a in firing:
            node = a.labels.get(r.level, "")
            if node and all(m.matches(a.labels) for m in r.source_matchers):
                members.setdefault(node, {}).setdefault(a.labels[leaf], a)
        sizes = node_sizes(mgr, r.level)
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
            for lv in mgr.levels[: mgr.levels.index(r.level) + 1]:
                labels[lv] = first.labels.get(lv, "")
            key = f"{i}|{node}"
            prev = mgr._rollup_active.get(key)
            if prev is not None:
                cur = mgr._alerts.get(prev[0])
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
            mgr._rollup_active[key] = (a.fingerprint, start)
            out.append(a)
        for key in [k for k in mgr._rollup_active if k.startswith(f"{i}|")]:
            node = key.split("|", 1)[1]
            if node in qualified:
                continue
            fp, _ = mgr._rollup_active.pop(key)
            cur = mgr._alerts.get(fp)
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
    return out
