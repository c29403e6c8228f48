"""Default SLA rules on a seeded synthetic day: firing alerts match injected scenarios.

Precision: share of firing episodes whose scope (element, or the elements of a site) overlaps an
injected fault scenario (congestion, failure, degradation) in element and time (the scenario's
span plus one hour, as windows and ``for`` delay firing and long burn windows keep it).
Recall per scenario type: share of scenarios with at least one overlapping firing episode.
"""

import numpy as np
import pytest

from telcoanalytics.sla.sla import SlaMonitor

MIN = 60_000
FAULTS = ("congestion", "failure", "degradation")
SLACK_MS = 3_600_000


def replay(day, lag_ms=10 * MIN):
    """Arrival-order replay (late, duplicate, corrupted rows included), one advance per minute of
    arrival time, ``lag_ms`` behind it (PM rows are stamped at interval start, arrive after its end)."""
    mon = SlaMonitor(day.topology)
    evs, cur = [], None
    for src, rows, arr, _ in day.raw_batches(60_000, with_arrival=True):
        w = int(arr.max()) // MIN
        if cur is not None and w > cur:
            evs += mon.advance((cur + 1) * MIN - lag_ms)
        cur = w if cur is None else max(cur, w)
        mon.update(src, rows)
    evs += mon.advance(day.end_ms)
    return evs


def episodes(evs, end_ms):
    """(rule, scope_level, scope_id, start_ms, end_ms) of every firing episode."""
    res = {(e.rule, e.scope_level, e.scope_id, e.start_ms): e.t_ms for e in evs if e.state == "resolved"}
    return [
        (
            e.rule,
            e.scope_level,
            e.scope_id,
            e.start_ms,
            res.get((e.rule, e.scope_level, e.scope_id, e.start_ms), end_ms),
        )
        for e in evs
        if e.state == "firing"
    ]


def score(evs, day):
    tab = day.topology_table
    col = {"site": "site_id", "region": "region_id"}

    def elements(level, sid):
        return {int(sid)} if level == "element" else set(tab["element_id"][tab[col[level]] == sid].tolist())

    labels = day.labels
    lab_el = [elements(str(lb["scope_level"]), int(lb["scope_id"])) for lb in labels]
    eps = episodes(evs, day.end_ms)
    hit = np.zeros(len(labels), bool)
    true_pos = 0
    for _rule, level, sid, t0, t1 in eps:
        els = elements(level, sid)
        m = [
            i
            for i, lb in enumerate(labels)
            if t0 <= lb["end_ms"] + SLACK_MS and t1 >= lb["start_ms"] and els & lab_el[i]
        ]
        hit[m] = True
        true_pos += any(str(labels[i]["scenario"]) in FAULTS for i in m)
    kinds = labels["scenario"].astype(str)
    silent = (kinds == "failure") & (labels["source"].astype(str) == "all")
    recall = {
        k: (int(hit[(kinds == k) & ~silent].sum()), int(((kinds == k) & ~silent).sum())) for k in np.unique(kinds)
    }
    recall["failure_silent"] = (int(hit[silent].sum()), int(silent.sum()))
    return len(eps), true_pos / max(len(eps), 1), recall


@pytest.mark.slow
def test_default_rules_alerts_match_injected_scenarios():
    import telcoanalytics.synth.network as synth

    day = synth.generate(synth.SynthConfig(n_elements=2000, days=0.5, seed=7))
    n, precision, recall = score(replay(day), day)
    # measured before the calibration of issue 16 (seeds 7, 11, 3): 38, 35, 37 episodes, precision
    # 0.95, 0.94, 0.89; recall 1.0 for congestion, degradation and reporting failures (the defaults
    # before: ~250 episodes, precision 0.10)
    assert 10 <= n <= 60, n
    assert precision >= 0.85, (precision, recall)
    got, total = recall["congestion"]
    assert total >= 3 and got == total, recall
    # the latency lines are calibrated above the slowest healthy cells (normal busy hours breach
    # none, see default_rules): a mild 3x drift of a fast cell stays below them; the anomaly
    # detector judges it against the cell's own baseline (paged as a degradation by anomaly.policy)
    got, total = recall["degradation"]
    assert total >= 3 and got >= total // 2, recall
    got, total = recall["failure"]  # failures that keep reporting (errors, unavailable s)
    assert total >= 1 and got == total, recall
    # crowds are surges below capacity, not faults: no alert
    assert recall["crowd"][0] == 0, recall
