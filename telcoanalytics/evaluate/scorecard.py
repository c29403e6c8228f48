"""Scoring a synthetic replay against the scenarios injected into its day (ground truth)."""

from __future__ import annotations

import datetime as _dt
from collections import Counter

import numpy as np


def _hhmm(t_ms) -> str:
    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M")


def scenario_scorecard(
    day, replay_from: int, components: dict, grace_ms: int = 900_000, delays: dict | None = None
) -> list[str]:
    """Lines saying, for each scenario injected in the replayed span, what caught it.

    A scenario counts as caught by a component when one of its findings touches an affected
    element (or, for scopes, an element of the site/region) between the scenario's start minus and
    end plus ``grace_ms``: anomaly episodes (any classification), SLA events (firing), alerts.
    ``delays``, when given, receives scenario index -> ms from its start to its first anomaly finding.
    """
    topo = day.topology
    eid = topo.ids[topo.element_level]
    lines = ["== injected scenarios of the replayed span, and what caught them (ground truth of the synthetic day)"]
    anom = components.get("anomaly")
    sla = components.get("sla")
    rows = np.concatenate(anom.rows) if anom is not None and anom.rows else None
    sla_ev = [e for e in sla.events if e.state == "firing"] if sla is not None else []
    region_of = topo.element_to("region")
    site_of = topo.element_to("site")
    caught_total = 0
    listed = 0
    for k, (lab, det) in enumerate(zip(day.labels, day.scenarios)):
        if lab["end_ms"] <= replay_from:
            continue
        listed += 1
        kind = str(lab["scenario"])
        if kind == "collection_gap":
            r = int(np.searchsorted(topo.ids["region"], lab["scope_id"]))
            elems = eid[region_of == r]
        else:
            elems = np.asarray(det.get("element_ids", [lab["element_id"]]), dtype=np.int64)
        lo, hi = int(lab["start_ms"]) - grace_ms, int(lab["end_ms"]) + grace_ms
        how = []
        if rows is not None:
            m = np.isin(rows["element_id"], elems) & (rows["t_ms"] >= lo) & (rows["t_ms"] <= hi)
            if m.any():
                cls = sorted(set(rows["classification"][m].tolist()))
                first = int(rows["t_ms"][m].min())
                if delays is not None:
                    delays[k] = max(0, first - int(lab["start_ms"]))
                how.append(f"anomaly {'/'.join(cls)} at +{max(0, first - int(lab['start_ms'])) / 60000:.0f} min")
        idx = topo.index_of(elems)
        scope_ids = {("element", int(x)) for x in elems}
        scope_ids |= {("site", int(topo.ids["site"][s])) for s in np.unique(site_of[idx[idx >= 0]])}
        scope_ids |= {("region", int(topo.ids["region"][x])) for x in np.unique(region_of[idx[idx >= 0]])}
        hits = [e for e in sla_ev if (e.scope_level, int(e.scope_id)) in scope_ids and lo <= e.t_ms <= hi]
        if hits:
            how.append("SLA " + "/".join(sorted({e.rule for e in hits})))
        caught_total += bool(how)
        where = f"{lab['scope_level']} {lab['scope_id']}" + (f" {lab['metric']}" if lab["metric"] else "")
        lines.append(
            f"  {kind:<15} {where:<34} {_hhmm(lab['start_ms'])}-{_hhmm(lab['end_ms'])}: "
            + ("; ".join(how) if how else "NOT CAUGHT")
        )
    lines.append(f"  caught {caught_total} of {listed} injected scenarios")
    return lines


NOT_PAGED = ("crowd",)
"""Scenarios that are no fault (a demand surge below capacity): reported by the detector, not paged;
an incident on one still counts as true (it is on the scenario), none is not a miss."""


def _scenario_scopes(day, lab, det) -> tuple[set, set, set]:
    """(element ids, site ids, region ids) a scenario acts on, as label strings."""
    topo = day.topology
    if str(lab["scenario"]) == "collection_gap":  # matched by its region's gap/silence alerts only
        return set(), set(), {str(int(lab["scope_id"]))}
    elems = np.asarray(det.get("element_ids", [lab["element_id"]]), dtype=np.int64)
    regions = set()
    idx = topo.index_of(elems)
    idx = idx[idx >= 0]
    sites = {str(int(s)) for s in topo.ids["site"][np.unique(topo.element_to("site")[idx])]}
    return {str(int(e)) for e in elems}, sites, regions


def _matches(inc, scopes, lo: int, hi: int, end_ms: int) -> bool:
    elems, sites, regions = scopes
    start, end = inc.start_ms, inc.end_ms if inc.end_ms >= 0 else end_ms
    if end < lo or start > hi:
        return False
    for a in inc.members.values():
        lab = a.labels
        if lab.get("element") in elems or lab.get("site") in sites:
            return True
        if (
            regions
            and lab.get("region") in regions
            and (lab.get("scope", "") == "region" or lab.get("classification") in ("silence", "collection_gap"))
        ):
            return True
    return False


def _paged_for(inc, scopes, lo: int, notify_lag_ms: int) -> int:
    """When ``inc`` paged for a scenario: its first page (opening, escalation, new element) once the
    scenario's own first member had started (an incident notified earlier for something else on
    the site pages again when the scenario's element joins); its first notification otherwise."""
    elems, sites, _ = scopes
    own = [
        a.starts_at_ms
        for a in inc.members.values()
        if a.starts_at_ms >= lo and (a.labels.get("element") in elems or a.labels.get("site") in sites)
    ]
    if not own:
        return inc.first_notified_ms
    after = [t for t in getattr(inc, "pages_ms", ()) if t + notify_lag_ms >= min(own)]
    return min(after) if after else inc.first_notified_ms


def incident_scorecard(
    day,
    replay_from: int,
    incidents,
    end_ms: int,
    *,
    grace_ms: int = 900_000,
    finding_delay_ms: dict | None = None,
    notify_lag_ms: int = 0,
) -> dict:
    """Alert precision of a synthetic replay: its incidents against the injected scenarios.

    Parameters
    ----------
    day : SynthDay
        The generated day (topology, labels, scenario details).
    replay_from : int
        Start of the replayed span (ms); scenarios that ended before it are not counted.
    incidents : list of Incident
        All incidents of the replay (:meth:`IncidentBook.all`); only notified ones count (the
        others never reached an operator).
    end_ms : int
        End of the replayed span; open incidents count as lasting until then.
    grace_ms : int
        An incident matches a scenario when one of its members is on the scenario's elements or
        sites (for a collection gap: a region-wide, gap or silence alert of its region) and its
        span meets the scenario's span widened by this much on both sides.
    finding_delay_ms : dict scenario index -> ms, optional
        Delay of the first finding per scenario (the older figure), shown beside the incident's.
    notify_lag_ms : int
        Added to notification times for the delay: a pipeline's alert manager runs on the
        watermark, which trails the newest event by the allowed lateness, so a notification
        stamped W goes out once events up to W + lateness have arrived.

    Returns
    -------
    dict
        ``true``, ``false``, ``missed``, ``caught``, ``scenarios``, ``incidents``, ``precision``,
        ``notifications_per_incident``, ``firing_notifications_per_incident``, ``pages_per_incident``
        (opening + escalations), ``repeats``,
        ``median_delay_min``, ``false_per_day_per_10k``, ``lines`` (report section) and
        ``appendix`` (one explanation per false incident).
    """
    notified = [i for i in incidents if i.notifications]
    span_ms = max(end_ms - replay_from, 1)
    n_el = day.topology.n_elements
    scen = []
    for k, (lab, det) in enumerate(zip(day.labels, day.scenarios)):
        if lab["end_ms"] <= replay_from:
            continue
        scen.append((k, lab, _scenario_scopes(day, lab, det)))
    matched_by: dict[str, list] = {i.id: [] for i in notified}
    lines = ["== alert precision: incidents against the injected scenarios (ground truth of the synthetic day)"]
    delays = []
    caught = not_paged = reported = 0
    for k, lab, scopes in scen:
        lo, hi = int(lab["start_ms"]) - grace_ms, int(lab["end_ms"]) + grace_ms
        hits = [i for i in notified if _matches(i, scopes, lo, hi, end_ms)]
        for i in hits:
            matched_by[i.id].append(k)
        kind = str(lab["scenario"])
        where = f"{lab['scope_level']} {lab['scope_id']}" + (f" {lab['metric']}" if lab["metric"] else "")
        if not hits and kind in NOT_PAGED:
            out_np = finding_delay_ms is not None and k in finding_delay_ms
            how = "not paged by design" + (
                f"; reported (first finding {finding_delay_ms[k] / 60_000:+.0f} min)" if out_np else "; NOT REPORTED"
            )
            not_paged += 1
            reported += out_np
            lines.append(f"  {kind:<15} {where:<34} {_hhmm(lab['start_ms'])}-{_hhmm(lab['end_ms'])}: {how}")
            continue
        if hits:
            caught += 1
            paged = {i.id: _paged_for(i, scopes, lo, notify_lag_ms) for i in hits}
            first = min(hits, key=lambda i: paged[i.id])
            d_min = (paged[first.id] + notify_lag_ms - int(lab["start_ms"])) / 60_000
            delays.append(d_min)
            how = f"{', '.join(i.id for i in hits)} notified at {d_min:+.0f} min ({first.severity})"
        else:
            how = "MISSED (no notified incident)"
        if finding_delay_ms is not None and k in finding_delay_ms:
            how += f"; first finding {finding_delay_ms[k] / 60_000:+.0f} min"
        lines.append(f"  {kind:<15} {where:<34} {_hhmm(lab['start_ms'])}-{_hhmm(lab['end_ms'])}: {how}")
    true_ids = [i for i in notified if matched_by[i.id]]
    false_ids = [i for i in notified if not matched_by[i.id]]
    # the same alerts one by one (what an operator read before incidents), and the incidents that
    # confirmation held back (notified at once without it)
    alerts, alerts_true = 0, 0
    for inc in incidents:
        for a in inc.members.values():
            alerts += 1
            one = type(inc)(inc.id, inc.root_level, inc.root_path, members={a.fingerprint: a})
            alerts_true += any(
                _matches(one, scopes, int(lab["start_ms"]) - grace_ms, int(lab["end_ms"]) + grace_ms, end_ms)
                for _, lab, scopes in scen
            )
    held = [i for i in incidents if not i.notifications and i.confirmed_ms < 0]
    held_true = sum(
        any(
            _matches(i, scopes, int(lab["start_ms"]) - grace_ms, int(lab["end_ms"]) + grace_ms, end_ms)
            for _, lab, scopes in scen
        )
        for i in held
    )
    n_inc = len(notified)
    n_notes = sum(i.notifications for i in notified)
    n_firing_notes = sum(i.notifications - (i.notified_state == "resolved") for i in notified)
    n_pages = sum(1 + i.escalations + getattr(i, "spreads", 0) for i in notified)  # opening, escalations, spreads
    n_repeats = sum(i.repeats for i in notified)
    days = span_ms / 86_400_000
    out = {
        "scenarios": len(scen),
        "caught": caught,
        "missed": len(scen) - caught - not_paged,
        "not_paged_reported": reported,
        "not_paged": not_paged,
        "incidents": n_inc,
        "true": len(true_ids),
        "false": len(false_ids),
        "precision": len(true_ids) / n_inc if n_inc else float("nan"),
        "notifications_per_incident": n_notes / n_inc if n_inc else float("nan"),
        "firing_notifications_per_incident": n_firing_notes / n_inc if n_inc else float("nan"),
        "pages_per_incident": n_pages / n_inc if n_inc else float("nan"),
        "repeats": n_repeats,
        "median_delay_min": float(np.median(delays)) if delays else float("nan"),
        "false_per_day_per_10k": len(false_ids) / days / (n_el / 10_000),
        "silent_incidents": len(incidents) - n_inc,
        "alerts": alerts,
        "alerts_true": alerts_true,
        "held_unconfirmed": len(held),
        "held_true": held_true,
    }
    lines.append(
        f"  {out['incidents']} notified incidents: {out['true']} match a scenario, {out['false']} do not "
        f"(precision {out['precision']:.0%}); {caught} of {len(scen) - not_paged} scenarios caught by an incident, "
        f"{out['missed']} missed, {not_paged} crowds without one (not paged by design, {reported} reported); "
        f"median delay to the first notification {out['median_delay_min']:.0f} min"
    )
    lines.append(
        f"  notifications per incident {out['notifications_per_incident']:.2f}: pages (opening, escalations, new elements) "
        f"{out['pages_per_incident']:.2f}, {n_repeats} repeats of still-firing incidents, the rest resolutions; "
        f"false incidents {out['false_per_day_per_10k']:.1f} per day per 10,000 elements "
        f"({n_el:,} elements, {days:.2f} days); {out['silent_incidents']} incidents never notified"
    )
    lines.append(
        f"  the same findings as alerts: {alerts} alerts, {alerts_true} on a scenario's scope and time "
        f"({alerts_true / max(alerts, 1):.0%}); confirmation held back {len(held)} incidents "
        f"(a lone anomaly episode shorter than the confirmation time), {held_true} of them on a scenario"
    )
    out["lines"] = lines
    out["appendix"] = false_incident_appendix(false_ids, day.topology.levels)
    return out


def false_incident_appendix(false_incidents, levels) -> list[str]:
    """One explanation per false incident: scope, rule or metric, and what the data did (each
    member's own summary: value, expected value and threshold), so its cause can be fixed where
    it arises (generator, rule default or detector)."""
    lines = ["== appendix: false incidents (no injected scenario on their scope and time)"]
    if not false_incidents:
        return lines + ["  none"]
    why = Counter()
    for inc in sorted(false_incidents, key=lambda i: i.start_ms):
        lines.append(f"  {inc.id} {inc.summary(levels)}")
        for a in inc.ordered()[:4]:
            lab = a.labels
            what = lab.get("rule") or lab.get("metric") or lab["alertname"]
            kind = lab.get("source", "?")
            why[(kind, what, lab.get("classification", ""))] += 1
            desc = a.annotations.get("summary", "")
            if kind == "sla":  # the worst value while breached, not only the recovery
                desc = a.annotations.get("description", desc)
            lines.append(f"      {kind} {what} [{lab.get('classification', '')}]: {desc}")
        if len(inc.members) > 4:
            lines.append(f"      ... {len(inc.members) - 4} more members")
    lines.append("  false-incident members by source, rule/metric and classification:")
    for (kind, what, cls), n in why.most_common():
        lines.append(f"    {n:4d}  {kind} {what} {cls}")
    return lines
