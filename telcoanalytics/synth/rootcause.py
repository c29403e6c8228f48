"""Faults with a known root-cause combination, for scoring root-cause localisation.

A *root-cause fault* raises the drop rate of the answered calls of one combination of dimension
values inside a region (``vendor=vendor_b & technology=4g``, ``site=1200034``,
``equipment_class=small_cell & service=video`` ...) during a window of whole hours: each matching
answered voice or video call (the services that can drop) that ended normally is cut by the
network with probability ``p_drop`` (a release cause of ``CAUSES_DROP``, the call shortened). The
probability is set so that the region's drop rate in the window is multiplied by a factor drawn
from ``rate_factor`` (1.5-3 by default: "the region's drop rate doubles").

:func:`inject_root_causes` applies faults to a CDR array and returns the truth; ``SynthConfig(
n_root_cause=k)`` does it inside :func:`telcoanalytics.synth.generate` (off by default, so every
other run is unchanged) and stores the truth in ``SynthDay.root_causes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telcoanalytics.records import CAUSE_NORMAL, CAUSE_USER, EQUIPMENT_CLASSES, SERVICES, TECHNOLOGIES, VENDORS
from telcoanalytics.synth.sources import CAUSES_DROP

__all__ = ["ROOT_CAUSE_DIMS", "RootCauseFault", "cdr_attributes", "inject_root_causes", "matches"]

ROOT_CAUSE_DIMS = ("site", "equipment_class", "vendor", "technology", "service")
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class RootCauseFault:
    """One injected fault: ``region_id``, the combination ``items`` ((dimension, label) pairs with
    the labels a cube reports: site ids, class / vendor / technology / service names), the window
    ``[start_ms, end_ms)``, the extra drop probability and the calls it cut."""

    region_id: int
    items: tuple
    start_ms: int
    end_ms: int
    p_drop: float
    n_matching: int
    n_dropped: int

    def to_dict(self) -> dict:
        return {
            "region_id": int(self.region_id),
            "items": [[d, v if isinstance(v, str) else int(v)] for d, v in self.items],
            "start_ms": int(self.start_ms),
            "end_ms": int(self.end_ms),
            "p_drop": float(self.p_drop),
            "n_matching": int(self.n_matching),
            "n_dropped": int(self.n_dropped),
        }


def cdr_attributes(cdr: np.ndarray, topology_table: np.ndarray) -> dict:
    """Label arrays per CDR row: ``region``, ``site`` (ids) and ``equipment_class``, ``vendor``,
    ``technology``, ``service`` (names); rows of unknown elements get region -1."""
    t = topology_table
    order = np.argsort(t["element_id"])
    pos = np.clip(np.searchsorted(t["element_id"][order], cdr["element_id"]), 0, max(len(t) - 1, 0))
    idx = order[pos]
    known = t["element_id"][idx] == cdr["element_id"]
    return {
        "region": np.where(known, t["region_id"][idx], -1),
        "site": np.where(known, t["site_id"][idx], -1),
        "equipment_class": np.array(EQUIPMENT_CLASSES)[t["equipment_class"][idx]],
        "vendor": np.array(VENDORS)[t["vendor"][idx]],
        "technology": np.array(TECHNOLOGIES)[t["technology"][idx]],
        "service": np.array(SERVICES)[np.clip(cdr["service"], 0, len(SERVICES) - 1)],
    }


def matches(attrs: dict, items) -> np.ndarray:
    """Rows whose attributes equal every (dimension, label) of ``items``."""
    n = len(next(iter(attrs.values())))
    m = np.ones(n, dtype=bool)
    for d, v in items:
        m &= attrs[d] == v
    return m


def inject_root_causes(
    cdr: np.ndarray,
    topology_table: np.ndarray,
    span_ms: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    *,
    dims=ROOT_CAUSE_DIMS,
    order_p=(0.4, 0.4, 0.2),
    hours=(1, 3),
    share=(0.02, 0.4),
    rate_factor=(1.5, 3.0),
    max_p_drop: float = 0.5,
    min_drops: int = 20,
    attrs: dict | None = None,
) -> tuple[np.ndarray, list[RootCauseFault]]:
    """Apply ``n`` root-cause faults to a copy of ``cdr``.

    Parameters
    ----------
    cdr : CDR_DTYPE array
    topology_table : TOPOLOGY_DTYPE array
    span_ms : (start, end)
        The span; windows are whole hours inside it, away from its first and last hour.
    n : int
        Faults; each in its own region while regions last, then in windows that do not overlap.
    rng : numpy.random.Generator
    dims : sequence of str
        Dimensions a combination is drawn from (``service`` takes voice or video).
    order_p : sequence of float
        Probability of a combination of 1, 2, 3 ... dimension values.
    hours : (int, int)
        Window length in whole hours, drawn uniformly in ``[lo, hi]``.
    share : (float, float)
        Allowed share of the region's answered calls in the window that the combination carries.
    rate_factor : (float, float)
        Factor of the region's drop rate in the window, uniform; the drop probability of the
        combination's calls follows (combinations that would need more than ``max_p_drop`` are
        not chosen).
    max_p_drop : float
        Largest drop probability of a matching call.
    min_drops : int
        Windows where the region dropped fewer calls are not chosen (their rate is noise).
    attrs : dict, optional
        :func:`cdr_attributes` of ``cdr`` (computed when omitted).

    Returns
    -------
    (CDR array, list of RootCauseFault)

    Raises
    ------
    ValueError
        If no combination within ``share`` is found for a fault (network or span too small).
    """
    out = cdr.copy()
    attrs = attrs if attrs is not None else cdr_attributes(cdr, topology_table)
    t0, t1 = int(span_ms[0]), int(span_ms[1])
    n_hours = (t1 - t0) // _HOUR_MS
    regions = np.unique(topology_table["region_id"])
    droppable = np.isin(out["service"], [SERVICES.index("voice"), SERVICES.index("video")])
    answered = (out["answer_ms"] >= 0) & droppable
    dropped = answered & ~np.isin(out["cause"], CAUSE_NORMAL + CAUSE_USER)
    intact = answered & ~dropped
    used: list = []
    faults = []
    order_p = np.asarray(order_p, dtype=np.float64) / np.sum(order_p)
    perm = rng.permutation(len(regions))
    for i in range(int(n)):
        for _ in range(200):
            region = int(regions[perm[i]] if i < len(regions) else regions[rng.integers(len(regions))])
            h = int(rng.integers(hours[0], hours[1] + 1))
            if n_hours < h + 2:
                raise ValueError(f"the span has {n_hours} hours; a root-cause fault needs at least {h + 2}")
            k0 = int(rng.integers(1, n_hours - h))
            ws, we = t0 + k0 * _HOUR_MS, t0 + (k0 + h) * _HOUR_MS
            if any(r == region and ws < e and s < we for r, s, e in used):
                continue
            scope = (attrs["region"] == region) & (out["start_ms"] >= ws) & (out["start_ms"] < we)
            base = scope & answered
            n_base = int(base.sum())
            n_drop = int((scope & dropped).sum())
            if n_drop < min_drops:
                continue
            extra = (rng.uniform(*rate_factor) - 1.0) * n_drop
            order = int(rng.choice(len(order_p), p=order_p)) + 1
            cols = [dims[j] for j in sorted(rng.choice(len(dims), size=min(order, len(dims)), replace=False))]
            combo = np.stack([np.unique(attrs[d][base], return_inverse=True)[1] for d in cols], axis=1)
            keys, first, counts = np.unique(combo, axis=0, return_index=True, return_counts=True)
            ok = np.flatnonzero(
                (counts >= share[0] * n_base) & (counts <= share[1] * n_base) & (counts * max_p_drop >= extra)
            )
            if len(ok) == 0:
                continue
            pick = int(ok[rng.integers(len(ok))])
            row = np.flatnonzero(base)[first[pick]]
            items = _minimal(tuple((d, _plain(attrs[d][row])) for d in cols), attrs, base)
            hit = scope & intact & matches(attrs, items)
            p = float(extra / max(int(hit.sum()), 1))
            cut = np.flatnonzero(hit)[rng.random(int(hit.sum())) < p]
            causes, probs = CAUSES_DROP
            out["cause"][cut] = rng.choice(causes, size=len(cut), p=probs)
            held = out["end_ms"][cut] - out["answer_ms"][cut]
            out["end_ms"][cut] = out["answer_ms"][cut] + (held * rng.uniform(0.05, 0.95, len(cut))).astype(np.int64)
            used.append((region, ws, we))
            faults.append(RootCauseFault(region, items, ws, we, p, int(hit.sum()), len(cut)))
            break
        else:
            raise ValueError(
                f"found no combination of {dims} carrying {share[0]:.0%}-{share[1]:.0%} of a region's "
                "answered calls for a root-cause fault; use a larger network or a wider share"
            )
    return out, faults


def _minimal(items, attrs, base):
    """Drop values implied by the others within the scope (``technology=2g`` implies
    ``equipment_class=macro_cell`` when only macro cells are 2g): the truth in its shortest form."""
    items = list(items)
    target = matches(attrs, items) & base
    changed = True
    while changed and len(items) > 1:
        changed = False
        for k in range(len(items)):
            rest = items[:k] + items[k + 1 :]
            if np.array_equal(matches(attrs, rest) & base, target):
                items = rest
                changed = True
                break
    return tuple(items)


def _plain(x):
    return str(x) if isinstance(x, (str, np.str_)) else int(x)
