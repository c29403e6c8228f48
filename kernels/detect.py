"""Causal streaming anomaly detection kernels: seasonal baseline, robust z-score, self-tuning
threshold, CUSUM change detection, episode tracking and silence bookkeeping.

One call processes a batch of events ``(ts_ms, slot, value)`` in the order given (normally event
time order). For each event the score is computed against the slot's state BEFORE the event and
only then is the state updated, so a point never takes part in its own baseline.

Per-slot state is split by access pattern: a hot float64 row ``st[slot, :8]`` (one 64-byte cache
line: level, scale, threshold, CUSUM) read and written by every event, an int32 observation count,
a cold row ``sx[slot, :]`` touched only around alarms, and two small integer arrays (open episode
direction, alarm run length). The seasonal profile is ``seas[phase, slot]`` with ``uint8`` visit
counts (phase-major, so the slots reporting in one interval touch one contiguous row).

Model (per slot, additive Holt-Winters with robust updates)::

    baseline_t = level + season[phase(t)]          (season used once its bucket has data)
    r_t        = x_t - baseline_t
    sigma_t    = max(1.2533 * scale, floor_abs[slot] + floor_rel * |baseline_t|)
    z_t        = r_t / sigma_t
    alarm_t    = warm and |z_t| > thr * thr_mult_t * gain
    rc_t       = clip(z_t, -huber_c, huber_c) * sigma_t          (bounded influence)
    level     += a_level  * rc_t
    season    += a_season * (season + rc_t - season)  (i.e. toward the clipped deseasonalised value)
    scale     += a_scale  * (min(|r_t|, huber_c * sigma_t) - scale)
    log thr   += eta * (1{|z_t| > thr} - p)         clipped to [thr_min, thr_max]
    C+ = max(0, C+ + min(z, c_clip) - k),  C- = max(0, C- - max(z, -c_clip) - k)
    C+ > h or C- > h  ->  change: level += sign * (C/n_run + k) * sigma, CUSUM reset

``1.2533 = sqrt(pi / 2)`` turns a mean absolute deviation into a Gaussian sigma. The threshold
update is Robbins-Monro stochastic approximation of the (1 - p) quantile of |z| on a log scale
(Robbins & Monro 1951; Tierney 1983); since log thr changes by eta * (exceedances - p * n) in
total, the realised exceedance rate tends to p whatever the distribution of z, as long as thr
stays inside its bounds. CUSUM: Page (1954), with the change-point estimate at the last reset of the statistic.
"""

import math

import numpy as np

from ._numba import kernel
from .ewm import PREFETCH_AHEAD, prefetch_at, prefetch_row

# ---- per-slot state: hot fields (read every event, one 64-byte line per slot) ---------------
F_LEVEL = 0  # deseasonalised level
F_SCALE = 1  # EW mean absolute residual (clipped)
F_THR = 2  # self-tuned threshold on |z|
F_TRUN = 3  # ts where the latest CUSUM run (either side) began: the change-point estimate
F_CUP = 4  # CUSUM upper statistic
F_CDN = 5  # CUSUM lower statistic
F_NUP = 6  # length of the current upper run
F_NDN = 7  # length of the current lower run
N_FIELDS = 8
N_MAX = 2_000_000_000  # observation counts saturate here (int32 state)
# ---- cold fields (episodes and change bookkeeping, touched only around alarms/changes) ------
X_QUIET = 0  # consecutive non-alarm observations while open
X_START = 1  # episode start ts (first alarm point of the run)
X_PEAK = 2  # peak |z| of the episode
X_PEAKV = 3  # value at the peak
X_PEAKB = 4  # baseline at the peak
X_PEAKT = 5  # effective threshold at the peak
X_LASTA = 6  # ts of the last alarm in the episode
X_DIR = 7  # direction of the first alarm point of the run
N_COLD = 8
RUN_MAX = 30000  # alarm runs are counted up to here (int16 state)
SEAS_N_MAX = 255  # visits per phase bucket are counted up to here (uint8 state)

# ---- global state (g array) ----------------------------------------------------------------
G_GAIN = 0  # network-wide threshold gain >= 1 (alert budget)
G_EVENTS = 1  # events scored
G_ALARMS = 2  # alarm points
G_INVALID = 3  # events skipped for a non-finite value
N_GLOBAL = 4

# ---- episode row kinds -----------------------------------------------------------------------
KIND_OPEN = 1
KIND_CLOSE = 2
KIND_CHANGE = 3

# ---- per-event flags -------------------------------------------------------------------------
FLAG_ALARM = 1
FLAG_CHANGE = 2
FLAG_WARM = 4
FLAG_INVALID = 8

SQRT_HALF_PI = 1.2533141373155003


@kernel
def detect_init(st, thr_init):
    """Reset hot state rows to the empty state (``thr`` to ``thr_init``, everything else 0).

    Parameters
    ----------
    st : float64 array (n_slots, N_FIELDS)
        Hot slot state, updated in place.
    thr_init : float
        Starting threshold on |z|.
    """
    for s in range(st.shape[0]):
        for f in range(st.shape[1]):
            st[s, f] = 0.0
        st[s, F_THR] = thr_init


def threshold_steps(target_p, eta):
    """Multiplicative steps ``(thr_up, thr_dn) = (exp(eta (1 - p)), exp(-eta p))`` of the threshold.

    Log-additive steps: log thr moves by ``eta * (1{exceed} - p)``, so the exceedance count stays
    within ``(log(thr_max) - log(thr_min)) / eta`` of ``p * n``, exactly.
    """
    return math.exp(eta * (1.0 - target_p)), math.exp(-eta * target_p)


@kernel
def detect_batch(
    ts_ms,
    slot,
    value,
    thr_mult,
    season_ms,
    n_phase,
    a_level,
    a_season,
    a_scale,
    huber_c,
    floor_abs,
    floor_rel,
    warmup,
    thr_up,
    thr_dn,
    thr_min,
    thr_max,
    budget_p,
    eta_gain,
    gain_max,
    cusum_k,
    cusum_h,
    cusum_clip,
    close_after,
    confirm,
    st,
    nobs_arr,
    sx,
    open_dir,
    run,
    seas,
    seas_n,
    g,
    z_out,
    base_out,
    thr_out,
    flags_out,
    ep_idx,
    ep_kind,
    ep_start,
    ep_end,
    ep_peak,
    ep_dir,
    ep_base,
    ep_thr,
    ep_value,
):
    """Score a batch of events causally and update the detector state.

    Parameters
    ----------
    ts_ms, slot : int64 arrays (n,)
        Event time and dense slot of each event, processed in this order.
    value : float64 array (n,)
        Observed values; NaN/inf are skipped (flag ``FLAG_INVALID``) and change nothing.
    thr_mult : float64 array (n,) or (0,)
        Threshold multiplier per event (calendar widening); an empty array means 1.0 for all
        (no stream to read).
    season_ms : int
        Season length in ms (e.g. one week); 0 disables the seasonal profile.
    n_phase : int
        Number of phase buckets per season (rows of ``seas``).
    a_level, a_season, a_scale : float
        EW smoothing factors per observation (level, seasonal bucket per visit, scale). During
        start-up the running mean ``1 / (count + 1)`` is used while it is larger.
    huber_c : float
        Clip (in sigmas) of the residual used for updates after warm-up: bounded influence.
    floor_abs : float64 array (n_slots,)
        Absolute floor of sigma per slot (e.g. 1 for counters, 1e-6 for continuous values).
    floor_rel : float
        Relative floor: sigma >= ``floor_abs[slot] + floor_rel * |baseline|`` (flat series).
    warmup : int
        Observations per slot before alarms are raised.
    thr_up, thr_dn : float
        Multiplicative steps of the self-tuned threshold: ``exp(eta * (1 - p))`` after an
        exceedance and ``exp(-eta * p)`` otherwise, for the target false-alarm rate ``p`` per
        observation and the step ``eta`` on log(thr) (:func:`threshold_steps`). They come in
        precomputed: computed inside, the compiler merged the two ``exp`` into one
        ``exp(select(...))`` evaluated on every event.
    thr_min, thr_max : float
        Bounds of the self-tuned threshold.
    budget_p : float
        Network-wide alarm budget as a fraction of events (>= 1 disables it).
    eta_gain, gain_max : float
        Step and upper bound of the network-wide gain on all thresholds.
    cusum_k, cusum_h, cusum_clip : float
        CUSUM allowance, decision limit and per-point clip of z (all in sigmas).
    close_after : int
        Consecutive non-alarm observations that close an open episode.
    confirm : float64 array (n_slots,)
        Consecutive alarm points that open an episode (1 = the first alarm opens it); the
        episode's start is the first point of the run.
    st : float64 (n_slots, N_FIELDS)
        Hot state (level, scale, threshold, CUSUM), updated in place.
    nobs_arr : int32 (n_slots,)
        Observations folded into each slot (saturating at ``N_MAX``), updated in place.
    sx : float64 (n_slots, N_COLD)
        Cold state (episode and change bookkeeping), updated in place.
    open_dir : int8 (n_slots,); run : int16 (n_slots,)
        Open episode direction (0 none) and current alarm run length, updated in place.
    seas : float64 (n_phase, n_slots); seas_n : uint8 (n_phase, n_slots)
        Seasonal offsets and visits per bucket (phase-major: one interval's slots share a row).
    g : float64 (N_GLOBAL,)
        Global state (budget gain, counters of scored, alarm and invalid events).
    z_out, base_out, thr_out : float64 (n,); flags_out : int8 (n,)
        Per-event outputs: score, baseline and effective threshold before the update, flags.
    ep_* : arrays (n,)
        Episode rows written from index 0: event index, kind (open/close/change), start and end
        ts (end -1 while open), peak |z|, direction, baseline, threshold and value at the peak.

    Returns
    -------
    n_rows : int
        Number of episode rows written.
    """
    n = ts_ms.shape[0]
    n_rows = 0
    gain = g[G_GAIN]
    use_season = season_ms > 0 and n_phase > 0
    phase_ms = season_ms // n_phase if use_season else 1
    use_mult = thr_mult.shape[0] > 0
    n_scored = 0
    n_alarms = 0
    n_invalid = 0
    # running means switch to EW factors once 1/count drops below them: compare counts instead
    # of dividing on every event (same values, fewer divisions)
    inv_al = 1.0 / a_level
    inv_as = 1.0 / a_season
    inv_asc = 1.0 / a_scale
    # phase of the season: two integer divisions, recomputed only when the event time leaves
    # the phase bucket of the previous event (a PM batch shares one time)
    ph = np.uint64(0)
    ph_lo = 1
    ph_hi = 0
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            # the state of the event a few positions ahead: overlaps its cache misses with this
            # event's arithmetic when slots arrive in a random order (no effect on any result)
            s_ahead = np.uint64(slot[i + PREFETCH_AHEAD])
            prefetch_row(st, s_ahead)
            prefetch_row(nobs_arr, s_ahead)
            prefetch_row(floor_abs, s_ahead)
            if use_season:
                prefetch_at(seas, ph, s_ahead)
        # unsigned indices: no negative-index wraparound code on each of the ~15 state accesses
        s = np.uint64(slot[i])
        x = value[i]
        t = ts_ms[i]
        flags = 0
        if not np.isfinite(x):
            z_out[i] = np.nan
            base_out[i] = np.nan
            thr_out[i] = np.nan
            flags_out[i] = FLAG_INVALID
            n_invalid += 1
            continue
        nobs = nobs_arr[s]
        sc = 0.0
        cnt = 0
        if use_season:
            if t < ph_lo or t >= ph_hi:
                q = t // phase_ms
                ph = np.uint64(q % n_phase)
                ph_lo = q * phase_ms
                ph_hi = ph_lo + phase_ms
            cnt = seas_n[ph, s]
            if cnt > 0:
                sc = seas[ph, s]
        mult = thr_mult[i] if use_mult else 1.0
        thr = st[s, F_THR]
        if nobs == 0:
            # first observation: it becomes the level, nothing to score against
            st[s, F_LEVEL] = x - sc
            nobs_arr[s] = 1
            if use_season and cnt == 0:
                seas_n[ph, s] = 1
                seas[ph, s] = 0.0
            z_out[i] = 0.0
            base_out[i] = x
            thr_out[i] = thr * mult * gain
            flags_out[i] = 0
            continue
        level = st[s, F_LEVEL]
        scale = st[s, F_SCALE]
        baseline = level + sc
        r = x - baseline
        sigma = SQRT_HALF_PI * scale
        fl = floor_abs[s] + floor_rel * abs(baseline)
        if sigma < fl:
            sigma = fl
        z = r / sigma
        az = abs(z)
        thr_eff = thr * mult * gain
        warm = nobs >= warmup
        alarm = warm and az > thr_eff
        if warm:
            flags |= FLAG_WARM
        # ---- self-tuning threshold (Robbins-Monro quantile of |z| on a log scale) ----------
        if az > thr:
            thr *= thr_up
        else:
            thr *= thr_dn
        if thr < thr_min:
            thr = thr_min
        elif thr > thr_max:
            thr = thr_max
        st[s, F_THR] = thr
        # ---- network-wide budget gain --------------------------------------------------
        if budget_p < 1.0 and warm:
            if alarm:
                gain += eta_gain * gain * (1.0 - budget_p)
            else:
                gain -= eta_gain * gain * budget_p
            if gain < 1.0:
                gain = 1.0
            elif gain > gain_max:
                gain = gain_max
        # ---- robust baseline update --------------------------------------------------
        rc = r
        if warm:
            if z > huber_c:
                rc = huber_c * sigma
            elif z < -huber_c:
                rc = -huber_c * sigma
        al = a_level if nobs + 1.0 > inv_al else 1.0 / (nobs + 1.0)
        level = level + al * rc
        if use_season:
            a_s = a_season if cnt + 1.0 > inv_as else 1.0 / (cnt + 1.0)
            # the deseasonalised residual left after the level moved is folded into the bucket
            seas[ph, s] = sc + a_s * (1.0 - al) * rc
            if cnt < SEAS_N_MAX:
                seas_n[ph, s] = cnt + 1
        asc = a_scale if nobs > inv_asc else 1.0 / nobs
        ar = abs(r)
        cap = huber_c * sigma
        if warm and ar > cap:
            # after warm-up the scale update is clipped too; before it the scale must be free
            # to grow from the floor to the series' real spread
            ar = cap
        st[s, F_SCALE] = scale + asc * (ar - scale)
        if nobs < N_MAX:
            nobs_arr[s] = nobs + 1
        # ---- CUSUM change detection ----------------------------------------------------
        if warm:
            zk = z
            if zk > cusum_clip:
                zk = cusum_clip
            elif zk < -cusum_clip:
                zk = -cusum_clip
            # written as selects (no data-dependent jumps): the signs of the CUSUM increments are
            # close to random on normal data and branches on them mispredict
            cup = st[s, F_CUP] + zk - cusum_k
            cdn = st[s, F_CDN] - zk - cusum_k
            up = cup > 0.0
            dn = cdn > 0.0
            nup = st[s, F_NUP] + 1.0 if up else 0.0
            ndn = st[s, F_NDN] + 1.0 if dn else 0.0
            cup = cup if up else 0.0
            cdn = cdn if dn else 0.0
            trun = t if (nup == 1.0 or ndn == 1.0) else st[s, F_TRUN]
            if cup > cusum_h or cdn > cusum_h:
                if cup >= cdn:
                    d = 1
                    shift = (cup / nup + cusum_k) * sigma
                else:
                    d = -1
                    shift = -(cdn / ndn + cusum_k) * sigma
                # re-baseline: move the level to the new regime instead of alarming forever
                level += shift
                cup = 0.0
                cdn = 0.0
                nup = 0.0
                ndn = 0.0
                flags |= FLAG_CHANGE
                ep_idx[n_rows] = i
                ep_kind[n_rows] = KIND_CHANGE
                ep_start[n_rows] = np.int64(trun)
                ep_end[n_rows] = t
                ep_peak[n_rows] = abs(shift) / sigma
                ep_dir[n_rows] = d
                ep_base[n_rows] = baseline
                ep_thr[n_rows] = cusum_h
                ep_value[n_rows] = x
                n_rows += 1
            st[s, F_TRUN] = trun
            st[s, F_NUP] = nup
            st[s, F_NDN] = ndn
            st[s, F_CUP] = cup
            st[s, F_CDN] = cdn
        st[s, F_LEVEL] = level
        # ---- episodes ------------------------------------------------------------------
        if alarm:
            flags |= FLAG_ALARM
            n_alarms += 1
            od = open_dir[s]
            rn = run[s]
            if od == 0 and rn == 0:
                # first alarm point of a run: candidate episode start
                sx[s, X_DIR] = 1.0 if z > 0.0 else -1.0
                sx[s, X_START] = t
                sx[s, X_PEAK] = az
                sx[s, X_PEAKV] = x
                sx[s, X_PEAKB] = baseline
                sx[s, X_PEAKT] = thr_eff
            elif az > sx[s, X_PEAK]:
                sx[s, X_PEAK] = az
                sx[s, X_PEAKV] = x
                sx[s, X_PEAKB] = baseline
                sx[s, X_PEAKT] = thr_eff
            if rn < RUN_MAX:
                rn += 1
                run[s] = rn
            sx[s, X_LASTA] = t
            sx[s, X_QUIET] = 0.0
            if od == 0 and rn >= confirm[s]:
                open_dir[s] = np.int8(sx[s, X_DIR])
                ep_idx[n_rows] = i
                ep_kind[n_rows] = KIND_OPEN
                ep_start[n_rows] = np.int64(sx[s, X_START])
                ep_end[n_rows] = -1
                ep_peak[n_rows] = sx[s, X_PEAK]
                ep_dir[n_rows] = np.int8(sx[s, X_DIR])
                ep_base[n_rows] = sx[s, X_PEAKB]
                ep_thr[n_rows] = sx[s, X_PEAKT]
                ep_value[n_rows] = sx[s, X_PEAKV]
                n_rows += 1
        else:
            if run[s] != 0:
                run[s] = 0
            if open_dir[s] != 0:
                q = sx[s, X_QUIET] + 1.0
                sx[s, X_QUIET] = q
                if q >= close_after:
                    ep_idx[n_rows] = i
                    ep_kind[n_rows] = KIND_CLOSE
                    ep_start[n_rows] = np.int64(sx[s, X_START])
                    ep_end[n_rows] = np.int64(sx[s, X_LASTA])
                    ep_peak[n_rows] = sx[s, X_PEAK]
                    ep_dir[n_rows] = open_dir[s]
                    ep_base[n_rows] = sx[s, X_PEAKB]
                    ep_thr[n_rows] = sx[s, X_PEAKT]
                    ep_value[n_rows] = sx[s, X_PEAKV]
                    n_rows += 1
                    open_dir[s] = 0
                    sx[s, X_QUIET] = 0.0
        z_out[i] = z
        base_out[i] = baseline
        thr_out[i] = thr_eff
        flags_out[i] = flags
        n_scored += 1
    g[G_GAIN] = gain
    g[G_EVENTS] += n_scored
    g[G_ALARMS] += n_alarms
    g[G_INVALID] += n_invalid
    return n_rows


@kernel
def fill_episode_rows(
    rows, ts_ms, slot, slot_element_id, ep_idx, ep_kind, ep_start, ep_end, ep_peak, ep_dir, ep_base, ep_thr, ep_value
):
    """Copy the numeric fields of the first ``len(rows)`` episode rows into a structured array.

    ``rows`` needs the fields slot, element_id, start_ms, end_ms, peak_score, direction, baseline,
    threshold, value, scope_id and t_ms (the anomaly record); string fields are left to the caller.
    One pass over the rows instead of one strided, mostly unaligned numpy copy per field.
    """
    for j in range(rows.shape[0]):
        i = ep_idx[j]
        s = slot[i]
        r = rows[j]
        r["slot"] = s
        r["element_id"] = slot_element_id[s]
        r["scope_id"] = slot_element_id[s]
        r["start_ms"] = ep_start[j]
        r["end_ms"] = ep_end[j]
        r["peak_score"] = ep_peak[j]
        r["direction"] = ep_dir[j]
        r["baseline"] = ep_base[j]
        r["threshold"] = ep_thr[j]
        r["value"] = ep_value[j]
        r["t_ms"] = ts_ms[i]


@kernel
def arrivals_update(ts_ms, elem, a_gap, last_ts, gap_ew, n_arr):
    """Track per-element arrival times and the EW mean gap between distinct report times.

    Parameters
    ----------
    ts_ms, elem : int64 arrays (n,)
        Event time and dense element index, in processing order.
    a_gap : float
        EW factor of the mean gap (running mean while fewer than 1 / a_gap gaps were seen).
    last_ts : int64 (n_elem,); gap_ew : float64 (n_elem,); n_arr : int64 (n_elem,)
        State updated in place: latest report time (-1 = never), mean gap, distinct report times.
    """
    for i in range(ts_ms.shape[0]):
        e = elem[i]
        t = ts_ms[i]
        lt = last_ts[e]
        if lt < 0:
            last_ts[e] = t
            n_arr[e] = 1
        elif t > lt:
            gap = float(t - lt)
            k = n_arr[e]
            a = 1.0 / k
            if a < a_gap:
                a = a_gap
            if k == 1:
                gap_ew[e] = gap
            else:
                gap_ew[e] += a * (gap - gap_ew[e])
            last_ts[e] = t
            n_arr[e] = k + 1


@kernel
def zscore_decayed(slot, value, alpha, mean, var, z_out):
    """Minimal decayed z-score (the benchmark's baseline computation): score, then update.

    ``z = (x - mean) / sqrt(var)``, ``mean += alpha * d``, ``var = (1 - alpha) * (var + alpha d^2)``.
    """
    for i in range(slot.shape[0]):
        s = slot[i]
        d = value[i] - mean[s]
        v = var[s]
        z_out[i] = d / np.sqrt(v) if v > 0.0 else 0.0
        mean[s] += alpha * d
        var[s] = (1.0 - alpha) * (v + alpha * d * d)


@kernel
def sliding_record(s, window, start, out):
    """Ratio of each value to the maximum of the ``window`` values before it (a "record" score).

    ``out[i] = s[i] / (max(s[i - window : i]) + 1e-12)`` for ``i > start`` (with fewer predecessors
    near the beginning), 0 otherwise. Uses a monotone deque held in two ring arrays: O(n).

    Parameters
    ----------
    s : float64 array (n,), values >= 0
    window : int
        Look-back length (>= 1).
    start : int
        Indices ``<= start`` get 0 (burn-in).
    out : float64 array (n,)
        Written in place.
    """
    n = s.shape[0]
    cap = window + 1
    dq_i = np.empty(cap, dtype=np.int64)
    dq_v = np.empty(cap)
    head = 0
    size = 0
    for i in range(n):
        # drop indices that left the window [i - window, i - 1]
        while size > 0 and dq_i[head] < i - window:
            head = (head + 1) % cap
            size -= 1
        m = dq_v[head] if size > 0 else 0.0
        out[i] = s[i] / (m + 1e-12) if i > start else 0.0
        # push s[i], keeping the deque decreasing
        while size > 0 and dq_v[(head + size - 1) % cap] <= s[i]:
            size -= 1
        dq_i[(head + size) % cap] = i
        dq_v[(head + size) % cap] = s[i]
        size += 1


@kernel
def window_mean_z(z, width, clip, out):
    """Standardised mean of the last ``width`` clipped z-scores: ``sum(clip(z)) / sqrt(k)``.

    ``k = min(i + 1, width)``; NaN z count as 0. A level shift of d sigmas gives about
    ``d * sqrt(width)`` after ``width`` points, well before a single-point score sees it.
    """
    n = z.shape[0]
    acc = 0.0
    buf = np.zeros(width)
    for i in range(n):
        v = z[i]
        if not np.isfinite(v):
            v = 0.0
        elif v > clip:
            v = clip
        elif v < -clip:
            v = -clip
        j = i % width
        acc += v - buf[j]
        buf[j] = v
        k = i + 1 if i + 1 < width else width
        out[i] = acc / np.sqrt(k)
