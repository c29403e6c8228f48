"""Scenario injection for the synthetic network: where, when and how each scenario acts.

Every scenario is placed at a seeded random time away from the span's edges (aligned to the PM
grid) on elements no other scenario touches, and acts through per-(interval, element) effect
grids that the source generators read:

``congestion``      a cell's demand ramps up for ~1 h until the load ratio passes capacity
                    (x ~ 1.1-1.5), stays there 30-90 min, then recovers over 20 min. Utilisation
                    saturates near 100 %, the excess demand is blocked (causes 34/42), latency
                    and loss rise.
``failure``         ``silent``: a cell stops producing any record (CDR, metrics, flows, QoS); its
                    site's other sectors absorb part of its demand. ``errors``: a cell or switch
                    keeps working but its error counter steps up 20-60x, it reports unavailable
                    seconds, packet loss rises and (cells) calls fail with causes 27/38/41/102.
``degradation``     a cell's or switch's latency drifts up linearly over 2-6 h to 3-8x its
                    baseline (jitter follows, a little loss), then is repaired.
``crowd``           the 4-8 radio sites nearest a venue see a correlated demand surge (1.8-3x)
                    for 2-4 h, capped below capacity: more attempts and utilisation, no faults.
``collection_gap``  a region's PM collector delivers no equipment metrics for 20-90 min; the
                    network itself is fine (CDRs, flows and QoS continue).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from telcoanalytics.synth.topology import SWITCH, SynthTopology

MIN_MS = 60_000
SCENARIOS = ("congestion", "failure", "degradation", "crowd", "collection_gap")
CONGESTION_ONSET = 0.85
"""Load ratio from which a cell's queues overflow: the QoS model's packet loss grows as
``100 (u - 0.85)^2`` above it and latency climbs steeply (``synth.sources.qos_rows``)."""
NATURAL_LOAD_CAP = CONGESTION_ONSET
"""Undisturbed demand stays below the congestion onset: congestion (loss, blocking) only when
injected. It was 0.93, which let the busiest cells (busy-hour utilisation up to 0.82, times 5-minute
AR(1) noise) sit between the onset and 0.93 at busy hour with up to 0.68 % packet loss and about
doubled latency for tens of minutes, unlabelled: on a normal day of 2,000 elements (seed 101) 9
elements had 34 five-minute points above 0.3 % loss (none now). A congestion the ground truth
called normal: the source of most false incidents of the synthetic scorecard (issue 16)."""
CROWD_LOAD_CAP = CONGESTION_ONSET  # a crowd surge is capped below the onset too (it is not a fault)


@dataclass
class Scenario:
    """One injected scenario (dense indices inside the generator, ms times on the PM grid)."""

    kind: str
    mode: str  # failure: "silent" | "errors"; "" otherwise
    elements: np.ndarray  # dense indices of the elements whose behaviour changes
    start_ms: int
    end_ms: int
    phases: dict = field(default_factory=dict)  # name -> ms (e.g. plateau_start_ms)
    params: dict = field(default_factory=dict)  # numbers that define the effect
    site: int = -1  # dense site (crowd venue), -1 if n/a
    region: int = -1  # dense region (collection gap), -1 if n/a


@dataclass
class Effects:
    """Per-(interval, element) effect grids, shape ``(n_t, n_elements)``."""

    demand: np.ndarray  # float32 demand multiplier M (>= 0)
    present: np.ndarray  # bool: element produces records (False while silent)
    gap: np.ndarray  # bool: equipment metrics not collected
    err_mult: np.ndarray  # float32 multiplier of the error counter
    unavail_p: np.ndarray  # float32 probability of unavailable seconds in the interval
    fail_p: np.ndarray  # float32 extra share of call attempts failing (causes 27/38/41/102)
    loss_add: np.ndarray  # float32 additive packet loss (percent)
    lat_mult: np.ndarray  # float32 latency multiplier

    @classmethod
    def neutral(cls, n_t: int, n_e: int) -> Effects:
        f = lambda v: np.full((n_t, n_e), v, dtype=np.float32)  # noqa: E731
        return cls(
            f(1.0), np.ones((n_t, n_e), bool), np.zeros((n_t, n_e), bool), f(1.0), f(0.0), f(0.0), f(0.0), f(1.0)
        )


class _Placer:
    """Chooses non-overlapping elements/sites and seeded start intervals."""

    def __init__(self, topo: SynthTopology, n_t: int, dt_ms: int, rng: np.random.Generator, profile: np.ndarray):
        self.topo, self.n_t, self.dt, self.rng, self.profile = topo, n_t, dt_ms, rng, profile
        self.used_sites: set[int] = set()
        self.blocked_regions: set[int] = set()
        self.margin = int(max(1, min(round(60 * MIN_MS / dt_ms), n_t // 10)))

    def k(self, minutes: float) -> int:
        return max(1, int(round(minutes * MIN_MS / self.dt)))

    def fit(self, phases: list[int]) -> list[int]:
        """Shrink phase lengths (intervals) proportionally so they fill <= 80% of the usable span."""
        avail = max(1, int(0.8 * (self.n_t - 2 * self.margin)))
        tot = sum(phases)
        if tot <= avail:
            return phases
        return [max(1, int(p * avail / tot)) for p in phases]

    def start(self, total_k: int, n_candidates: int = 1, focus: int = 0) -> int:
        lo, hi = self.margin, self.n_t - self.margin - total_k
        if hi < lo:
            lo, hi = 0, max(0, self.n_t - total_k)
        cand = self.rng.integers(lo, hi + 1, n_candidates)
        if n_candidates == 1:
            return int(cand[0])
        # Prefer the busiest candidate (evaluated at offset ``focus`` into the scenario).
        return int(cand[np.argmax(self.profile[np.minimum(cand + focus, self.n_t - 1)])])

    def pick(self, pool_mask: np.ndarray, what: str, prefer_urban: bool = False) -> int:
        t = self.topo
        ok = pool_mask & ~np.isin(t.site, np.fromiter(self.used_sites, np.int64, len(self.used_sites)))
        if self.blocked_regions:
            ok &= ~np.isin(t.region, np.fromiter(self.blocked_regions, np.int64, len(self.blocked_regions)))
        if prefer_urban and np.any(ok & t.urban):
            ok &= t.urban
        cand = np.flatnonzero(ok)
        if len(cand) == 0:
            raise ValueError(
                f"no free element left for a {what} scenario; use more n_elements or "
                "fewer scenarios (n_congestion, n_failure, ...)"
            )
        e = int(cand[self.rng.integers(len(cand))])
        self.used_sites.add(int(t.site[e]))
        return e


def _ramp(n_t: int, knots_k: list[float], values: list[float]) -> np.ndarray:
    """Piecewise-linear profile over interval mid-points, 0 outside the knots."""
    mid = np.arange(n_t) + 0.5
    return np.interp(mid, knots_k, values, left=0.0, right=0.0)


def inject(
    counts: dict,
    topo: SynthTopology,
    times_ms: np.ndarray,
    dt_ms: int,
    x_base: np.ndarray,
    profile: np.ndarray,
    weight: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[Scenario], Effects]:
    """Place ``counts[kind]`` scenarios of each kind and build their effect grids.

    Parameters
    ----------
    counts : dict kind -> int
    topo : SynthTopology
    times_ms : int64 (n_t,)  start of every PM interval.
    dt_ms : int  PM interval.
    x_base : float32 (n_t, n_elements)  undisturbed load ratio of the cells.
    profile : float64 (n_t,)  diurnal profile per interval (used to put congestion in busy hours).
    weight : float64 (n_elements,)  call volume weight of each cell; congestion and failures with
        errors go to cells at or above the median, which carry enough calls to show them.
    rng : numpy.random.Generator

    Returns
    -------
    (list of Scenario, Effects)

    Raises
    ------
    ValueError
        If the topology has no free element/site left for a requested scenario.
    """
    n_t, n_e = x_base.shape
    eff = Effects.neutral(n_t, n_e)
    pl = _Placer(topo, n_t, dt_ms, rng, profile)
    is_cell = topo.is_cell
    busy_cell = is_cell & (weight >= np.median(weight[is_cell])) if is_cell.any() else is_cell
    cls = topo.table["equipment_class"]
    out: list[Scenario] = []
    t0 = int(times_ms[0]) if n_t else 0

    def ms(k: float) -> int:  # label times are clipped to the span (spans shorter than a scenario)
        return t0 + min(int(round(k)), n_t) * dt_ms

    # Collection gaps first: their regions are kept free of other scenarios when possible.
    n_reg = len(topo.region_ids)
    n_gap = int(counts.get("collection_gap", 0))
    gap_regions = rng.permutation(n_reg)[:n_gap] if n_gap <= n_reg else rng.integers(0, n_reg, n_gap)
    for r in gap_regions:
        (d,) = pl.fit([pl.k(rng.uniform(20, 90))])
        k0 = pl.start(d)
        members = np.flatnonzero(topo.region == r)
        eff.gap[k0 : k0 + d, members] = True
        out.append(
            Scenario(
                "collection_gap", "", members, ms(k0), ms(k0 + d), region=int(r), params={"n_elements": len(members)}
            )
        )
    if len(set(gap_regions.tolist())) < n_reg:
        pl.blocked_regions = set(int(r) for r in gap_regions)

    # Crowd events: a venue and the nearest radio sites of its region.
    for _ in range(int(counts.get("crowd", 0))):
        venue_e = pl.pick(is_cell, "crowd", prefer_urban=True)
        r = topo.region[venue_e]
        cells_r = np.flatnonzero(is_cell & (topo.region == r))
        sites_r, first = np.unique(topo.site[cells_r], return_index=True)
        free = ~np.isin(sites_r, np.fromiter(pl.used_sites - {int(topo.site[venue_e])}, np.int64))
        sites_r, first = sites_r[free], first[free]
        lat, lon = topo.table["lat"][cells_r[first]], topo.table["lon"][cells_r[first]]
        vlat, vlon = topo.table["lat"][venue_e], topo.table["lon"][venue_e]
        dist_km = 111.2 * np.hypot(lat - vlat, (lon - vlon) * np.cos(np.radians(vlat)))
        n_sites = int(rng.integers(4, 9))
        near = sites_r[np.argsort(dist_km, kind="stable")[:n_sites]]
        pl.used_sites.update(int(s) for s in near)
        members = np.flatnonzero(is_cell & np.isin(topo.site, near))
        up, plat, down = pl.fit([pl.k(60), pl.k(rng.uniform(90, 180)), pl.k(30)])
        k0 = pl.start(up + plat + down, n_candidates=4, focus=up + plat // 2)  # events favour busy hours
        m_peak = rng.uniform(1.8, 3.0)
        f = _ramp(n_t, [k0, k0 + up, k0 + up + plat, k0 + up + plat + down], [0, 1, 1, 0])
        xb = x_base[:, members]
        mult = np.maximum(1.0, np.minimum(1.0 + (m_peak - 1.0) * f[:, None], CROWD_LOAD_CAP / xb))
        eff.demand[:, members] *= mult.astype(np.float32)
        out.append(
            Scenario(
                "crowd",
                "",
                members,
                ms(k0),
                ms(k0 + up + plat + down),
                phases={"plateau_start_ms": ms(k0 + up), "plateau_end_ms": ms(k0 + up + plat)},
                params={
                    "demand_peak": m_peak,
                    "n_sites": len(near),
                    "max_distance_km": float(np.sort(dist_km)[len(near) - 1]),
                },
                site=int(topo.site[venue_e]),
            )
        )

    for _ in range(int(counts.get("congestion", 0))):
        e = pl.pick(busy_cell, "congestion", prefer_urban=True)
        up, plat, down = pl.fit([pl.k(60), pl.k(rng.uniform(30, 90)), pl.k(20)])
        k0 = pl.start(up + plat + down, n_candidates=4, focus=up)
        x_peak = rng.uniform(1.12, 1.5)
        f = _ramp(n_t, [k0, k0 + up, k0 + up + plat, k0 + up + plat + down], [0, 1, 1, 0])
        target = x_peak * np.exp(0.03 * rng.standard_normal(n_t))
        xb = x_base[:, e].astype(np.float64)
        eff.demand[:, e] *= ((1.0 - f) + f * target / xb).astype(np.float32)
        out.append(
            Scenario(
                "congestion",
                "",
                np.array([e]),
                ms(k0),
                ms(k0 + up + plat + down),
                phases={"plateau_start_ms": ms(k0 + up), "plateau_end_ms": ms(k0 + up + plat)},
                params={"load_peak": x_peak},
            )
        )

    for _ in range(int(counts.get("failure", 0))):
        silent = rng.random() < 0.5
        if silent:
            e = pl.pick(is_cell, "failure", prefer_urban=True)
        else:
            e = pl.pick(busy_cell | (cls == SWITCH), "failure", prefer_urban=True)
        (d,) = pl.fit([pl.k(rng.uniform(30, 120))])
        k0 = pl.start(d)
        sl = slice(k0, k0 + d)
        params: dict = {}
        if silent:
            eff.present[sl, e] = False
            sib = np.flatnonzero(is_cell & (topo.site == topo.site[e]) & (np.arange(n_e) != e))
            if len(sib):
                absorb = 1.0 + 0.6 / len(sib)
                xb = x_base[sl][:, sib]
                eff.demand[sl, sib] *= np.maximum(1.0, np.minimum(absorb, 0.9 / xb)).astype(np.float32)
            params = {"absorbed_by": len(sib)}
        else:
            em, fp, la = rng.uniform(20, 60), rng.uniform(0.08, 0.25), rng.uniform(1.0, 4.0)
            eff.err_mult[sl, e] *= em
            eff.unavail_p[sl, e] = 0.6
            eff.loss_add[sl, e] += la
            if is_cell[e]:
                eff.fail_p[sl, e] += fp
            params = {"error_mult": em, "fail_share": fp if is_cell[e] else 0.0, "loss_add_pct": la}
        out.append(
            Scenario("failure", "silent" if silent else "errors", np.array([e]), ms(k0), ms(k0 + d), params=params)
        )

    for _ in range(int(counts.get("degradation", 0))):
        e = pl.pick(is_cell | (cls == SWITCH), "degradation")
        (d,) = pl.fit([pl.k(rng.uniform(120, 360))])
        k0 = pl.start(d)
        factor = rng.uniform(3.0, 8.0)
        f = _ramp(n_t, [k0, k0 + d - 1e-9, k0 + d], [0, 1, 0])
        eff.lat_mult[:, e] *= (1.0 + (factor - 1.0) * f).astype(np.float32)
        eff.loss_add[:, e] += (0.5 * f).astype(np.float32)
        out.append(Scenario("degradation", "", np.array([e]), ms(k0), ms(k0 + d), params={"latency_factor": factor}))
    return out, eff
