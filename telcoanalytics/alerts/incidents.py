"""Incidents: the alerts that share a cause, as the one unit an operations centre acts on.

One congestion raises an anomaly on utilisation, one on latency, and SLA breaches of blocking,
setup success, latency and loss on the same cell and its site; a failing element raises its
fault, its availability and loss SLA breaches and the site roll-up. An :class:`IncidentBook`
joins them: an alert becomes a member of a live incident when

* it is on the same correlation node (by default a site: the element itself, another element of
  the site, or the site's own SLA / roll-up alerts), or
* no incident lives on its site but an alert on an ancestor above the correlation level (a
  region) fires: its incident collects the alert (a region-wide collection gap collects the
  silence alerts of its elements while the gap alert fires);

otherwise it opens a new incident. An incident is live while a member fires and for ``hold_ms``
after its last member resolved (a flapping cell stays one incident). Its root scope is the
lowest common ancestor of its members' scopes (an element, its site, or the region).

An incident is *confirmed* (may be notified) once it holds a conclusive member (an SLA breach,
which has its own ``for``; a roll-up; a silence, collection gap or outage) or has kept firing
``confirm_ms`` after it opened; a lone anomaly episode that ends sooner stays an unconfirmed
incident: it is recorded (``incidents.jsonl``, the report) but pages nobody. The default
``confirm_ms=0`` notifies every incident at once.

With ``AlertManager(..., incidents=IncidentBook(levels))`` the manager groups by incident: an
incident goes out as one Alertmanager group (group key ``{incident="I00012"}``, the root scope's
labels as group labels, the members as its alerts, each labelled ``incident``), notified when it
is confirmed, when its severity rises, every ``repeat_interval`` while it fires, and once when
it closes (``hold_ms`` after its last member resolved, so a flapping element sends no
resolve/re-open pairs); a member joining or resolving without changing that is no new
notification. Each incident is written as one JSON line (:meth:`Incident.to_record`) when it
closes.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from telcoanalytics.alerts.model import FIRING, RESOLVED, SEVERITIES, Alert, Notification, rfc3339_ms

__all__ = ["Incident", "IncidentBook", "flush_incident", "severity_rank"]

_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(sev: str) -> int:
    """Rank of a severity, 0 for the most severe ("page"); unknown severities rank last.

    Examples
    --------
    >>> severity_rank("critical") < severity_rank("warning") < severity_rank("nonsense")
    True
    """
    return _RANK.get(sev, len(SEVERITIES))


def _hhmm(t_ms: int) -> str:
    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M")


@dataclass
class Incident:
    """Alerts sharing one cause: a root scope, a start, an end, members, a severity.

    ``root_path`` holds the ids of the root scope and its ancestors, top level first (for
    levels ``("region", "site", "element")`` an element root is ``("1", "100", "1042")``).
    ``members`` maps fingerprints to the member alerts (their latest state).
    """

    id: str
    root_level: str
    root_path: tuple
    members: dict = field(default_factory=dict)
    notifications: int = 0
    escalations: int = 0
    spreads: int = 0  # pages for a new element joining after the first notification
    repeats: int = 0
    first_notified_ms: int = -1
    last_notified_ms: int = -1
    notified_state: str = ""  # state of the last notification ("" before the first)
    notified_severity: str = ""
    opened_ms: int = -1  # event time (manager's now) the incident opened
    confirmed_ms: int = -1  # when it became notifiable (see IncidentBook.confirmed)
    closed: bool = False
    notified_elements: set = field(default_factory=set)  # elements of members notified firing so far
    pages_ms: list = field(default_factory=list)  # times of the pages (opening, escalations, spreads)

    @property
    def key(self) -> str:
        """Alertmanager group key of the incident."""
        return f'{{incident="{self.id}"}}'

    @property
    def start_ms(self) -> int:
        return min(a.starts_at_ms for a in self.members.values())

    @property
    def firing(self) -> bool:
        return any(a.state == FIRING for a in self.members.values())

    @property
    def end_ms(self) -> int:
        """End of the last member, -1 while one fires."""
        return -1 if self.firing else max(a.ends_at_ms for a in self.members.values())

    @property
    def severity(self) -> str:
        return min((a.severity for a in self.members.values()), key=severity_rank, default="")

    def group_labels(self, levels) -> dict:
        """Group labels: the incident id and the root scope with its ancestors."""
        out = {"incident": self.id}
        for lv, v in zip(levels, self.root_path):
            out[lv] = v
        return out

    def ordered(self) -> list:
        """Members, most severe and earliest first."""
        return sorted(self.members.values(), key=lambda a: (severity_rank(a.severity), a.starts_at_ms, a.fingerprint))

    def summary(self, levels) -> str:
        """One line: severity, root scope, the leading member's summary, what else, when."""
        top = self.ordered()
        where = f"{self.root_level} {self.root_path[-1]}" if self.root_path else self.root_level
        up = [f"{lv} {v}" for lv, v in zip(levels, self.root_path[:-1])]
        if up:
            where += f" ({', '.join(up)})"
        lead = top[0].annotations.get("summary", top[0].labels["alertname"]) if top else ""
        text = f"[{self.severity}] {where}: {lead}"
        others = Counter(a.labels["alertname"] for a in top[1:])
        if others:
            text += f"; +{len(top) - 1} related: " + ", ".join(
                f"{k}" + (f" x{v}" if v > 1 else "") for k, v in others.most_common(4)
            )
            if len(others) > 4:
                text += ", ..."
        text += f"; since {_hhmm(self.start_ms)}"
        if not self.firing:
            text += f", resolved {_hhmm(self.end_ms)}"
        return text

    def to_record(self, levels) -> dict:
        """The incident as one JSON-able record (one line of ``incidents.jsonl``)."""
        end = self.end_ms
        return {
            "incident": self.id,
            "status": FIRING if end < 0 else RESOLVED,
            "severity": self.severity,
            "root": {"level": self.root_level, **self.group_labels(levels)},
            "summary": self.summary(levels),
            "start_ms": self.start_ms,
            "end_ms": end,
            "startsAt": rfc3339_ms(self.start_ms),
            "endsAt": rfc3339_ms(end) if end >= 0 else "",
            "n_members": len(self.members),
            "notifications": self.notifications,
            "escalations": self.escalations,
            "spreads": self.spreads,
            "pages_ms": list(self.pages_ms),
            "repeats": self.repeats,
            "first_notified_ms": self.first_notified_ms,
            "opened_ms": self.opened_ms,
            "confirmed_ms": self.confirmed_ms,
            "members": [a.to_dict() for a in self.ordered()],
        }


class IncidentBook:
    """Correlates alerts into incidents (see the module docstring for the rules).

    Parameters
    ----------
    levels : sequence of str
        Topology levels, top first (``("region", "site", "element")``).
    correlation_level : str, optional
        Alerts on one node of this level share a cause (default: the level above the elements).
    hold_ms : int
        An incident whose members all resolved stays live this long (default 30 min): a new
        alert on its node joins it instead of opening another.
    path : path, optional
        ``incidents.jsonl``: closed incidents are appended as they close, open ones at
        :meth:`finish` (emptied first).
    log : object with ``write_lines(lines)``, optional
        Where the incident lines go instead of ``path`` (the replay's resumable
        :class:`~telcoanalytics.pipeline.run.OutputLog`).
    keep_closed : int
        Closed incidents kept in :attr:`closed` for reports (oldest dropped first).
    confirm_ms : int
        An incident of anomaly findings only is notified once it has fired this long since it
        opened (default 0: at once); conclusive members confirm it at once. Measured on the
        synthetic replay, 10 minutes held back almost nothing (the detector keeps an episode open
        for several points after a blip) and delayed anomaly-first incidents by 10 minutes.
    conclusive : sequence of str
        Classifications that confirm an incident at once (besides any non-anomaly member).

    Raises
    ------
    ValueError
        No levels, an unknown correlation level, or a negative hold.

    Examples
    --------
    >>> book = IncidentBook(("region", "site", "element"))
    >>> a = Alert({"alertname": "x", "region": "1", "site": "10", "element": "100", "scope": "element"})
    >>> b = Alert({"alertname": "y", "region": "1", "site": "10", "scope": "site"})
    >>> book.assign(a, 0).id == book.assign(b, 0).id, book.live[0].root_level
    (True, 'site')
    """

    def __init__(self, levels, *, correlation_level: str | None = None, hold_ms: int = 1_800_000, path=None,
                 keep_closed: int = 10_000, confirm_ms: int = 0,
                 conclusive=("silence", "collection_gap", "down", "outage", "failure"), log=None):  # fmt: skip
        self.levels = tuple(levels)
        if not self.levels:
            raise ValueError("IncidentBook needs the topology levels, e.g. ('region', 'site', 'element')")
        corr = correlation_level or self.levels[max(len(self.levels) - 2, 0)]
        if corr not in self.levels:
            raise ValueError(f"correlation_level {corr!r} is not one of the levels {self.levels}")
        if int(hold_ms) < 0:
            raise ValueError(f"hold_ms must be >= 0, got {hold_ms}")
        if int(confirm_ms) < 0:
            raise ValueError(f"confirm_ms must be >= 0, got {confirm_ms}")
        self.confirm_ms = int(confirm_ms)
        self.conclusive = frozenset(conclusive)
        self.correlation_level = corr
        self._corr_depth = self.levels.index(corr)
        self.hold_ms = int(hold_ms)
        self.path = Path(path) if path is not None else None
        self.log = log  # an object with write_lines(lines) (a resumable OutputLog), instead of path
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
        self.keep_closed = int(keep_closed)
        self._seq = 0
        self._live: dict[str, Incident] = {}  # id -> live incident
        self._by_key: dict[str, Incident] = {}  # group key -> live incident
        self._by_node: dict[tuple, set] = {}  # correlation node -> ids of live incidents rooted there
        self._of: dict[str, str] = {}  # member fingerprint -> id of its live incident
        self.closed: list[Incident] = []
        self.pending_resolutions: list[Incident] = []  # closed while notified firing: to announce
        self.seconds = 0.0

    # ---- correlation ---------------------------------------------------------------------
    def scope_of(self, a: Alert) -> tuple[str, tuple]:
        """(level, path of ids top first) of an alert's scope; scopes outside the topology (or
        with missing ancestor labels) get a path of their own that correlates with nothing."""
        lab = a.labels
        scope = lab.get("scope", "")
        if scope in self.levels:
            depth = self.levels.index(scope)
        else:
            present = [d for d, lv in enumerate(self.levels) if lv in lab]
            depth = present[-1] if present and not scope else -1
        if depth < 0:
            return scope or "other", (f"{scope or 'other'}:{lab.get(scope, lab['alertname'])}",)
        path = tuple(lab.get(lv, "") for lv in self.levels[: depth + 1])
        if "" in path:  # ancestors unknown: correlate with alerts of this very scope only
            return self.levels[depth], (f"{self.levels[depth]}:{path[-1]}",)
        return self.levels[depth], path

    def _node(self, path: tuple) -> tuple:
        return path[: self._corr_depth + 1]

    def _index(self, inc: Incident, add: bool) -> None:
        node = self._node(inc.root_path)
        if add:
            self._by_node.setdefault(node, set()).add(inc.id)
        else:
            s = self._by_node.get(node)
            if s is not None:
                s.discard(inc.id)
                if not s:
                    del self._by_node[node]

    def _holds(self, inc: Incident, now_ms: int) -> bool:
        return inc.firing or inc.end_ms + self.hold_ms >= now_ms

    def assign(self, a: Alert, now_ms: int) -> Incident:
        """Put alert ``a`` (new at event time ``now_ms``) into an incident and return it.

        A correlation node holds at most one live incident (a new alert there joins it), so
        incidents never need merging; the root moves up to the common ancestor of the members.
        """
        t0 = time.perf_counter()
        fp = a.fingerprint
        inc = self._live.get(self._of.get(fp, ""))
        if inc is None or not self._holds(inc, now_ms):
            level, path = self.scope_of(a)
            inc = self._find(path, now_ms)
            if inc is None:
                self._seq += 1
                inc = Incident(f"I{self._seq:05d}", level, path, opened_ms=int(now_ms))
                self._live[inc.id] = inc
                self._by_key[inc.key] = inc
                self._index(inc, True)
            else:
                new_root = _common(inc.root_path, path)
                if new_root != inc.root_path:
                    self._index(inc, False)
                    inc.root_path, inc.root_level = new_root, self.levels[len(new_root) - 1]
                    self._index(inc, True)
        inc.members[fp] = a
        self._of[fp] = inc.id
        self.seconds += time.perf_counter() - t0
        return inc

    def confirmed(self, inc: Incident, now_ms: int) -> bool:
        """Whether ``inc`` may be notified at ``now_ms`` (remembered once true)."""
        if inc.confirmed_ms < 0 and (
            now_ms - inc.opened_ms >= self.confirm_ms
            or any(
                a.labels.get("source", "") != "anomaly" or a.labels.get("classification", "") in self.conclusive
                for a in inc.members.values()
            )
        ):
            inc.confirmed_ms = int(now_ms)
        return inc.confirmed_ms >= 0

    def _find(self, path: tuple, now_ms: int) -> Incident | None:
        """The live incident on the correlation node of ``path``, else a firing one at an ancestor
        above that level (nearest first); incidents past their hold are closed on the way."""
        for inc in [self._live[i] for i in self._by_node.get(self._node(path), ())]:
            if self._holds(inc, now_ms):
                return inc
            self._close(inc)
            self.pending_resolutions.append(inc)
        for k in range(min(len(path) - 1, self._corr_depth), 0, -1):
            for i in sorted(self._by_node.get(path[:k], ())):
                if self._root_firing(self._live[i]):
                    return self._live[i]
        return None

    def _root_firing(self, inc: Incident) -> bool:
        """Whether an alert on the incident's root scope itself (the region-wide cause) fires; its
        members below do not keep collecting new alerts once that cause ended."""
        return any(a.state == FIRING and self.scope_of(a)[1] == inc.root_path for a in inc.members.values())

    def incident(self, key_or_id: str) -> Incident | None:
        """The live incident with this group key or id."""
        return self._by_key.get(key_or_id) or self._live.get(key_or_id)

    @property
    def live(self) -> list[Incident]:
        return sorted(self._live.values(), key=lambda x: x.id)

    def all(self) -> list[Incident]:
        """Closed (kept) and live incidents, by id."""
        return sorted(self.closed + list(self._live.values()), key=lambda x: x.id)

    # ---- closing -------------------------------------------------------------------------
    def expire(self, now_ms: int, *, hold_ms: int | None = None) -> list[Incident]:
        """Close the incidents whose members all resolved at least ``hold_ms`` (default the book's)
        before ``now_ms``; returns those notified as firing (and closed since the last call), whose
        resolution is to be announced."""
        t0 = time.perf_counter()
        hold = self.hold_ms if hold_ms is None else int(hold_ms)
        done = [i for i in self._live.values() if not i.firing and i.end_ms + hold <= now_ms]
        for inc in done:
            self._close(inc)
        out = [i for i in self.pending_resolutions + done if i.notified_state == FIRING]
        self.pending_resolutions = []
        self.seconds += time.perf_counter() - t0
        return out

    def _close(self, inc: Incident) -> None:
        self._index(inc, False)
        del self._live[inc.id]
        del self._by_key[inc.key]
        for f in inc.members:
            if self._of.get(f) == inc.id:
                del self._of[f]
        inc.closed = True
        inc.members = {f: a.copy() for f, a in inc.members.items()}
        self.closed.append(inc)
        if len(self.closed) > self.keep_closed:
            del self.closed[: len(self.closed) - self.keep_closed]
        if inc.notified_state != FIRING:  # else written once its resolution is announced
            self._write([inc])

    def finish(self, now_ms: int) -> list[Incident]:
        """End of input: close every incident whose members all resolved (without waiting for the
        hold) and write the still-firing ones as they stand; returns the closed ones whose
        resolution is to be announced."""
        out = self.expire(now_ms, hold_ms=-(2**62))
        self._write(self.live)
        return out

    def _write(self, incidents) -> None:
        if not incidents:
            return
        if self.log is not None:
            self.log.write_lines([json.dumps(inc.to_record(self.levels), sort_keys=True) for inc in incidents])
            return
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            for inc in incidents:
                fh.write(json.dumps(inc.to_record(self.levels), sort_keys=True) + "\n")

    # ---- reporting -----------------------------------------------------------------------
    def summary_lines(self, max_listed: int = 40) -> list[str]:
        """The incidents, one line each (most severe first), after a count line."""
        incs = self.all()
        notified = [i for i in incs if i.notifications]
        n_alerts = sum(len(i.members) for i in incs)
        lines = [
            f"incidents: {len(incs)} ({len(notified)} notified, {len(incs) - len(notified)} resolved before "
            f"their first notification or fully muted) from {n_alerts} alerts; "
            f"{sum(i.notifications for i in incs)} notifications"
        ]
        shown = sorted(notified, key=lambda i: (severity_rank(i.severity), i.start_ms))[:max_listed]
        for i in shown:
            lines.append(f"  {i.id} {i.summary(self.levels)} ({len(i.members)} alerts, {i.notifications} notif.)")
        if len(notified) > len(shown):
            lines.append(f"  ... {len(notified) - len(shown)} more in incidents.jsonl")
        return lines

    # ---- checkpoint ----------------------------------------------------------------------
    def to_state(self) -> dict:
        def inc_state(i: Incident) -> dict:
            return {
                "id": i.id,
                "root_level": i.root_level,
                "root_path": list(i.root_path),
                "members": [a.to_dict() for a in i.members.values()],
                "notifications": i.notifications,
                "escalations": i.escalations,
                "spreads": i.spreads,
                "notified_elements": sorted(i.notified_elements),
                "pages_ms": list(i.pages_ms),
                "repeats": i.repeats,
                "first_notified_ms": i.first_notified_ms,
                "last_notified_ms": i.last_notified_ms,
                "notified_state": i.notified_state,
                "notified_severity": i.notified_severity,
                "opened_ms": i.opened_ms,
                "confirmed_ms": i.confirmed_ms,
            }

        return {
            "levels": list(self.levels),
            "correlation_level": self.correlation_level,
            "hold_ms": self.hold_ms,
            "path": str(self.path) if self.path is not None else None,
            "keep_closed": self.keep_closed,
            "confirm_ms": self.confirm_ms,
            "conclusive": sorted(self.conclusive),
            "pending": [i.id for i in self.pending_resolutions],
            "seq": self._seq,
            "live": [inc_state(i) for i in self._live.values()],
            "closed": [inc_state(i) for i in self.closed],
            "seconds": self.seconds,
        }

    @classmethod
    def from_state(cls, d: dict) -> IncidentBook:
        """Restore a book saved by :meth:`to_state` (the JSONL file is appended to, not emptied)."""
        book = cls(d["levels"], correlation_level=d["correlation_level"], hold_ms=d["hold_ms"],
                   keep_closed=d["keep_closed"], confirm_ms=d["confirm_ms"], conclusive=d["conclusive"])  # fmt: skip
        book.path = Path(d["path"]) if d["path"] else None
        book._seq = int(d["seq"])
        book.seconds = float(d["seconds"])

        def mk(s: dict, closed: bool) -> Incident:
            members = {a.fingerprint: a for a in map(Alert.from_dict, s["members"])}
            fields = {k: v for k, v in s.items() if k not in ("members", "root_path", "notified_elements")}
            seen = set(s.get("notified_elements", ()))
            return Incident(
                root_path=tuple(s["root_path"]), members=members, closed=closed, notified_elements=seen, **fields
            )

        book.closed = [mk(s, True) for s in d["closed"]]
        book.pending_resolutions = [i for i in book.closed if i.id in set(d["pending"])]
        for s in d["live"]:
            inc = mk(s, False)
            book._live[inc.id] = inc
            book._by_key[inc.key] = inc
            book._index(inc, True)
            for f in inc.members:
                book._of[f] = inc.id
        return book


def _common(a: tuple, b: tuple) -> tuple:
    """Longest common prefix of two scope paths (their lowest common ancestor); a path with
    nothing in common keeps ``a``."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n] if n else a


def flush_incident(mgr, g, now: int) -> Notification | None:
    """The flush of an incident group of an :class:`~telcoanalytics.alerts.manager.AlertManager`.

    Notifies when the incident has an unmuted firing member, is confirmed and was not notified as
    firing yet, when its severity rose above the last notified one, when a firing member is on an
    element none of its earlier notifications named (a new element joined the site's incident:
    "spread"; not for region-wide incidents, whose root collects the elements of a collection
    gap), or after the repeat interval.
    The resolution goes out when the incident closes (:meth:`IncidentBook.expire`). Resolved
    members leave the group as in :meth:`AlertManager._flush`.
    """
    inc = mgr.incidents.incident(g.key)
    st = mgr.stats
    firing, loud, gone = [], [], []
    for fp in sorted(g.fps, key=lambda f: (mgr._alerts[f].starts_at_ms, f)):
        a = mgr._alerts[fp]
        if a.state == RESOLVED:
            gone.append(fp)
            continue
        firing.append(a)
        why = mgr.muted(a, now)
        if why:
            st[f"muted_{why}"] += 1
        else:
            loud.append(a)
    kind = ""
    sev = min((a.severity for a in loud), key=severity_rank, default="")
    if inc is not None and loud and mgr.incidents.confirmed(inc, now):
        if inc.notified_state != FIRING:
            kind = "open"
        elif severity_rank(sev) < severity_rank(inc.notified_severity):
            kind = "escalate"
        elif _new_elements(mgr.incidents, inc, loud):
            kind = "spread"
        elif now - inc.last_notified_ms >= mgr.repeat_interval_ms:
            kind = "repeat"
    n = None
    if kind:
        n = incident_notification(mgr, inc, kind, firing, now)
        inc.notified_severity = sev
        inc.notified_elements |= {a.labels["element"] for a in firing if a.labels.get("element")}
        st["alerts_notified_firing"] += len(firing)
        g.last_notify_ms = now
        g.notified_firing = {a.fingerprint for a in firing}
    mgr._drop_gone(g, gone, now)
    due = inc.opened_ms + mgr.incidents.confirm_ms if inc is not None and inc.confirmed_ms < 0 else -1
    if now < due < g.next_flush_ms and mgr._groups.get(g.key) is g:  # flush when it confirms by lasting
        mgr._reschedule(g, due)
    return n


def _new_elements(book: IncidentBook, inc: Incident, loud) -> bool:
    """Whether a firing member of ``inc`` is on an element its notifications have not named yet
    (never for an incident rooted above the correlation level: a region-wide cause)."""
    if len(inc.root_path) < book._corr_depth + 1:
        return False
    return any(a.labels.get("element") and a.labels["element"] not in inc.notified_elements for a in loud)


def incident_notification(mgr, inc: Incident, kind: str, members, now: int) -> Notification:
    """The group notification of ``inc`` (``kind`` open, escalate, repeat or resolve) with
    ``members`` (all of them, resolved, for "resolve") as its alerts, each labelled ``incident``."""
    if kind == "resolve":
        members = inc.ordered()
    alerts = []
    for a in members:
        c = a.copy()
        c.labels["incident"] = inc.id
        alerts.append(c)
    n = Notification(inc.key, inc.group_labels(mgr.levels), tuple(alerts), now, now + mgr.valid_for_ms, mgr.receiver)
    inc.notifications += 1
    inc.escalations += kind == "escalate"
    inc.spreads += kind == "spread"
    if kind in ("open", "escalate", "spread"):
        inc.pages_ms.append(int(now))
    inc.repeats += kind == "repeat"
    inc.last_notified_ms = now
    if inc.first_notified_ms < 0:
        inc.first_notified_ms = now
    inc.notified_state = RESOLVED if kind == "resolve" else FIRING
    mgr.stats[f"incident_{kind}"] += 1
    mgr.stats["repeats"] += kind == "repeat"
    if kind == "resolve":
        mgr.stats["alerts_notified_resolved"] += len(alerts)
        mgr.incidents._write([inc])
    return n
