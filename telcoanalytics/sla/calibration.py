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
    """Per threshold rule, the KPI over the rule's window on every node, sampled every ``step_min``.

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
    dict rule name -> (values, hours)
        ``values`` is a ``(samples, nodes)`` float array, NaN where the node is out of the rule's
        scope (element-level filters) or has fewer than the rule's ``min_samples``; ``hours`` the
        UTC hour of day of each sample.
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
            out[r.name][0].append(np.where(ok, tab[r.kpi], np.nan))
            out[r.name][1].append((t // 3_600_000) % 24)

    replay_monitor(day, rules, step_min=step_min, on_step=sample)
    return {k: (np.array(v, dtype=np.float64), np.array(h, dtype=np.int8)) for k, (v, h) in out.items()}


def sustained_edge(values: np.ndarray, n_consecutive: int, up: bool) -> float:
    """The most extreme level a node held for ``n_consecutive`` samples in a row: for an upper
    (``up``) rule the max over nodes and time of the rolling minimum, for a lower rule the min of
    the rolling maximum (NaN breaks a run).

    Examples
    --------
    >>> v = np.array([[1.0, 5.0], [9.0, 6.0], [2.0, 7.0]])
    >>> float(sustained_edge(v, 1, True)), float(sustained_edge(v, 2, True)), float(sustained_edge(v, 2, False))
    (9.0, 6.0, 6.0)
    """
    k = max(int(n_consecutive), 1)
    if values.shape[0] < k or not values.size:
        return float("nan")
    x = np.where(np.isnan(values), -np.inf, values if up else -values)  # NaN breaks a run
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=0).min(axis=-1)
    edge = win.max()
    if not np.isfinite(edge):
        return float("nan")
    return float(edge if up else -edge)


def normal_firings(day, rules=None) -> dict:
    """Firing episodes per rule when ``rules`` monitor ``day`` (a normal day: each one is false)."""
    _, evs = replay_monitor(day, rules)
    out: dict = {}
    for e in evs:
        if e.state == "firing":
            out[e.rule] = out.get(e.rule, 0) + 1
    return out


def calibration_table(values: dict, rules, step_min: int = 5) -> list[str]:
    """One line per threshold rule: samples with data, the healthy edge of one sample and the edge
    held for the rule's ``for`` (what could fire it), the busy-hour (10-16 h UTC) edge, the
    threshold and the headroom (threshold over held edge; for ``<`` rules their difference)."""
    from telcoanalytics.sla.sla import SlaRule

    lines = [f"{'rule':<26} {'samples':>8} {'edge':>8} {'held':>8} {'busy-h':>8} {'threshold':>9}  headroom  for"]
    for r in rules:
        if not isinstance(r, SlaRule) or r.name not in values:
            continue
        v, h = values[r.name]
        up = r.comparator in (">", ">=")
        n = int(np.isfinite(v).sum())
        if not n:
            lines.append(
                f"{r.name:<26} {0:8d} {'-':>8} {'-':>8} {'-':>8} {r.threshold:9.4g}  no node had enough samples"
            )
            continue
        k = 1 + r.for_min // step_min
        edge = np.nanmax(v) if up else np.nanmin(v)
        held = sustained_edge(v, k, up)
        busy = sustained_edge(v[(h >= 10) & (h < 16)], k, up)
        room = f"x{r.threshold / held:.2f}" if up and held > 0 else f"{r.threshold - held:+.3g}"
        lines.append(
            f"{r.name:<26} {n:8d} {edge:8.4g} {held:8.4g} {busy:8.4g} {r.threshold:9.4g}  {room:>8}  {r.for_min}m"
        )
    return lines
