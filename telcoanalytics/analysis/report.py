"""The replay's analysis section: the localisation of the worst incident, routing hot spots and
opportunities, top trends, a capacity forecast, complaints against KPIs, before/after around a
change, and complaints per region and category.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["analysis_report_lines", "find_component"]


def find_component(pipeline):
    """The :class:`~telcoanalytics.analysis.component.AnalysisComponent` of a pipeline (or the
    component itself), else None."""
    from telcoanalytics.analysis.component import AnalysisComponent

    if isinstance(pipeline, AnalysisComponent):
        return pipeline
    for comp in getattr(pipeline, "components", {}).values():
        if isinstance(comp, AnalysisComponent):
            return comp
    return None


def _from_day(day):
    """An AnalysisComponent fed with a synthetic day's clean records (when the pipeline has none)."""
    from telcoanalytics.analysis.component import AnalysisComponent
    from telcoanalytics.pipeline.contract import RoutedBatch
    from telcoanalytics.records import ELEMENT_FIELD

    comp = AnalysisComponent(day.topology, day.config.pm_interval_ms, day.capacity_mbps)
    for s in ("cdr", "flow", "complaint", "equip", "qos"):
        rows = day[s]
        if len(rows):
            idx = day.topology.index_of(rows[ELEMENT_FIELD[s]])
            comp.update(RoutedBatch(s, rows, idx, np.zeros(len(rows), np.int64)))
    return comp


def _hhmm(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms"))[11:16]


def analysis_report_lines(day_or_none, pipeline, k: int = 3) -> list[str]:
    """Short analysis section of the replay for localisation, routing and complaints.

    Parameters
    ----------
    day_or_none : SynthDay or None
        The synthetic day: element capacities, and the injected truth to show beside the
        findings; also the data when ``pipeline`` has no analysis component.
    pipeline : Pipeline or AnalysisComponent
        Where the live cubes and flows are (an ``AnalysisComponent`` among its components).
    k : int
        Causes, hot spots and opportunities listed.

    Returns
    -------
    list of str
    """
    from telcoanalytics.analysis.localize import localize_cube, worst_incident
    from telcoanalytics.analysis.routing import routing_efficiency, with_capacities

    comp = find_component(pipeline)
    if day_or_none is None and comp is not None:
        day_or_none = comp.context_day  # the synthetic day the replay runs on, if any
    lines = ["== analysis (localisation, routing, complaints)"]
    if comp is None:
        if day_or_none is None:
            return lines + ["  no analysis component in the pipeline (add analysis.AnalysisComponent)"]
        comp = _from_day(day_or_none)
        lines.append("  (from the synthetic day's records: the pipeline has no analysis component)")
    # ---- localisation of the worst incident
    cube = comp.cubes["localize"]
    inc = worst_incident(cube) if comp.n["cdr"] else None
    if inc is None:
        lines.append("  localisation: no region-hour with a significant rise of the drop rate")
    elif isinstance(inc["baseline"], list) and not inc["baseline"]:
        lines.append("  localisation: no baseline hours before the worst region-hour yet")
    else:
        ((lv, node),) = inc["scope"].items()
        t0 = time.perf_counter()
        loc = localize_cube(cube, scope=inc["scope"], window=inc["window"], baseline=inc["baseline"])
        ms = 1000 * (time.perf_counter() - t0)
        lines.append(
            f"  worst incident: {lv} {node} {_hhmm(inc['window'][0])}-{_hhmm(inc['window'][1])} UTC, "
            f"{inc['actual']:.0f} dropped calls vs {inc['expected']:.1f} expected"
        )
        lines.append(f"  localised from the live cube in {ms:.0f} ms (by likelihood score; share of the excess):")
        lines += [f"    {c.describe()}" for c in loc.causes[:k]] or ["    no significant combination"]
        truth = [
            f
            for f in getattr(day_or_none, "root_causes", [])
            if f.start_ms < inc["window"][1] and inc["window"][0] < f.end_ms
        ]
        for f in truth:
            lines.append(
                f"    injected: region {f.region_id} {' & '.join(f'{d}={v}' for d, v in f.items)} "
                f"{_hhmm(f.start_ms)}-{_hhmm(f.end_ms)}"
            )
    # ---- routing
    topo = comp.topology
    cap = topo.attributes.get("capacity_mbps")
    if cap is None:
        cap = comp.capacity_mbps if comp.capacity_mbps is not None else getattr(day_or_none, "capacity_mbps", None)
    if not comp.n["flow"]:
        lines.append("  routing: no flow records")
    elif cap is None:
        lines.append("  routing: no element capacities (topology attribute capacity_mbps)")
    else:
        rep = routing_efficiency(comp.flows, with_capacities(topo, cap), interval_ms=comp.interval_ms)
        lines += ["  " + x for x in rep.lines(k)]
    # ---- statistics over the kept series (trend, forecast, complaint correlation, before/after)
    from telcoanalytics.analysis.series import statistics_report_lines

    lines += statistics_report_lines(comp.series, day_or_none, k)
    # ---- complaints
    if not comp.n["complaint"]:
        lines.append("  complaints: none received")
    else:
        q = comp.complaints["complaints"].query(("region", "category"), measures=["count"])
        lines.append(f"  complaints per region and category ({int(q['count'].sum()):,} complaints):")
        for r in np.unique(q["region"]):
            sel = q[q["region"] == r]
            order = np.argsort(-sel["count"], kind="stable")
            parts = ", ".join(f"{sel['category'][i]} {int(sel['count'][i])}" for i in order)
            lines.append(f"    region {r}: {parts}")
    return lines
