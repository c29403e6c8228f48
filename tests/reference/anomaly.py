"""Slow, obvious references for the anomaly detector: one Python object per slot, no arrays.

Written from the formulas in ``kernels/detect.py``'s module docstring, not from its code: dicts
for the seasonal buckets, one object per slot, plain floats.
"""

import math

import numpy as np


class RefSlot:
    def __init__(self, k_init):
        self.level = 0.0
        self.scale = 0.0
        self.k = k_init  # score per sigma: L / q
        self.n = 0
        self.last_t = None
        self.cup = self.cdn = 0.0
        self.nup = self.ndn = 0
        self.day = {}  # bucket -> [offset, cycles of evidence]
        self.week = {}
        self.mem = {}  # day bucket -> (residual of its last anomalous point, day number of it)
        self.open_dir = 0
        self.run = 0
        self.ep = {}
        self.close_t = None
        self.close_peak = 0.0


def reference_detect(
    ts_ms,
    slot,
    value,
    n_slots,
    *,
    bucket_ms=0,
    n_day=0,
    n_week=0,
    k_season=2.0,
    a_level=0.05,
    a_season=0.3,
    a_scale=0.02,
    huber_c=3.0,
    floor_abs=1e-6,
    floor_rel=1e-3,
    lower=-math.inf,
    warmup=20,
    tail_p=0.01,
    eta=0.02,
    q_min=2.5758293035489004,
    q_max=1e3,
    threshold=4.5,
    cusum_k=0.5,
    cusum_h=12.0,
    cusum_clip=4.0,
    close_after=3,
    confirm=1,
    refire_ms=0,
    thr_mult=None,
    season_snr=True,
    recur_tol=0.5,
):
    """Per-event z, score, baseline, alarm and change flags and the episode rows (kind, event
    index, start) of the model in ``kernels/detect.py``'s docstring (no budget gain, no adaptation
    of long episodes)."""
    day_ms = 86_400_000
    L = -math.log10(tail_p)
    slots = [RefSlot(L / q_min) for _ in range(n_slots)]
    n = len(ts_ms)
    z = np.full(n, np.nan)
    score = np.full(n, np.nan)
    base = np.full(n, np.nan)
    alarm = np.zeros(n, dtype=bool)
    change = np.zeros(n, dtype=bool)
    rows = []
    for i in range(n):
        x = float(value[i])
        t = int(ts_ms[i])
        if not math.isfinite(x):
            continue
        st = slots[int(slot[i])]
        mult = 1.0 if thr_mult is None else float(thr_mult[i])
        inc = 0.0 if st.last_t is None else min((t - st.last_t) / bucket_ms, 1.0) if bucket_ms else 0.0
        st.last_t = t
        sd, sc = 0.0, 0.0
        kd = kw = None
        sig_s = max(math.sqrt(math.pi / 2) * st.scale, floor_abs + floor_rel * abs(st.level))

        def weight(o, e, sig_s=sig_s):
            if not season_snr:
                return e / (e + k_season)
            ev = e * o * o  # evidence of the offset: cycles x (offset / sigma)^2
            return ev / (ev + k_season * sig_s**2) if ev > 0 else 0.0

        if bucket_ms:
            q = t // bucket_ms
            kd, kw = q % n_day, (q % n_week if n_week else None)
            off, e = st.day.get(kd, (0.0, 0.0))
            if e > 0:
                sd = off
                sc = off * weight(off, e)
            if kw is not None:
                off, e = st.week.get(kw, (0.0, 0.0))
                dw = off - sd
                if e > 0:
                    sc += dw * weight(dw, e)
        if st.n == 0:
            st.level = max(x - sc, lower)
            st.n = 1
            z[i], score[i], base[i] = 0.0, 0.0, x
            continue
        b = max(st.level + sc, lower)
        r = x - b
        sigma = max(math.sqrt(math.pi / 2) * st.scale, floor_abs + floor_rel * abs(b))
        zi = r / sigma
        sco = abs(zi) * st.k
        warm = st.n >= warmup
        al_now = warm and sco > threshold * mult
        recur = False
        if al_now and recur_tol > 0 and bucket_ms:
            # same phase, yesterday: an excursion of the same sign within recur_tol of it is season
            m, md = st.mem.get(kd, (0.0, 0.0))
            age = t // day_ms - md
            recur = 0 < age <= 1.5 and m * r > 0 and abs(r - m) <= recur_tol * abs(m)
            st.mem[kd] = (r, t // day_ms - (0.5 if recur else 0.0))
            al_now = al_now and not recur
        z[i], score[i], base[i], alarm[i] = zi, sco, b, al_now
        in_ep = st.open_dir != 0
        if recur:  # only the seasonal buckets learn it, with the full residual
            _ref_learn(st, kd, kw, inc, a_season, sc + r if season_snr else r, season_snr)
        if warm and not in_ep and not recur:  # tail quantile, on a log scale, bounded
            st.k *= math.exp(-eta * (1 - tail_p)) if sco > L else math.exp(eta * tail_p)
            st.k = min(max(st.k, L / q_max), L / q_min)
        if al_now and not in_ep:
            a_sc = max(1.0 / st.n, a_scale)
            st.scale += a_sc * (huber_c * sigma - st.scale)
        if (not warm) or (not al_now and not recur and not in_ep and st.run == 0):
            rc = max(-huber_c * sigma, min(huber_c * sigma, r)) if warm else r
            al = max(1.0 / (st.n + 1), a_level)
            st.level = max(st.level + al * rc, lower)
            rs = (1 - al) * rc
            _ref_learn(st, kd, kw, inc, a_season, sc + rs if season_snr else rs, season_snr)
            a_sc = max(1.0 / st.n, a_scale)
            ar = min(abs(r), huber_c * sigma) if warm else abs(r)
            st.scale += a_sc * (ar - st.scale)
            st.n += 1
        if warm and not in_ep and not al_now and not recur:
            zk = max(-cusum_clip, min(cusum_clip, zi))
            st.cup = st.cup + zk - cusum_k
            st.cup, st.nup = (st.cup, st.nup + 1) if st.cup > 0 else (0.0, 0)
            st.cdn = st.cdn - zk - cusum_k
            st.cdn, st.ndn = (st.cdn, st.ndn + 1) if st.cdn > 0 else (0.0, 0)
            if st.cup > cusum_h or st.cdn > cusum_h:
                if st.cup >= st.cdn:
                    shift = (st.cup / st.nup + cusum_k) * sigma
                else:
                    shift = -(st.cdn / st.ndn + cusum_k) * sigma
                st.level = max(st.level + shift, lower)
                st.cup = st.cdn = 0.0
                st.nup = st.ndn = 0
                change[i] = True
                rows.append(("change", i, None))
        if warm and (al_now or st.open_dir or st.run):
            _ref_episode(st, rows, i, t, zi, sco, al_now, confirm, close_after, refire_ms)
    return z, score, base, alarm, change, rows


def _ref_learn(st, kd, kw, inc, a_season, v, mean):
    """Seasonal buckets: running (then EW) mean of the deviation ``v`` from the level (``mean``; the
    week's only once the day's bucket had a full cycle before this point), or moved by ``a * v``
    (the count-weighted rule)."""
    day_evidence = st.day.get(kd, (0.0, 0.0))[1] if kd is not None else math.inf
    for prof, key in ((st.day, kd), (st.week, kw)):
        if key is None or (mean and prof is st.week and day_evidence < 1.0):
            continue
        off, e = prof.get(key, (0.0, 0.0))
        if e + inc > 0:
            a = inc / (e + inc) if (e + inc) * a_season < 1 else a_season * inc
            prof[key] = (off + a * (v - off) if mean else off + a * v, e + inc)


def _ref_episode(st, rows, i, t, zi, sco, al_now, confirm, close_after, refire_ms):
    ep = st.ep
    if al_now:
        if st.open_dir == 0 and st.run == 0:
            ep.update(dir=1 if zi > 0 else -1, start=t, peak=-1.0, silent=False)
        ep["peak"] = max(ep["peak"], sco)
        st.run += 1
        ep["quiet"] = 0
        if st.open_dir == 0 and st.run >= confirm:
            st.open_dir = ep["dir"]
            recent = st.close_t is not None and t - st.close_t < refire_ms
            ep["silent"] = recent and ep["peak"] <= st.close_peak
            if not ep["silent"]:
                rows.append(("open", i, ep["start"]))
        elif st.open_dir != 0 and ep["silent"] and ep["peak"] > st.close_peak:
            ep["silent"] = False  # grew stronger than the reported one: reported from here
            rows.append(("open", i, ep["start"]))
    else:
        st.run = 0
        if st.open_dir:
            ep["quiet"] += 1
            if ep["quiet"] >= close_after:
                if not ep["silent"]:
                    rows.append(("close", i, ep["start"]))
                    st.close_peak = ep["peak"]
                else:
                    st.close_peak = max(st.close_peak, ep["peak"])
                st.close_t = t
                st.open_dir = 0


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
