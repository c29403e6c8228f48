"""Customer complaints of the synthetic network: they follow its degradations with a lag.

Complaints come from radio cells (the subscribers' serving cells) and from the calls themselves;
``SynthConfig(complaints=s)`` switches the stream on with every rate below multiplied by ``s``
(0, the default, generates none and leaves every other stream unchanged). Per PM interval and
cell, with ``calls`` the cell's undisturbed expected call attempts in the interval:

================  =================================================================================
category          rate (per interval and cell, before ``s``)
================  =================================================================================
no_coverage       ``K_SILENT * calls`` while the cell is silent (a ``failure`` scenario)
slow_data         ``K_SLOW * calls * (3 * max(load - 1, 0) + (latency factor - 1) / 4)``
                  (congestion and latency degradation)
voice_quality     ``K_QUALITY * calls * added loss (%) / 2``
dropped_calls     each dropped call (an answered call released with a network cause, including the
                  ``rootcause`` faults) with probability ``P_DROP_COMPLAINT``; each attempt failed
                  by the network (congestion / failure causes, unanswered) with ``P_FAIL_COMPLAINT``
background        ``BACKGROUND_PER_CELL_DAY`` per cell and day, spread like its calls, categories
                  ``BACKGROUND_MIX`` (billing and other complaints are never network-related)
================  =================================================================================

Each complaint is filed after a lag from its cause (the interval or the call's release): lognormal
with median ``LAG_MEDIAN_MS`` (40 min) and log-sd ``LAG_SIGMA``; complaints filed after the span
are not generated. Every complaint names its serving cell; ``P_LOCATION`` of them also carry the
customer's location (the cell's position with ~1 km of noise).
"""

from __future__ import annotations

import numpy as np

from telcoanalytics.records import CAUSE_NORMAL, CAUSE_USER, COMPLAINT_CATEGORY_CODE, empty
from telcoanalytics.synth.scenarios import Effects
from telcoanalytics.synth.sources import mix63
from telcoanalytics.synth.topology import SynthTopology

__all__ = [
    "K_SILENT",
    "K_SLOW",
    "K_QUALITY",
    "P_DROP_COMPLAINT",
    "P_FAIL_COMPLAINT",
    "BACKGROUND_PER_CELL_DAY",
    "BACKGROUND_MIX",
    "LAG_MEDIAN_MS",
    "LAG_SIGMA",
    "P_LOCATION",
    "complaint_rows",
]

K_SILENT = 0.2
K_SLOW = 0.1
K_QUALITY = 0.1
P_DROP_COMPLAINT = 0.1
P_FAIL_COMPLAINT = 0.02
BACKGROUND_PER_CELL_DAY = 0.2
BACKGROUND_MIX = {"billing": 0.4, "other": 0.2, "slow_data": 0.2, "dropped_calls": 0.1, "voice_quality": 0.1}
LAG_MEDIAN_MS = 40 * 60_000
LAG_SIGMA = 0.5
P_LOCATION = 0.5
_DAY_MS = 86_400_000


def _lag(rng, n):
    return (LAG_MEDIAN_MS * np.exp(LAG_SIGMA * rng.standard_normal(n))).astype(np.int64)


def complaint_rows(
    topo: SynthTopology,
    times_ms: np.ndarray,
    dt_ms: int,
    eff: Effects,
    x_base: np.ndarray,
    weight: np.ndarray,
    cdr: np.ndarray,
    per_cell_day: float,
    scale: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Complaints (COMPLAINT_DTYPE) sorted by ``ts_ms``; see the module docstring for the rates.

    Parameters
    ----------
    topo : SynthTopology
    times_ms : int64 (n_t,)  start of every PM interval.
    dt_ms : int  PM interval.
    eff : Effects  the scenarios' effect grids.
    x_base : float32 (n_t, n_e)  undisturbed load ratio.
    weight : float64 (n_e,)  call volume weight of each cell (0 elsewhere).
    cdr : CDR_DTYPE array  the calls (their drops and network failures raise complaints).
    per_cell_day : float  mean call attempts per cell and day (``SynthConfig.cdr_per_cell_day``).
    scale : float  multiplies every rate (> 0).
    rng : numpy.random.Generator
    """
    n_t, n_e = x_base.shape
    end_ms = int(times_ms[0]) + n_t * int(dt_ms) if n_t else 0
    is_cell = topo.is_cell
    cells = np.flatnonzero(is_cell)
    load = weight[None, cells] * x_base[:, cells].astype(np.float64)
    days = n_t * dt_ms / _DAY_MS
    c = per_cell_day * len(cells) * days / max(float(load.sum()), 1e-12)
    calls = c * load  # (n_t, n_cells) undisturbed expected attempts
    x_cell = x_base[:, cells].astype(np.float64) * eff.demand[:, cells]
    rates = {
        "no_coverage": K_SILENT * calls * ~eff.present[:, cells],
        "slow_data": K_SLOW
        * calls
        * (3.0 * np.maximum(x_cell - 1.0, 0.0) + (eff.lat_mult[:, cells].astype(np.float64) - 1.0) / 4.0),
        "voice_quality": K_QUALITY * calls * eff.loss_add[:, cells] / 2.0,
    }
    share = calls / max(float(calls.sum()), 1e-12)
    n_bg = BACKGROUND_PER_CELL_DAY * len(cells) * days
    for cat, p in BACKGROUND_MIX.items():
        rates[cat] = rates.get(cat, 0.0) + n_bg * p * share
    ts, el, cat_code = [], [], []
    for cat, r in rates.items():
        k = rng.poisson(scale * np.asarray(r, dtype=np.float64))
        ti, ci = np.nonzero(k)
        reps = k[ti, ci]
        ti, ci = np.repeat(ti, reps), np.repeat(ci, reps)
        t = times_ms[ti] + rng.integers(0, dt_ms, len(ti)) + _lag(rng, len(ti))
        ts.append(t)
        el.append(cells[ci])
        cat_code.append(np.full(len(ti), COMPLAINT_CATEGORY_CODE[cat]))
    # from the calls: drops and network failures
    network = ~np.isin(cdr["cause"], CAUSE_NORMAL + CAUSE_USER)
    answered = cdr["answer_ms"] >= 0
    p = np.where(answered & network, P_DROP_COMPLAINT, np.where(network, P_FAIL_COMPLAINT, 0.0))
    hit = np.flatnonzero(rng.random(len(cdr)) < np.minimum(1.0, scale * p))
    ts.append(cdr["end_ms"][hit] + _lag(rng, len(hit)))
    idx = topo.table["element_id"]  # the dense element of each call that complains
    order = np.argsort(idx)
    el.append(order[np.clip(np.searchsorted(idx[order], cdr["element_id"][hit]), 0, len(idx) - 1)])
    cat_code.append(np.full(len(hit), COMPLAINT_CATEGORY_CODE["dropped_calls"]))
    t_all = np.concatenate(ts)
    e_all = np.concatenate(el)
    c_all = np.concatenate(cat_code)
    keep = t_all < end_ms
    t_all, e_all, c_all = t_all[keep], e_all[keep], c_all[keep]
    o = np.argsort(t_all, kind="stable")
    t_all, e_all, c_all = t_all[o], e_all[o], c_all[o]
    n = len(t_all)
    out = empty("complaint", n)
    out["ts_ms"] = t_all
    out["element_id"] = topo.table["element_id"][e_all]
    out["category"] = c_all
    salt = int(rng.integers(0, 1 << 40))
    out["complaint_id"] = mix63(np.uint64(salt) + np.arange(n, dtype=np.uint64))
    out["imsi_hash"] = mix63(np.uint64(salt) + np.uint64(1 << 41) + rng.integers(0, 1 << 30, n).astype(np.uint64))
    loc = rng.random(n) < P_LOCATION
    out["lat"][loc] = topo.table["lat"][e_all[loc]] + rng.normal(0.0, 0.006, int(loc.sum()))
    out["lon"][loc] = topo.table["lon"][e_all[loc]] + rng.normal(0.0, 0.009, int(loc.sum()))
    return out
