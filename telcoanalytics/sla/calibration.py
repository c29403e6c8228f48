"""Calibration of SLA rule thresholds against a normal network (no scenario active).

A default rule must not fire on a healthy network, busy hours included. This module replays a
synthetic day with every scenario switched off through an :class:`~telcoanalytics.sla.sla.SlaMonitor`
and samples, every ``step_min`` minutes, each threshold rule's KPI over the rule's window on every
node in its scope that has the rule's ``min_samples``: the distribution a healthy network produces.
The extreme of that distribution (the healthy edge) and the rule's threshold give its headroom;
:func:`calibration_table` writes one line per rule. Calibrate on some seeds, check on others
(:func:`normal_firings` counts what the rules fire on held-out normal days).

Not used at run time: ``default_rules`` carries the resulting constants, documented per rule.
"""

from __future__ import annotations

import numpy as np

MIN_MS = 60_000


def normal_day(n_elements: int = 2000, seed: int = 101, days: float = 1.0):
    """A synthetic day with no scenario injected (the healthy network, busy hours included)."""
    from telcoanalytics.synth.network import SynthConfig, generate

    cfg = SynthConfig(
        n_elements=n_elements,
        days=days,
        seed=seed,
        n_congestion=0,
        n_failure=0,
        n_degradation=0,
        n_crowd=0,
        n_collection_gap=0,
    )
    return generate(cfg)


def replay_monitor(day, rules=None, *, lag_ms: int = 10 * MIN_MS, step_min: int = 0, on_step=None):
    """Replay ``day`` in arrival order through a fresh monitor, advancing every minute of arrival
    time ``lag_ms`` behind it; call ``on_step(mon, t_ms)`` every ``step_min`` minutes (0: never).

    Returns
    -------
    (SlaMonitor, list of SlaEvent)
    """
    from telcoanalytics.sla.sla import SlaMonitor

    mon = SlaMonitor(day.topology, rules)
    evs, cur, last = [], None, None
    for src, rows, arr, _ in day.raw_batches(60_000, with_arrival=True):
        w = int(arr.max()) // MIN_MS
        if cur is not None and w > cur:
            t = (cur + 1) * MIN_MS - lag_ms
            evs += mon.advance(t)
            if step_min and on_step is not None and (last is None or t - last >= step_min * MIN_MS):
                on_step(mon, t)
                last = t
        cur = w if cur is None else max(cur, w)
        mon.update(src, rows)
    evs += mon.advance(day.end_ms)
    return mon, evs


def healthy_values(day, rules=None, step_min: int = 5) -> dict:
    """Per threshold rule, the KPI values a day produced on nodes in scope with enough samples.

    Parameters
    ----------
    day : SynthDay
        Normally :func:`normal_day` (no scenario active).
    rules : list, optional
        Rules (default :func:`~telcoanalytics.sla.sla.default_rules` of the day's topology).
    step_min : int
        Sampling step in minutes of the replay's watermark.

    Returns
    -------
    dict rule name -> (values ndarray, hours ndarray)
        Every sampled value (rule window ending at the sample time) and the UTC hour of day of
        its sample.
    """
    from telcoanalytics.sla.sla import SlaRule, default_rules

    rules = default_rules(day.topology) if rules is None else rules
    thr = [r for r in rules if isinstance(r, SlaRule)]
    out: dict = {r.name: ([], []) for r in thr}

    def sample(mon, t):
        for r in thr:
            tab = mon.kpi_table(r.level, t, [r.kpi], r.window_min * 60, r.service)
            ms = r.min_samples if r.min_samples is not None else mon.kpis[r.kpi].min_samples
            ok = (tab[f"{r.kpi}__status"] == 0) & (tab[f"{r.kpi}__samples"] >= ms)
            if r.filter and r.level == mon.topology.element_level:
                ok &= mon._mask(r.filter)
            v = tab[r.kpi][ok]
            out[r.name][0].append(v)
            out[r.name][1].append(np.full(len(v), (t // 3_600_000) % 24, dtype=np.int8))

    replay_monitor(day, rules, step_min=step_min, on_step=sample)
    return {k: (np.concatenate(v) if v else np.zeros(0), np.concatenate(h) if h else np.zeros(0, np.int8))
            for k, (v, h) in out.items()}  # fmt: skip


def normal_firings(day, rules=None) -> dict:
    """Firing episodes per rule when ``rules`` monitor ``day`` (a normal day: each one is false)."""
    _, evs = replay_monitor(day, rules)
    out: dict = {}
    for e in evs:
        if e.state == "firing":
            out[e.rule] = out.get(e.rule, 0) + 1
    return out


def calibration_table(values: dict, rules) -> list[str]:
    """One line per threshold rule: samples, the healthy edge (max for ``>`` rules, min for ``<``),
    its 99.9th / 0.1th percentile, the threshold and the headroom to it."""
    from telcoanalytics.sla.sla import SlaRule

    lines = [f"{'rule':<28} {'samples':>8} {'edge':>9} {'p99.9':>9} {'busy-h edge':>11} {'threshold':>9}  headroom"]
    for r in rules:
        if not isinstance(r, SlaRule) or r.name not in values:
            continue
        v, h = values[r.name]
        up = r.comparator in (">", ">=")
        if not len(v):
            lines.append(f"{r.name:<28} {0:8d} {'-':>9} {'-':>9} {'-':>11} {r.threshold:9.4g}  no sample with enough data")
            continue
        edge = v.max() if up else v.min()
        q = np.quantile(v, 0.999 if up else 0.001)
        busy = v[(h >= 10) & (h < 16)]
        b = (busy.max() if up else busy.min()) if len(busy) else float("nan")
        room = (r.threshold / edge) if up and edge > 0 else (r.threshold - edge)
        room_s = f"x{room:.2f}" if up and edge > 0 else f"{room:+.3g}"
        lines.append(f"{r.name:<28} {len(v):8d} {edge:9.4g} {q:9.4g} {b:11.4g} {r.threshold:9.4g}  {room_s}")
    return lines
