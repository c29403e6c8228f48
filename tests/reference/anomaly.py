"""Slow, obvious references for the anomaly detector: one Python object per slot, no arrays.

Written from the formulas in ``kernels/detect.py``'s module docstring, not from its code.
"""

import math

import numpy as np


class RefSlot:
    def __init__(self, thr_init):
        self.level = 0.0
        self.scale = 0.0
        self.thr = thr_init
        self.n = 0
        self.cup = self.cdn = 0.0
        self.nup = self.ndn = 0
        self.season = {}  # phase -> (offset, visits)


def reference_detect(
    ts_ms,
    slot,
    value,
    n_slots,
    *,
    season_ms=0,
    n_phase=1,
    a_level=0.05,
    a_season=0.3,
    a_scale=0.02,
    huber_c=3.0,
    floor_abs=1e-6,
    floor_rel=1e-3,
    warmup=24,
    target_p=1e-3,
    eta=0.02,
    thr_init=5.0,
    thr_min=3.0,
    thr_max=30.0,
    cusum_k=0.5,
    cusum_h=12.0,
    cusum_clip=4.0,
    thr_mult=None,
):
    """Per-event z, baseline, threshold, alarm and change flags (no budget gain, no episodes)."""
    slots = [RefSlot(thr_init) for _ in range(n_slots)]
    n = len(ts_ms)
    z = np.full(n, np.nan)
    base = np.full(n, np.nan)
    thr_out = np.full(n, np.nan)
    alarm = np.zeros(n, dtype=bool)
    change = np.zeros(n, dtype=bool)
    for i in range(n):
        x = float(value[i])
        if not math.isfinite(x):
            continue
        st = slots[int(slot[i])]
        mult = 1.0 if thr_mult is None else float(thr_mult[i])
        ph = None
        sc = 0.0
        if season_ms > 0:
            ph = (int(ts_ms[i]) // (season_ms // n_phase)) % n_phase
            if ph in st.season:
                sc = st.season[ph][0]
        if st.n == 0:
            st.level = x - sc
            st.n = 1
            if ph is not None:
                st.season[ph] = (sc, 1)
            z[i], base[i], thr_out[i] = 0.0, x, st.thr * mult
            continue
        b = st.level + sc
        r = x - b
        sigma = max(math.sqrt(math.pi / 2) * st.scale, floor_abs + floor_rel * abs(b))
        zi = r / sigma
        warm = st.n >= warmup
        z[i], base[i], thr_out[i] = zi, b, st.thr * mult
        alarm[i] = warm and abs(zi) > st.thr * mult
        # quantile tracker
        st.thr = math.exp(math.log(st.thr) + eta * ((1.0 if abs(zi) > st.thr else 0.0) - target_p))
        st.thr = min(max(st.thr, thr_min), thr_max)
        rc = max(-huber_c * sigma, min(huber_c * sigma, r)) if warm else r
        al = max(1.0 / (st.n + 1), a_level)
        st.level += al * rc
        if ph is not None:
            off, cnt = st.season.get(ph, (0.0, 0))
            a_s = max(1.0 / (cnt + 1), a_season)
            st.season[ph] = (sc + a_s * (rc - al * rc), cnt + 1)
        a_sc = max(1.0 / st.n, a_scale)
        ar = min(abs(r), huber_c * sigma) if warm else abs(r)
        st.scale += a_sc * (ar - st.scale)
        st.n += 1
        if warm:
            zk = max(-cusum_clip, min(cusum_clip, zi))
            st.cup = st.cup + zk - cusum_k
            if st.cup > 0:
                st.nup += 1
            else:
                st.cup, st.nup = 0.0, 0
            st.cdn = st.cdn - zk - cusum_k
            if st.cdn > 0:
                st.ndn += 1
            else:
                st.cdn, st.ndn = 0.0, 0
            if st.cup > cusum_h or st.cdn > cusum_h:
                if st.cup >= st.cdn:
                    st.level += (st.cup / st.nup + cusum_k) * sigma
                else:
                    st.level -= (st.cdn / st.ndn + cusum_k) * sigma
                st.cup = st.cdn = 0.0
                st.nup = st.ndn = 0
                change[i] = True
    return z, base, thr_out, alarm, change


def reference_zscore(slot, value, n_slots, alpha):
    """Decayed z-score, one slot at a time with plain floats."""
    mean = [0.0] * n_slots
    var = [0.0] * n_slots
    out = np.zeros(len(slot))
    for i, (s, x) in enumerate(zip(slot, value)):
        d = x - mean[s]
        out[i] = d / math.sqrt(var[s]) if var[s] > 0 else 0.0
        mean[s] += alpha * d
        var[s] = (1 - alpha) * (var[s] + alpha * d * d)
    return out


def reference_silent(last_report_ms, gaps_ms, now_ms, gap_factor, slack_ms):
    """An element is silent when now is past its last report plus factor x its typical gap."""
    return now_ms > last_report_ms + math.ceil(gap_factor * gaps_ms) + slack_ms
