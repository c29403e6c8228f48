"""Source generators of the synthetic network: CDR, equipment metrics, flows and QoS.

All four derive from the same load ratio ``x[t, e]`` (see :mod:`telcoanalytics.synth.load`) and
the scenario effect grids (see :mod:`telcoanalytics.synth.scenarios`), fully vectorised.
"""

from __future__ import annotations

import numpy as np

from telcoanalytics.records import (
    CDR_DTYPE,
    EQUIP_DTYPE,
    FLOW_DTYPE,
    METRIC_CODE,
    METRICS,
    NO_TIME_MS,
    QOS_DTYPE,
    SERVICE_CODE,
    SERVICES,
    TECHNOLOGIES,
)
from telcoanalytics.synth._kernels import equip_table, stable_argsort
from telcoanalytics.synth.scenarios import CONGESTION_ONSET, Effects
from telcoanalytics.synth.topology import CORE, MACRO, PGW, SMALL, SWITCH, SynthTopology

# Metrics each equipment class reports (METRICS names), by EQUIPMENT_CLASSES code.
CLASS_METRICS: dict[int, tuple[str, ...]] = {
    MACRO: ("prb_util_pct", "throughput_mbps", "unavailable_s", "error_count", "temperature_c"),
    SMALL: ("prb_util_pct", "throughput_mbps", "unavailable_s", "error_count", "temperature_c"),
    SWITCH: ("cpu_util_pct", "prb_util_pct", "throughput_mbps", "error_count", "temperature_c"),
    CORE: ("cpu_util_pct", "prb_util_pct", "throughput_mbps", "unavailable_s", "error_count", "temperature_c"),
    PGW: ("cpu_util_pct", "throughput_mbps", "unavailable_s", "error_count", "temperature_c"),
}
# Metrics reported at the slower environment cadence (``env_interval_ms``) instead of every PM interval.
SLOW_METRICS = ("temperature_c",)

SERVICE_MIX = {"voice": 0.42, "video": 0.06, "sms": 0.22, "data": 0.30}
# Q.850 release causes, (codes, probabilities) inside each outcome group.
CAUSES_NORMAL = ((16, 31), (0.975, 0.025))
CAUSES_USER = ((17, 18, 19, 21), (0.30, 0.20, 0.40, 0.10))
CAUSES_CONGESTION = ((34, 42), (0.65, 0.35))
CAUSES_FAILURE = ((27, 38, 41, 102), (0.15, 0.30, 0.35, 0.20))
CAUSES_DROP = ((41, 38, 102), (0.6, 0.3, 0.1))  # answered calls cut by the network (radio link loss)
P_DROP = 0.004  # answered voice/video calls dropped on a healthy cell
P_MOBILE = 0.2  # attempts by subscribers homed elsewhere (mobility)
P_USER = 0.12  # voice/video attempts ending busy / no answer / rejected
P_CONGESTION_BASE = 0.002
P_FAILURE_BASE = 0.005
BLOCK_KNEE = 0.97  # load ratio above which excess demand is blocked
# Release delay after the attempt for unanswered calls, per cause: (low, high) ms, uniform.
RELEASE_MS = {
    17: (1000, 3000),
    18: (8000, 15000),
    19: (20000, 45000),
    21: (2000, 10000),
    34: (200, 2000),
    42: (200, 2000),
    27: (300, 5000),
    38: (300, 5000),
    41: (300, 5000),
    102: (10000, 30000),
}
# Cell capacity by technology (Mbit/s, macro sector); small cells carry half.
CAPACITY_MBPS = {"2g": 0.2, "3g": 21.0, "4g": 150.0, "5g": 700.0, "ip": 0.0}
BASE_LATENCY_MS = {"2g": 180.0, "3g": 70.0, "4g": 28.0, "5g": 12.0}
TRANSPORT_LATENCY_MS = {SWITCH: 1.5, CORE: 0.8, PGW: 3.0}

_M63 = np.uint64((1 << 63) - 1)
_C1 = np.uint64(0x3F58476D1CE4E5B9)  # odd multipliers of splitmix64, masked to 63 bits below
_C2 = np.uint64(0x14D049BB133111EB)


def mix63(x) -> np.ndarray:
    """Bijective 63-bit integer hash (splitmix64 finaliser on 63 bits) -> non-negative int64.

    Distinct inputs below 2**63 give distinct outputs, so ``mix63(salt + arange(n))`` yields
    unique pseudo-random ids.
    """
    with np.errstate(over="ignore"):  # multiplication wraps mod 2**64 by design
        z = np.asarray(x).astype(np.uint64) & _M63
        z = z ^ (z >> np.uint64(31))
        z = (z * _C1) & _M63
        z = z ^ (z >> np.uint64(29))
        z = (z * _C2) & _M63
        z = z ^ (z >> np.uint64(32))
    return z.astype(np.int64)


def _codes(rng, n, spec):
    codes, p = spec
    return np.asarray(codes, dtype=np.int16)[rng.choice(len(codes), size=n, p=p)]


def cell_capacity_mbps(topo: SynthTopology, rng: np.random.Generator) -> np.ndarray:
    """Peak throughput of every element's radio (0 for transport/core), lognormal 20% spread."""
    tech = np.array([CAPACITY_MBPS[t] for t in TECHNOLOGIES])[topo.table["technology"]]
    tech = np.where(topo.table["equipment_class"] == SMALL, 0.5 * tech, tech)
    return tech * rng.lognormal(0.0, 0.2, topo.n)


def transport_load(topo: SynthTopology, thr_cells: np.ndarray, rng: np.random.Generator):
    """Roll cell throughput up the uplinks; return (throughput [t, e], load ratio [t, e]) for all.

    Capacity of each transport element is set so its peak load ratio is U(0.35, 0.65).
    """
    n_t, n_e = thr_cells.shape
    thr = thr_cells.astype(np.float64, copy=True)
    cls = topo.table["equipment_class"]
    for children_cls in ((MACRO, SMALL), (SWITCH,), (CORE,)):
        ch = np.flatnonzero(np.isin(cls, children_cls))  # never empty: every region has all levels
        up = topo.uplink[ch]
        uniq, inv = np.unique(up, return_inverse=True)
        agg = np.zeros((n_t, len(uniq)))
        for j in range(len(uniq)):  # few parents (switches/cores), many children each
            agg[:, j] = thr[:, ch[inv == j]].sum(axis=1)
        thr[:, uniq] = agg
    transport = ~np.isin(cls, (MACRO, SMALL))
    cap = np.ones(n_e)
    peak = thr[:, transport].max(axis=0) if n_t else np.zeros(int(transport.sum()))
    cap[transport] = np.maximum(peak, 1e-3) / rng.uniform(0.35, 0.65, int(transport.sum()))
    x = np.where(transport[None, :], thr / cap[None, :], 0.0)
    return thr, x


def equip_rows(
    topo,
    times_ms,
    x,
    thr,
    eff: Effects,
    env_every: int,
    interval_s: float,
    region_temp_c: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Equipment metric rows (EQUIP_DTYPE) sorted by (ts_ms, element, metric)."""
    n_t, n_e = x.shape
    cls = topo.table["equipment_class"]
    is_cell = topo.is_cell
    u = np.minimum(x, 1.0)
    grids = np.empty((len(METRICS), n_t, n_e), dtype=np.float64)
    # Each plane is computed in place, operation by operation as its formula reads (a rewrite
    # swaps only the operands of one + or *, which is exact): no large temporaries beyond the draws.
    # control channels keep a live cell's PRB use above ~2%; noise is mostly relative:
    # prb = 100 clip(0.02 + 0.98 u (1 + N(0, 0.03)) + N(0, 0.003), 0, 1)
    g = grids[METRIC_CODE["prb_util_pct"]]
    np.multiply(0.98, u, out=g)
    noise = rng.normal(0, 0.03, u.shape)
    np.add(noise, 1.0, out=noise)
    np.multiply(g, noise, out=g)
    np.add(g, 0.02, out=g)
    np.add(g, rng.normal(0, 0.003, u.shape), out=g)
    np.clip(g, 0.0, 1.0, out=g)
    np.multiply(g, 100.0, out=g)
    # cpu = clip(8 + 55 u + N(0, 2), 0, 100)
    g = grids[METRIC_CODE["cpu_util_pct"]]
    np.multiply(55.0, u, out=g)
    np.add(g, 8.0, out=g)
    np.add(g, rng.normal(0, 2.0, u.shape), out=g)
    np.clip(g, 0.0, 100.0, out=g)
    # throughput = max(thr (1 + N(0, 0.02)), 0)
    g = grids[METRIC_CODE["throughput_mbps"]]
    noise = rng.normal(0, 0.02, u.shape)
    np.add(noise, 1.0, out=noise)
    np.multiply(thr, noise, out=g)
    np.maximum(g, 0.0, out=g)
    del noise
    p_un = 0.0005 + eff.unavail_p
    hit = rng.random(u.shape) < p_un
    secs = np.where(eff.unavail_p > 0, rng.uniform(5.0, 120.0, u.shape), rng.uniform(1.0, interval_s, u.shape))
    g = grids[METRIC_CODE["unavailable_s"]]
    g[...] = 0.0
    np.copyto(g, np.round(secs, out=secs), where=hit)
    del p_un, hit, secs
    err_base = rng.lognormal(np.log(2.0), 0.6, n_e)
    lam = np.add(u, 0.3)  # err_base (0.3 + u) err_mult
    np.multiply(lam, err_base[None, :], out=lam)
    np.multiply(lam, eff.err_mult, out=lam)
    grids[METRIC_CODE["error_count"]] = rng.poisson(lam)
    del lam
    hour = (times_ms / 3_600_000.0) % 24.0
    ambient = region_temp_c[topo.region][None, :] + 4.0 * np.cos((hour[:, None] - 15.0) * np.pi / 12.0)
    offset = np.where(is_cell, 12.0, 22.0) + rng.normal(0, 2.0, n_e)
    # temperature = round(ambient + offset + 12 u + N(0, 0.4), 1)
    g = grids[METRIC_CODE["temperature_c"]]
    np.add(ambient, offset[None, :], out=g)
    del ambient
    t12 = np.multiply(12.0, u)
    np.add(g, t12, out=g)
    del t12
    np.add(g, rng.normal(0, 0.4, u.shape), out=g)
    np.round(g, 1, out=g)
    has = np.zeros((n_e, len(METRICS)), bool)
    for c, names in CLASS_METRICS.items():
        has[np.ix_(cls == c, [METRIC_CODE[m] for m in names])] = True
    slow = np.array([m in SLOW_METRICS for m in METRICS])
    on_env = (np.arange(n_t) % env_every) == 0
    # rows in (interval, element, metric) order
    return equip_table(
        times_ms, topo.table["element_id"], has, eff.present & ~eff.gap, slow, on_env, grids, EQUIP_DTYPE
    )


def qos_rows(topo, times_ms, x, eff: Effects, rng: np.random.Generator) -> np.ndarray:
    """QoS rows (QOS_DTYPE) sorted by (ts_ms, element).

    Notes
    -----
    Latency follows an M/M/1-like queueing growth ``base * (1 + 0.15 u / (1 - u))`` with the
    utilisation ``u`` capped at 0.985, times the degradation multiplier and lognormal noise;
    jitter ~12% of latency; loss grows as ``100 (u - 0.85)^2`` above 85% utilisation. MOS (cells
    only, the voice-carrying elements) follows the simplified ITU-T G.107 E-model (Cole &
    Rosenbluth, "Voice over IP performance monitoring", 2001) for a codec with Ie = 0, Bpl = 4.3.
    """
    n_t, n_e = x.shape
    cls = topo.table["equipment_class"]
    is_cell = topo.is_cell
    tech_names = np.array(TECHNOLOGIES)[topo.table["technology"]]
    base = np.array([BASE_LATENCY_MS.get(t, 0.0) for t in tech_names])
    for c, v in TRANSPORT_LATENCY_MS.items():
        base[cls == c] = v
    base = base * rng.lognormal(0.0, 0.25, n_e)
    u = np.minimum(x, 0.985)
    # The grids below are computed in place, operation by operation as the formulas read (each
    # rewrite swaps only the operands of one + or *, which is exact): fewer large temporaries.
    # lat = base * (1 + 0.15 u / (1 - u)) * lat_mult * lognormal
    lat = np.multiply(0.15, u)
    tmp = np.subtract(1.0, u)
    np.divide(lat, tmp, out=lat)
    np.add(lat, 1.0, out=lat)
    np.multiply(lat, base[None, :], out=lat)
    np.multiply(lat, eff.lat_mult, out=lat)
    np.multiply(lat, rng.lognormal(0.0, 0.08, u.shape), out=lat)
    # jit = 0.12 lat lognormal
    jit = np.multiply(0.12, lat)
    np.multiply(jit, rng.lognormal(0.0, 0.3, u.shape), out=jit)
    # loss = clip(0.02 lognormal + 100 max(u - onset, 0)^2 + loss_add, 0, 100)
    loss = rng.lognormal(0.0, 0.5, u.shape)
    np.multiply(loss, 0.02, out=loss)
    np.subtract(u, CONGESTION_ONSET, out=tmp)
    np.maximum(tmp, 0.0, out=tmp)
    np.multiply(tmp, tmp, out=tmp)  # ** 2
    np.multiply(tmp, 100.0, out=tmp)
    np.add(loss, tmp, out=loss)
    np.add(loss, eff.loss_add, out=loss)
    np.clip(loss, 0.0, 100.0, out=loss)
    # one-way mouth-to-ear delay d = lat + 2 jit + 10, its impairment i_d = 0.024 d + 0.11 (d - 177.3) [d > 177.3]
    d = np.multiply(2.0, jit)
    np.add(lat, d, out=d)
    np.add(d, 10.0, out=d)
    np.subtract(d, 177.3, out=tmp)
    np.multiply(tmp, 0.11, out=tmp)
    np.multiply(tmp, d > 177.3, out=tmp)
    i_d = np.multiply(d, 0.024, out=d)
    np.add(i_d, tmp, out=i_d)
    # i_e = 95 loss / (loss + 4.3); r = clip(93.2 - i_d - i_e, 0, 100)
    i_e = np.multiply(95.0, loss)
    np.add(loss, 4.3, out=tmp)
    np.divide(i_e, tmp, out=i_e)
    r = np.subtract(93.2, i_d, out=i_d)
    np.subtract(r, i_e, out=r)
    np.clip(r, 0.0, 100.0, out=r)
    # mos = clip(1 + 0.035 r + 7e-6 r (r - 60) (100 - r), 1, 4.5), rounded, cells only
    mos = np.multiply(0.035, r, out=i_e)
    np.add(mos, 1.0, out=mos)
    np.multiply(7e-6, r, out=tmp)
    np.multiply(tmp, r - 60.0, out=tmp)
    np.multiply(tmp, np.subtract(100.0, r, out=r), out=tmp)
    np.add(mos, tmp, out=mos)
    np.clip(mos, 1.0, 4.5, out=mos)
    del tmp, r
    mos = np.where(is_cell[None, :], np.round(mos, 3), np.nan)
    mask = eff.present
    out = np.empty(int(mask.sum()), dtype=QOS_DTYPE)
    out["ts_ms"] = np.broadcast_to(times_ms[:, None], mask.shape)[mask]
    out["element_id"] = np.broadcast_to(topo.table["element_id"][None, :], mask.shape)[mask]
    out["latency_ms"] = np.round(lat[mask], 3)
    out["jitter_ms"] = np.round(jit[mask], 3)
    out["loss_pct"] = np.round(loss[mask], 4)
    out["mos"] = mos[mask]
    return out


def flow_rows(topo, times_ms, thr, eff: Effects, interval_s: float, rng: np.random.Generator) -> np.ndarray:
    """Flow rows (FLOW_DTYPE): every cell/switch/core router to its uplink, per interval."""
    n_t, n_e = thr.shape
    has_up = topo.uplink >= 0
    pkt = rng.uniform(600.0, 1100.0, n_e)
    byt = np.maximum(thr * 1e6 / 8.0 * interval_s * rng.lognormal(0.0, 0.03, thr.shape), 0.0)
    mask = eff.present & has_up[None, :]
    b = np.round(byt[mask]).astype(np.int64)
    e_idx = np.broadcast_to(np.arange(n_e)[None, :], mask.shape)[mask]
    out = np.empty(int(mask.sum()), dtype=FLOW_DTYPE)
    out["ts_ms"] = np.broadcast_to(times_ms[:, None], mask.shape)[mask]
    out["src_element_id"] = topo.table["element_id"][e_idx]
    out["dst_element_id"] = topo.table["element_id"][topo.uplink[e_idx]]
    out["bytes"] = b
    out["packets"] = np.ceil(b / pkt[e_idx]).astype(np.int64)
    out["flows"] = rng.poisson(b / 2.0e5) + (b > 0)
    return out


def cdr_rows(
    topo,
    times_ms,
    dt_ms,
    x,
    eff: Effects,
    weight,
    per_cell_day: float,
    days: float,
    x_base,
    id_salt: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Call detail records (CDR_DTYPE) sorted by ``start_ms``.

    Parameters
    ----------
    weight : float64 (n_e,)  relative attempt volume per unit load of each cell (0 for non-cells).
    per_cell_day : float  mean attempts per cell per day on the undisturbed network.
    x_base : the undisturbed load ratio, to calibrate the volume.
    id_salt : int  record ids are ``mix63(id_salt + i)`` for i = 0..n-1 (unique by construction).

    Notes
    -----
    Attempts are a non-homogeneous Poisson process per cell with intensity piecewise constant
    over PM intervals, ``lambda[t, e] = c * weight[e] * x[t, e]``; ``c`` makes the undisturbed
    expectation ``per_cell_day * n_cells * days``. Outcome per attempt: congestion (probability
    ``0.002 + max(0, 1 - 0.97 / x)``, causes 34/42), failure (``0.005`` + injected share, causes
    27/38/41/102), user side for voice/video (12%, causes 17/18/19/21), else answered with normal
    clearing (16, some 31); 0.4% of answered voice/video calls (more on a failing cell) are
    dropped part-way (causes 41/38/102), and calls in progress when a cell goes silent are cut
    (cause 38). 20% of attempts come from subscribers homed on another cell (mobility).
    Holding times are lognormal (voice median 90 s, video 240 s, data 60 s); answer delays
    lognormal (voice/video median 4 s, sms/data 300 ms).
    """
    n_t, n_e = x.shape
    is_cell = topo.is_cell
    n_cells = max(int(is_cell.sum()), 1)
    c = per_cell_day * n_cells * days / max(float((weight[None, :] * x_base).sum()), 1e-12)
    lam = c * weight[None, :] * x * eff.present
    counts = rng.poisson(lam).ravel()
    n = int(counts.sum())
    flat = np.repeat(np.arange(n_t * n_e), counts)
    start = times_ms[flat // n_e] + rng.integers(0, dt_ms, n)
    # sort by start time first, so every per-call attribute is drawn in output order
    order = stable_argsort(start)
    start, flat = start[order], flat[order]
    del order
    _k, e = flat // n_e, flat % n_e
    xc = x.ravel()[flat]
    fail_p = eff.fail_p.ravel()[flat]
    del flat
    svc = rng.choice(len(SERVICES), size=n, p=[SERVICE_MIX[s] for s in SERVICES]).astype(np.int16)
    talk = (svc == SERVICE_CODE["voice"]) | (svc == SERVICE_CODE["video"])
    p_cong = P_CONGESTION_BASE + np.maximum(0.0, 1.0 - BLOCK_KNEE / np.maximum(xc, 1e-9))
    p_fail = P_FAILURE_BASE + fail_p
    p_user = np.where(talk, P_USER, 0.0)
    uu = rng.random(n)
    group = np.select([uu < p_cong, uu < p_cong + p_fail, uu < p_cong + p_fail + p_user], [1, 2, 3], 0)
    cause = np.empty(n, dtype=np.int16)
    for g, spec in ((0, CAUSES_NORMAL), (1, CAUSES_CONGESTION), (2, CAUSES_FAILURE), (3, CAUSES_USER)):
        sel = group == g
        cause[sel] = _codes(rng, int(sel.sum()), spec)
    answered = group == 0
    # dropped calls: answered voice/video cut part-way (radio link failure), more on a failing cell
    dropped = answered & talk & (rng.random(n) < P_DROP + 0.5 * fail_p)
    cause[dropped] = _codes(rng, int(dropped.sum()), CAUSES_DROP)
    # answer delay and holding time
    setup = np.where(talk, 4000.0, 300.0) * np.exp(0.5 * rng.standard_normal(n))
    hold_med = np.array([90.0, 240.0, 0.2, 60.0])[svc]
    hold_sig = np.array([0.9, 1.0, 0.8, 1.2])[svc]
    hold_cap = np.array([3600.0, 7200.0, 5.0, 7200.0])[svc]
    hold_ms = 1000.0 * np.minimum(hold_med * np.exp(hold_sig * rng.standard_normal(n)), hold_cap)
    hold_ms[dropped] *= rng.random(int(dropped.sum()))
    lo, hi = np.zeros(256), np.ones(256)
    for code, (a, b) in RELEASE_MS.items():
        lo[code], hi[code] = a, b
    lo, hi = lo[cause], hi[cause]
    release = lo + (hi - lo) * rng.random(n)
    answer = np.where(answered, start + np.round(setup).astype(np.int64), NO_TIME_MS)
    end = np.where(answered, answer + np.round(hold_ms).astype(np.int64), start + np.round(release).astype(np.int64))
    # a cell going silent cuts the calls in progress on it (released within 5 s, cause 38)
    gone = eff.present[:-1] & ~eff.present[1:]
    for k_off, e_off in zip(*np.nonzero(gone)):
        t_off = times_ms[k_off + 1]
        cut = (e == e_off) & (start < t_off) & (end > t_off)
        end[cut] = t_off + rng.integers(0, 5_000, int(cut.sum()))
        cause[cut] = 38
        lost = cut & answered & (answer >= end)  # would have been answered after the cut
        answer[lost] = NO_TIME_MS
        answered &= ~lost
        hold_ms[cut & answered] = (end - answer)[cut & answered]
    # bytes: video (bit rate x time) and data sessions (volume); voice/sms carry none here
    secs = hold_ms / 1000.0
    video = answered & (svc == SERVICE_CODE["video"])
    data = answered & (svc == SERVICE_CODE["data"])
    down = np.zeros(n)
    down[video] = rng.lognormal(np.log(1.5e6), 0.5, int(video.sum())) / 8.0 * secs[video]
    down[data] = rng.lognormal(np.log(2.0e6), 1.5, int(data.sum()))
    up = np.where(video, 0.10, 0.12) * down * rng.lognormal(0.0, 0.4, n)
    # parties: subscribers homed on cells in proportion to the cell's volume
    cells = np.flatnonzero(is_cell)
    n_sub = max(1000, 40 * n_cells)
    w = weight[cells] / weight[cells].sum()
    home = (
        np.concatenate([cells, cells[rng.choice(len(cells), n_sub - len(cells), p=w)]]) if n_sub > len(cells) else cells
    )
    home = np.sort(home)
    n_sub = len(home)
    cnt = np.bincount(home, minlength=n_e)
    off = np.cumsum(cnt) - cnt
    salt = rng.integers(0, 1 << 40, 4).astype(np.uint64)
    sub = off[e] + np.floor(rng.random(n) * cnt[e]).astype(np.int64)
    mobile = rng.random(n) < P_MOBILE
    sub[mobile] = rng.integers(0, n_sub, int(mobile.sum()))
    msisdn = mix63(salt[0] + np.arange(n_sub, dtype=np.uint64))
    imsi = mix63(salt[1] + np.arange(n_sub, dtype=np.uint64))
    callee = msisdn[rng.integers(0, n_sub, n)]
    external = rng.random(n) < 0.15
    callee = np.where(external, mix63(salt[2] + rng.integers(0, 1 << 34, n).astype(np.uint64)), callee)
    apn = mix63(salt[3] + rng.integers(0, 3, n).astype(np.uint64))
    callee = np.where(svc == SERVICE_CODE["data"], apn, callee)
    out = np.empty(n, dtype=CDR_DTYPE)
    out["record_id"] = mix63(np.uint64(id_salt) + np.arange(n, dtype=np.uint64))
    out["start_ms"] = start
    out["answer_ms"] = answer
    out["end_ms"] = end
    out["calling_id"] = msisdn[sub]
    out["called_id"] = callee
    out["imsi_hash"] = imsi[sub]
    out["element_id"] = topo.table["element_id"][e]
    out["service"] = svc
    out["cause"] = cause
    out["bytes_up"] = np.round(up).astype(np.int64)
    out["bytes_down"] = np.round(down).astype(np.int64)
    return out
