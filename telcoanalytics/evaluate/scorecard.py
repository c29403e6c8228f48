"""Scoring a synthetic replay against the scenarios injected into its day (ground truth)."""

from __future__ import annotations

import datetime as _dt

import numpy as np


def _hhmm(t_ms) -> str:
    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M")


def scenario_scorecard(day, replay_from: int, components: dict, grace_ms: int = 900_000) -> list[str]:
    """Lines saying, for each scenario injected in the replayed span, what caught it.

    A scenario counts as caught by a component when one of its findings touches an affected
    element (or, for scopes, an element of the site/region) between the scenario's start minus and
    end plus ``grace_ms``: anomaly episodes (any classification), SLA events (firing), alerts.
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
    for lab, det in zip(day.labels, day.scenarios):
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
