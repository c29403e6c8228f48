"""Network changes of known effect, for before/after analysis.

A *change* is a software upgrade rolled out at one instant ``at_ms`` to the cells of one vendor at
3-8 sites of a region. From ``at_ms`` on, the upgraded cells' KPI moves by a known effect:

``latency``   QoS ``latency_ms`` and ``jitter_ms`` multiplied by ``factor`` (U(0.75, 0.9): the
              upgrade helps, or U(1.1, 1.25): it hurts); the effect on the log of latency is
              ``ln(factor)``
``prb``       equipment ``prb_util_pct`` (radio resource utilisation) multiplied by ``factor``
              U(0.8, 0.92): a new scheduler needs fewer resource blocks for the same traffic (a
              reduction, so the 0..100 range is never left); the effect on its log is ``ln(factor)``

Upgraded sites are free of every injected scenario, and each change lists *controls*: the cells of
the same vendor and technology in the same region at untouched, scenario-free sites (the
difference-in-differences comparison group). ``SynthConfig(n_changes=k)`` applies them inside
:func:`telcoanalytics.synth.generate` (off by default, so every other run is unchanged) and stores
the truth in ``SynthDay.changes``. Only the QoS or equipment rows of the upgraded cells after
``at_ms`` change; no other stream does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telcoanalytics.records import METRIC_CODE, VENDORS

__all__ = ["CHANGE_KPIS", "Change", "apply_changes"]

CHANGE_KPIS = ("latency", "prb")
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Change:
    """One change: ``kpi`` (``latency`` or ``prb``), the ``effect`` (a multiplicative factor), the
    ``source`` / ``metric`` it acts on, ``at_ms``, upgraded and control element ids, region, vendor."""

    kpi: str
    effect: float
    source: str
    metric: str
    at_ms: int
    element_ids: np.ndarray
    control_ids: np.ndarray
    region_id: int
    vendor: str

    @property
    def log_effect(self) -> float:
        """The effect on the log of the KPI: ``ln factor``."""
        return float(np.log(self.effect))

    def to_dict(self) -> dict:
        return {
            "kind": "software_upgrade",
            "kpi": self.kpi,
            "effect": float(self.effect),
            "source": self.source,
            "metric": self.metric,
            "at_ms": int(self.at_ms),
            "element_ids": [int(x) for x in self.element_ids],
            "control_ids": [int(x) for x in self.control_ids],
            "region_id": int(self.region_id),
            "vendor": self.vendor,
        }


def apply_changes(
    arrays: dict,
    topo,
    busy_element_ids: np.ndarray,
    span_ms: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    *,
    sites=(3, 8),
) -> tuple[dict, list[Change]]:
    """Apply ``n`` changes to copies of ``arrays["qos"]`` / ``arrays["equip"]``.

    Parameters
    ----------
    arrays : dict source -> canonical array
    topo : SynthTopology
    busy_element_ids : int array
        Elements whose behaviour scenarios change (collection gaps excluded: they only hide
        metrics); their sites are neither upgraded nor controls.
    span_ms : (start, end)
        ``at_ms`` is a whole hour in the middle third of the span.
    n : int
    rng : numpy.random.Generator
    sites : (int, int)
        Sites per change, uniform in ``[lo, hi]``.

    Returns
    -------
    (dict, list of Change)
        The arrays (only changed sources copied) and the truth.

    Raises
    ------
    ValueError
        If no region has enough free sites of one vendor.
    """
    out = dict(arrays)
    t = topo.table
    is_cell = topo.is_cell
    busy_sites = np.unique(topo.site[np.isin(t["element_id"], busy_element_ids)])
    free_cell = is_cell & ~np.isin(topo.site, busy_sites)
    t0, t1 = int(span_ms[0]), int(span_ms[1])
    lo_h, hi_h = (t0 + (t1 - t0) // 3) // _HOUR_MS, (t0 + 2 * (t1 - t0) // 3) // _HOUR_MS
    used = np.zeros(len(t), dtype=bool)
    changes = []
    for i in range(int(n)):
        kpi = CHANGE_KPIS[i % len(CHANGE_KPIS)]
        for _ in range(100):
            r = int(rng.integers(len(topo.region_ids)))
            v = int(rng.integers(len(VENDORS)))
            pool = free_cell & ~used & (topo.region == r) & (t["vendor"] == v)
            cand = np.unique(topo.site[pool])
            k = int(rng.integers(sites[0], sites[1] + 1))
            if len(cand) >= 2 * k:  # leave as many sites for controls
                break
        else:
            raise ValueError(
                f"no region has {2 * sites[0]} scenario-free sites of one vendor for a change; use a "
                "larger network or fewer changes / scenarios"
            )
        pick = rng.choice(cand, size=k, replace=False)
        members = np.flatnonzero(pool & np.isin(topo.site, pick))
        techs = np.unique(t["technology"][members])
        ctrl = np.flatnonzero(pool & ~np.isin(topo.site, pick) & np.isin(t["technology"], techs))
        used[members] = True
        at = int(rng.integers(lo_h, max(hi_h, lo_h + 1))) * _HOUR_MS
        ids = t["element_id"][members]
        if kpi == "latency":
            f = float(rng.uniform(0.75, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.25))
            q = out["qos"] = out["qos"].copy() if out["qos"] is arrays["qos"] else out["qos"]
            m = np.isin(q["element_id"], ids) & (q["ts_ms"] >= at)
            q["latency_ms"][m] = np.round(q["latency_ms"][m] * f, 3)
            q["jitter_ms"][m] = np.round(q["jitter_ms"][m] * f, 3)
            changes.append(
                Change(
                    "latency",
                    f,
                    "qos",
                    "latency_ms",
                    at,
                    ids,
                    t["element_id"][ctrl],
                    int(topo.region_ids[r]),
                    VENDORS[v],
                )
            )
        else:
            d = float(rng.uniform(0.8, 0.92))
            e = out["equip"] = out["equip"].copy() if out["equip"] is arrays["equip"] else out["equip"]
            m = np.isin(e["element_id"], ids) & (e["ts_ms"] >= at) & (e["metric_id"] == METRIC_CODE["prb_util_pct"])
            e["value"][m] = e["value"][m] * d
            changes.append(
                Change(
                    "prb",
                    d,
                    "equip",
                    "prb_util_pct",
                    at,
                    ids,
                    t["element_id"][ctrl],
                    int(topo.region_ids[r]),
                    VENDORS[v],
                )
            )
    return out, changes
