"""Causal streaming anomaly detection kernels: earned seasonal baseline, robust scale, calibrated
tail score, CUSUM change detection, episodes that do not teach the baseline, silence bookkeeping.

One call processes a batch of events ``(ts_ms, slot, value)`` in the order given (normally event
time order). Each event is scored against the slot's state BEFORE the event and only then, if it is
normal, folded into the state: a point never takes part in its own baseline, and points that alarm
or fall inside an open episode never move the baseline or the scale; the seasonal profile learns
from them only when they recur (below).

Arguments are grouped in four NamedTuples: :class:`Batch` (the events), :class:`Params` (scalars
and per-slot settings), :class:`State` (per-slot and global state, updated in place) and
:class:`Out` (per-event outputs and episode rows).

Model (per slot)::

    season_t   = w(D, e_d) * D[bucket of day] + w(W - D, e_w) * (W[bucket of week] - D[bucket of day])
                 w(o, e) = e o^2 / (e o^2 + k sigma0^2)     (season_snr; e = cycles of evidence)
                 w(o, e) = e / (e + k)                      (season_snr off: the rule before)
                 sigma0 = max(1.2533 * scale, floor_abs + floor_rel * |level|)
    baseline_t = max(level + season_t, lower)
    r_t        = x_t - baseline_t
    sigma_t    = max(1.2533 * scale, floor_abs + floor_rel * |baseline_t|)
    z_t        = r_t / sigma_t
    score_t    = L * |z_t| / q        L = -log10(p), q = tracked (1 - p) quantile of |z|
    alarm_t    = warm and score_t > S * thr_mult_t * gain

``score`` is ``-log10`` of the probability of a deviation at least this large under an exponential
tail fitted through the slot's own ``(1 - p)`` quantile of ``|z|``: ``P(|Z| > z) = p ** (z / q)``.
``q`` is tracked by Robbins-Monro stochastic approximation on a log scale (log q moves by
``eta * (1{|z| > q} - p)``) and never falls below the Gaussian quantile ``q_min``: heavier tails
raise ``q`` and lower the scores, so one threshold ``S`` means one false-alarm rate on every series.

Learning (only from normal points: warm-up, or not alarming and no episode open)::

    rc         = clip(r, -huber_c sigma, huber_c sigma)
    level     += a_level * rc                     (running mean while count < 1 / a_level)
    v          = season_t + (1 - a_level) * rc    (the deviation from the level seen at this phase)
    D, W      += a * (v - D), a * (v - W)          a = inc / e while e < 1 / a_season, else a_season * inc
                 (W only once D's bucket had a full cycle; season_snr off: D, W += a * (1 - a_level) * rc)
    e_d, e_w  += inc = min(t - t_prev, bucket) / bucket   (a full bucket visit adds one cycle)
    scale     += a_scale * (min(|r|, huber_c sigma) - scale)
    C+ = max(0, C+ + min(z, c_clip) - k), C- = max(0, C- - max(z, -c_clip) - k)
    C+ > h or C- > h  ->  change: level += sign * (C / n_run + k) * sigma, CUSUM reset

Learning from recurrence (``recur_tol > 0``): each day bucket remembers the residual of its last
alarm point and its day. An alarm point whose residual has the same sign as, and lies within
``recur_tol * |m|`` of, the remembered ``m`` of the previous day (or of a point already found
recurrent today) is season, not anomaly: it does not alarm, the level, scale, tail quantile and
CUSUM ignore it, and D and W learn it with ``v = season_t + r`` (unclipped). A sharp pattern that
repeats daily (a square wave, a nightly batch job) alarms on its first day only; a one-off fault
does not recur and teaches nothing; a fault repeated at the same time the next day is taken as
season.

Late events (older than the slot's latest event, ``FLAG_BACKWARDS``) are scored; one at most
``late_ms`` late is also learned as above (level, scale, buckets, tail quantile, CUSUM) but adds
no evidence, cannot teach by recurrence and takes no part in episodes; an older one is not learned.
The same rows replayed merged by event time and in arrival order (a few late) then fold the same
points into the accumulators (CUSUM sums do not depend on the order of their terms), so a
borderline change is found the same way in both.

Score gate (``gate_g > 0``): each slot tracks the exponentially weighted mean ``m`` and variance
``v`` of its own capped scores ``y = min(score, gate_cap)`` (every scored point, factor
``gate_a`` per observation; ``m`` and ``v`` start at the null score's ``1 / ln 10`` and its
square). A point stands out when ``(y - m) / max(sqrt(v), 0.1) > gate_g``, ``m`` and ``v`` taken
before the point. An episode is reported only from an alarm point that stands out: one whose
points never do stays silent (like a suppressed re-fire below). A series whose scores are often
high (a noisy or regime-switching one) then needs a larger deviation to page than a quiet one.

Episodes: an episode opens after ``confirm`` consecutive alarm points and closes after
``close_after`` normal ones. Within ``refire_ms`` of a close, a new episode of the slot is
reported only if its peak beats the closed one's (a weaker re-fire is tracked silently, as part of
the same trouble, and its close extends the window); a silent re-fire whose peak grows past the
closed one's is reported from that point (an open row with the episode's start). While an
episode is open the baseline is frozen and the episode's mean residual is tracked; if it stays
open for ``adapt_ms`` the new regime is accepted (level moved by that mean, a "change" row, the
episode closed) and the old level is remembered for ``recovery_ms``:
a later point that is normal against the old level restores it (a "change" row back) instead of
opening a new episode.

``1.2533 = sqrt(pi / 2)`` turns a mean absolute deviation into a Gaussian sigma. CUSUM: Page (1954),
with the change-point estimate at the last reset of the statistic. Robbins & Monro (1951).
"""

from typing import NamedTuple

import numpy as np

from ._numba import kernel
from .ewm import PREFETCH_AHEAD, prefetch_at, prefetch_row

# ---- per-slot state: hot fields (read every event, one 64-byte line per slot) ---------------
F_LEVEL = 0  # deseasonalised level
F_SCALE = 1  # EW mean absolute residual (clipped)
F_THR = 2  # score per sigma k = L / q, q = the tracked (1 - p) quantile of |z|
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
X_PEAK = 2  # peak score of the episode
X_PEAKV = 3  # value at the peak
X_PEAKB = 4  # baseline at the peak
X_PEAKT = 5  # effective score threshold at the peak
X_LASTA = 6  # ts of the last alarm in the episode
X_DIR = 7  # direction of the first alarm point of the run
X_EPSUM = 8  # sum of residuals of the episode's points (for adaptation)
X_EPN = 9  # points in the episode
X_PREVL = 10  # level before the last adaptation (recovery target)
X_PREVT = 11  # ts of the last adaptation (0: none remembered)
X_CLOSET = 12  # ts when the slot's last episode closed (0: none)
X_CLOSEP = 13  # peak score of that episode
X_SILENT = 14  # while the open episode has no rows: 1 a suppressed re-fire, 2 waiting for the gate
N_COLD = 15
RUN_MAX = 30000  # alarm runs are counted up to here (int16 state)
RECIP_MAX = 2048  # longest warm-up (observations) whose 1 / n steps come from a table (16 KB)
NEAR_SLOTS = np.uint64(64)  # a slot ahead within this distance above the current one is not prefetched

# ---- score gate state (gate array columns) --------------------------------------------------
GT_MEAN = 0  # EW mean of the capped score
GT_VAR = 1  # EW variance of the capped score
GATE_SD_MIN = 0.1  # lower bound of the gate's score spread (a constant series would divide by ~0)
GATE_M0 = 0.4342944819032518  # 1 / ln 10: mean (and sd) of the score of a null point

# ---- per-slot settings (sp array columns) ----------------------------------------------------
P_FLOOR = 0  # absolute sigma floor
P_CONFIRM = 1  # consecutive alarm points that open an episode
P_LOWER = 2  # lower bound of the baseline (0 for non-negative metrics, -inf otherwise)
P_SCALE = 3  # multiplier of the score threshold (1 = as configured)
N_SP = 4

# ---- global state (g array) ----------------------------------------------------------------
G_GAIN = 0  # network-wide threshold gain >= 1 (alert budget)
G_EVENTS = 1  # events scored
G_ALARMS = 2  # alarm points
G_INVALID = 3  # events skipped for a non-finite value
G_BACKWARDS = 4  # events older than the slot's previous event (scored, not learned)
N_GLOBAL = 5

# ---- episode row kinds -----------------------------------------------------------------------
KIND_OPEN = 1
KIND_CLOSE = 2
KIND_CHANGE = 3

# ---- per-event flags -------------------------------------------------------------------------
FLAG_ALARM = 1
FLAG_CHANGE = 2
FLAG_WARM = 4
FLAG_INVALID = 8
FLAG_LEARNED = 16
FLAG_BACKWARDS = 32
FLAG_RECUR = 64
_LATE = 256  # internal (never written): a late event that is learned (reported as FLAG_BACKWARDS)

SQRT_HALF_PI = 1.2533141373155003
DAY_MS = 86_400_000

# ---- seasonal bucket fields (last axis of seas_d and seas_w) ---------------------------------
S_OFF = 0  # offset of the bucket
S_EVID = 1  # cycles of evidence
# ---- recurrence memory per day bucket (last axis of seas_m; touched only by alarm points) -----
M_RESID = 0  # residual of the last anomalous point at this phase
M_DAY = 1  # its day number (t // DAY_MS); minus 0.5 once confirmed as recurrent


class Batch(NamedTuple):
    """Events of one call: time (int64 ms), dense slot (int64), value (float64), and a per-event
    threshold multiplier (float64, or an empty array for 1.0 everywhere)."""

    ts_ms: np.ndarray
    slot: np.ndarray
    value: np.ndarray
    thr_mult: np.ndarray


class Params(NamedTuple):
    """Detector parameters (see the module docstring for the formulas)."""

    bucket_ms: int  # seasonal bucket length (ms); 0 disables the season
    n_day: int  # buckets per day profile (0: none)
    n_week: int  # buckets per week profile (0: none)
    k_season: float  # shrinkage prior (cycles) of each bucket
    a_level: float
    a_season: float  # per cycle of a bucket
    a_scale: float
    huber_c: float
    floor_rel: float
    warmup: float  # observations before alarms
    k_up: float  # multiplicative step of k = L / q after an exceedance of q (exp(-eta (1 - p)))
    k_dn: float  # ... otherwise (exp(eta p))
    k_min: float  # L / q_max
    k_max: float  # L / q_min
    log_inv_p: float  # -log10(p)
    score_thr: float  # S
    budget_p: float
    eta_gain: float
    gain_max: float
    cusum_k: float
    cusum_h: float
    cusum_clip: float
    close_after: float
    adapt_ms: int
    recovery_ms: int
    refire_ms: int  # a new episode within this time of the last close must beat its peak
    season_snr: float  # 1: a bucket's weight is earned by its offset's evidence e o^2 / sigma^2; 0: by e alone
    recur_tol: float  # an alarm within this relative distance of yesterday's at the phase is season (0: off)
    late_ms: int  # an event at most this much older than its slot's latest is learned (no evidence, no episode)
    gate_g: float  # an episode is reported only from a point whose capped score stands out by this (0: off)
    gate_a: float  # EW factor per observation of the gate's mean and variance
    gate_cap: float  # scores are capped here before they enter the gate
    sp: np.ndarray  # (n_slots, N_SP) per-slot settings


class State(NamedTuple):
    """Detector state, updated in place by :func:`detect_batch`."""

    st: np.ndarray  # float64 (n_slots, N_FIELDS) hot
    nobs: np.ndarray  # int32 (n_slots,)
    last_t: np.ndarray  # int64 (n_slots,) latest event time (-1 none)
    sx: np.ndarray  # float64 (n_slots, N_COLD) cold
    open_dir: np.ndarray  # int8 (n_slots,)
    run: np.ndarray  # int16 (n_slots,)
    seas_d: np.ndarray  # float64 (n_day, n_slots, 2): day-profile offset, cycles of evidence
    seas_w: np.ndarray  # float64 (n_week, n_slots, 2): week-profile offset, cycles of evidence
    g: np.ndarray  # float64 (N_GLOBAL,)
    seas_m: np.ndarray  # float64 (n_day, n_slots, 2): recurrence memory (``M_RESID``, ``M_DAY``)
    gate: np.ndarray  # float64 (n_slots, 2): score gate mean and variance (``GT_MEAN``, ``GT_VAR``)


class Out(NamedTuple):
    """Per-event outputs (length n) and episode rows (capacity n, written from index 0)."""

    z: np.ndarray
    score: np.ndarray
    base: np.ndarray
    thr: np.ndarray
    flags: np.ndarray
    ep_idx: np.ndarray
    ep_kind: np.ndarray
    ep_start: np.ndarray
    ep_end: np.ndarray
    ep_peak: np.ndarray
    ep_dir: np.ndarray
    ep_base: np.ndarray
    ep_thr: np.ndarray
    ep_value: np.ndarray


@kernel
def detect_init(st, k_init):
    """Reset hot state rows to the empty state (``k = L / q`` to ``k_init``, everything else 0)."""
    for s in range(st.shape[0]):
        for f in range(st.shape[1]):
            st[s, f] = 0.0
        st[s, F_THR] = k_init


@kernel
def _bucket_step(off, evid, inc, a_season, v, mean):
    """A seasonal bucket (offset ``off`` after ``evid`` cycles) after one point adding ``inc`` cycles
    of evidence: the offset is a running (then EW) mean of ``v`` if ``mean``, else it moves by
    ``a * v``. Returns the new ``(off, evid)`` (unchanged without evidence)."""
    e = evid + inc
    if e > 0.0:
        a = inc / e if e * a_season < 1.0 else a_season * inc
        if mean:
            return off + a * (v - off), e
        return off + a * v, e
    return off, evid


@kernel
def _learn_bucket(prof, k, s, inc, a_season, v, mean):
    """Fold one point into seasonal bucket ``k`` of slot ``s`` (see :func:`_bucket_step`)."""
    prof[k, s, S_OFF], prof[k, s, S_EVID] = _bucket_step(prof[k, s, S_OFF], prof[k, s, S_EVID], inc, a_season, v, mean)


@kernel
def _recurrence(p, S, s, pd, pw, t, r, sc, inc, snr):
    """Learning from recurrence, for an alarm point of slot ``s`` in day bucket ``pd``: an excursion
    like yesterday's at the same phase is season. Updates the memory; if it recurs, the seasonal
    buckets (not the level, not the scale) learn it and True is returned (the point does not alarm).
    Kept out of :func:`detect_batch`'s loop (it runs on alarm points only)."""
    today = float(t // DAY_MS)
    seas_m = S.seas_m
    m = seas_m[pd, s, M_RESID]
    age = today - seas_m[pd, s, M_DAY]
    recur = age > 0.0 and age <= 1.5 and m * r > 0.0 and abs(r - m) <= p.recur_tol * abs(m)
    seas_m[pd, s, M_DAY] = today - 0.5 if recur else today
    seas_m[pd, s, M_RESID] = r
    if recur:
        v = sc + r if snr else r
        week_ok = not snr or S.seas_d[pd, s, S_EVID] >= 1.0
        _learn_bucket(S.seas_d, pd, s, inc, p.a_season, v, snr)
        if p.n_week > 0 and week_ok:
            _learn_bucket(S.seas_w, pw, s, inc, p.a_season, v, snr)
    return recur


@kernel
def _recip_table(n_max, n_events):
    """``1 / k`` for ``k = 0 .. min(n_max, RECIP_MAX, n_events / 4) + 1`` (0 at ``k = 0``), as
    ``1.0 / k`` computes it (a small batch gets a small table: it pays one division per entry)."""
    n = int(min(max(n_max, 0.0), RECIP_MAX, n_events // 4)) + 2
    recip = np.empty(n)
    recip[0] = 0.0
    for k in range(1, n):
        recip[k] = 1.0 / k
    return recip


@kernel
def _recip(recip, k):
    """``1.0 / k`` for an observation count ``k >= 1``, from the table when it is there."""
    return recip[k] if k < recip.shape[0] else 1.0 / k


@kernel
def _emit(o, n_rows, i, kind, start, end, peak, d, base, thr, x):
    o.ep_idx[n_rows] = i
    o.ep_kind[n_rows] = kind
    o.ep_start[n_rows] = start
    o.ep_end[n_rows] = end
    o.ep_peak[n_rows] = peak
    o.ep_dir[n_rows] = d
    o.ep_base[n_rows] = base
    o.ep_thr[n_rows] = thr
    o.ep_value[n_rows] = x
    return n_rows + 1


@kernel
def _cusum_change(p, S, o, s, sigma, i, t, x, baseline, n_rows):
    """A CUSUM statistic crossed its limit: move the level to the new regime, reset, emit a row."""
    st = S.st
    cup, cdn = st[s, F_CUP], st[s, F_CDN]
    if cup >= cdn:
        d = 1
        shift = (cup / st[s, F_NUP] + p.cusum_k) * sigma
    else:
        d = -1
        shift = -(cdn / st[s, F_NDN] + p.cusum_k) * sigma
    st[s, F_LEVEL] = max(st[s, F_LEVEL] + shift, p.sp[s, P_LOWER])
    for f in (F_CUP, F_CDN, F_NUP, F_NDN):
        st[s, f] = 0.0
    return _emit(o, n_rows, i, KIND_CHANGE, np.int64(st[s, F_TRUN]), t, abs(shift) / sigma, d, baseline, p.cusum_h, x)


@kernel
def _episode(p, S, o, s, i, t, x, z, score, baseline, thr_eff, alarm, gate_ok, n_rows):
    """Episode bookkeeping of one scored point (open, extend, close, adapt to a long one);
    ``gate_ok``: the point stands out from the slot's recent scores (always True without a gate)."""
    sx = S.sx
    od = S.open_dir[s]
    if alarm:
        rn = S.run[s]
        if od == 0 and rn == 0:
            sx[s, X_DIR] = 1.0 if z > 0.0 else -1.0
            sx[s, X_START] = t
            sx[s, X_PEAK] = -1.0
            sx[s, X_EPSUM] = 0.0
            sx[s, X_EPN] = 0.0
        if score > sx[s, X_PEAK]:
            sx[s, X_PEAK] = score
            sx[s, X_PEAKV] = x
            sx[s, X_PEAKB] = baseline
            sx[s, X_PEAKT] = thr_eff
        if rn < RUN_MAX:
            rn += 1
            S.run[s] = rn
        sx[s, X_LASTA] = t
        sx[s, X_QUIET] = 0.0
        report = False
        if od == 0 and rn >= p.sp[s, P_CONFIRM]:
            od = np.int8(sx[s, X_DIR])
            S.open_dir[s] = od
            # re-fire suppression: soon after an episode closed, only a stronger one is reported
            silent = sx[s, X_CLOSET] > 0.0 and t - np.int64(sx[s, X_CLOSET]) < p.refire_ms
            fire = not (silent and sx[s, X_PEAK] <= sx[s, X_CLOSEP])
            report = fire and gate_ok
            sx[s, X_SILENT] = 0.0 if report else (2.0 if fire else 1.0)
        elif od != 0 and sx[s, X_SILENT] != 0.0:
            # a silent re-fire that grows stronger than the reported episode is reported from here,
            # an episode waiting for the gate from its first point that stands out
            if sx[s, X_SILENT] == 2.0 or sx[s, X_PEAK] > sx[s, X_CLOSEP]:
                report = gate_ok
                sx[s, X_SILENT] = 0.0 if report else 2.0
        if report:
            n_rows = _emit(
                o, n_rows, i, KIND_OPEN, np.int64(sx[s, X_START]), -1, sx[s, X_PEAK], od,
                sx[s, X_PEAKB], sx[s, X_PEAKT], sx[s, X_PEAKV],
            )  # fmt: skip
    else:
        if S.run[s] != 0:
            S.run[s] = 0
        if od != 0:
            q = sx[s, X_QUIET] + 1.0
            sx[s, X_QUIET] = q
            if q >= p.close_after:
                if sx[s, X_SILENT] == 0.0:
                    n_rows = _emit(
                        o, n_rows, i, KIND_CLOSE, np.int64(sx[s, X_START]), np.int64(sx[s, X_LASTA]), sx[s, X_PEAK],
                        od, sx[s, X_PEAKB], sx[s, X_PEAKT], sx[s, X_PEAKV],
                    )  # fmt: skip
                    sx[s, X_CLOSEP] = sx[s, X_PEAK]
                else:
                    sx[s, X_CLOSEP] = max(sx[s, X_CLOSEP], sx[s, X_PEAK])
                sx[s, X_CLOSET] = t
                sx[s, X_SILENT] = 0.0
                S.open_dir[s] = 0
                sx[s, X_QUIET] = 0.0
                return n_rows
    if od != 0 or S.run[s] > 0:
        sx[s, X_EPSUM] += x - baseline
        sx[s, X_EPN] += 1.0
    if od != 0 and p.adapt_ms > 0 and t - np.int64(sx[s, X_START]) >= p.adapt_ms:
        # open too long: accept the new regime, remember the old level for a later recovery
        shift = sx[s, X_EPSUM] / sx[s, X_EPN]
        lvl = S.st[s, F_LEVEL]
        sx[s, X_PREVL] = lvl
        sx[s, X_PREVT] = t
        S.st[s, F_LEVEL] = max(lvl + shift, p.sp[s, P_LOWER])
        if sx[s, X_SILENT] == 0.0:
            n_rows = _emit(
                o, n_rows, i, KIND_CLOSE, np.int64(sx[s, X_START]), t, sx[s, X_PEAK], od,
                sx[s, X_PEAKB], sx[s, X_PEAKT], sx[s, X_PEAKV],
            )  # fmt: skip
        sx[s, X_SILENT] = 0.0
        n_rows = _emit(o, n_rows, i, KIND_CHANGE, np.int64(sx[s, X_START]), t, score, od, baseline, thr_eff, x)
        S.open_dir[s] = 0
        S.run[s] = 0
        sx[s, X_QUIET] = 0.0
        for f in (F_CUP, F_CDN, F_NUP, F_NDN):
            S.st[s, f] = 0.0
    return n_rows


@kernel
def detect_batch(b, p, S, o):
    """Score a batch of events causally and update the detector state.

    Parameters
    ----------
    b : Batch
        Events, processed in their order; NaN/inf values are skipped (``FLAG_INVALID``).
    p : Params
        Parameters and per-slot settings.
    S : State
        Detector state, updated in place.
    o : Out
        Per-event outputs (z, score, baseline, effective score threshold, flags) and episode rows:
        event index, kind (open/close/change), start and end ts (end -1 while open), peak score,
        direction, baseline, threshold and value at the peak.

    Returns
    -------
    n_rows : int
        Number of episode rows written.
    """
    ts_ms, slot, value, thr_mult = b.ts_ms, b.slot, b.value, b.thr_mult
    st, nobs_arr, sx, sp = S.st, S.nobs, S.sx, p.sp
    g, last_t, open_dir, run = S.g, S.last_t, S.open_dir, S.run
    seas_d, seas_w = S.seas_d, S.seas_w
    n_day, n_week, k_season, a_season = p.n_day, p.n_week, p.k_season, p.a_season
    n = ts_ms.shape[0]
    n_rows = 0
    gain = g[G_GAIN]
    use_season = p.bucket_ms > 0 and (p.n_day > 0 or p.n_week > 0)
    use_mult = thr_mult.shape[0] > 0
    snr = p.season_snr > 0.0
    use_recur = use_season and p.recur_tol > 0.0 and n_day > 0
    gate = S.gate
    use_gate = p.gate_g > 0.0
    gate_g2 = p.gate_g * p.gate_g
    n_scored = 0
    n_alarms = 0
    n_invalid = 0
    n_back = 0
    inv_al = 1.0 / p.a_level
    inv_asc = 1.0 / p.a_scale
    inv_bucket = 1.0 / p.bucket_ms if use_season else 1.0
    # running means in warm-up step by 1 / n: a table of those (the same IEEE quotients) keeps two
    # divisions per event out of the loop
    recip = _recip_table(max(inv_al, inv_asc), n)
    # bucket indices are recomputed only when the event time leaves the previous event's bucket
    pd = np.uint64(0)
    pw = np.uint64(0)
    b_lo = 1
    b_hi = 0
    for i in range(n):
        s = np.uint64(slot[i])
        if i + PREFETCH_AHEAD < n:
            s_ahead = np.uint64(slot[i + PREFETCH_AHEAD])
        else:
            s_ahead = s
        # prefetch only a jump: rows near the current one (collector order, slots ascending) are
        # in cache or on the hardware prefetcher's stream already, and the hints cost instructions
        if s_ahead > s + NEAR_SLOTS or s_ahead < s:
            prefetch_row(st, s_ahead)
            prefetch_row(nobs_arr, s_ahead)
            prefetch_row(last_t, s_ahead)
            prefetch_row(sp, s_ahead)
            prefetch_row(open_dir, s_ahead)
            prefetch_row(run, s_ahead)
            if use_gate:
                prefetch_row(gate, s_ahead)
            if use_season:
                if n_day > 0:
                    prefetch_at(seas_d, pd, s_ahead)
                if n_week > 0:
                    prefetch_at(seas_w, pw, s_ahead)
        x = value[i]
        t = ts_ms[i]
        if not np.isfinite(x):
            o.z[i] = np.nan
            o.score[i] = np.nan
            o.base[i] = np.nan
            o.thr[i] = np.nan
            o.flags[i] = FLAG_INVALID
            n_invalid += 1
            continue
        flags = 0
        lt = last_t[s]
        inc = 0.0
        if lt >= 0:
            if t < lt:
                # late: learned within late_ms (marked _LATE until the flags are written), else not
                flags |= FLAG_BACKWARDS if lt - t > p.late_ms else _LATE
                n_back += 1
            elif use_season:
                inc = min(float(t - lt) * inv_bucket, 1.0)
        if t > lt:
            last_t[s] = t
        if use_season and (t < b_lo or t >= b_hi):
            q_b = t // p.bucket_ms
            pd = np.uint64(q_b % p.n_day) if p.n_day > 0 else np.uint64(0)
            pw = np.uint64(q_b % p.n_week) if p.n_week > 0 else np.uint64(0)
            b_lo = q_b * p.bucket_ms
            b_hi = b_lo + p.bucket_ms
        # seasonal offset: day profile shrunk towards 0, week profile shrunk towards the day's
        # the slot's state and its two buckets are read once here (the learning below reuses them)
        level = st[s, F_LEVEL]
        scale = st[s, F_SCALE]
        floor = sp[s, P_FLOOR]
        sd = 0.0  # day bucket: offset, cycles of evidence
        ed = 0.0
        ow = 0.0  # week bucket
        ew = 0.0
        sc = 0.0
        if use_season:
            if n_day > 0:
                sd = seas_d[pd, s, S_OFF]
                ed = seas_d[pd, s, S_EVID]
            if n_week > 0:
                ow = seas_w[pw, s, S_OFF]
                ew = seas_w[pw, s, S_EVID]
            if snr:
                # evidence of an offset o after e cycles: e o^2 / sigma^2 (a large, steady offset is
                # earned in one cycle, noise-sized ones stay shrunk); both weights over one division
                sg = max(SQRT_HALF_PI * scale, floor + p.floor_rel * abs(level))
                ks2 = k_season * sg * sg
                evd = ed * sd * sd
                dw = ow - sd if n_week > 0 else 0.0
                evw = ew * dw * dw
                ad = evd + ks2
                aw = evw + ks2
                den = ad * aw
                if den > 0.0:
                    sc = (sd * evd * aw + dw * evw * ad) / den
                else:  # no spread yet (ks2 = 0): an offset with evidence counts in full
                    sc = (sd if evd > 0.0 else 0.0) + (dw if evw > 0.0 else 0.0)
            else:
                sdd = 0.0  # the day offset that counts (none without evidence)
                if ed > 0.0:
                    sdd = sd
                    sc = sd * ed / (ed + k_season)
                if ew > 0.0:
                    sc += (ow - sdd) * ew / (ew + k_season)
        mult = thr_mult[i] if use_mult else 1.0
        thr_eff = p.score_thr * sp[s, P_SCALE] * mult * gain
        nobs = nobs_arr[s]
        lower = sp[s, P_LOWER]
        if nobs == 0:
            # first observation: it becomes the level, nothing to score against
            st[s, F_LEVEL] = max(x - sc, lower)
            nobs_arr[s] = 1
            o.z[i] = 0.0
            o.score[i] = 0.0
            o.base[i] = x
            o.thr[i] = thr_eff
            o.flags[i] = flags | FLAG_LEARNED
            continue
        baseline = max(level + sc, lower)
        r = x - baseline
        sigma = max(SQRT_HALF_PI * scale, floor + p.floor_rel * abs(baseline))
        z = r / sigma
        az = abs(z)
        kq = st[s, F_THR]
        score = az * kq
        warm = nobs >= p.warmup
        alarm = warm and score > thr_eff
        in_ep = open_dir[s] != 0
        if alarm and sx[s, X_PREVT] > 0.0:
            # recovery after an accepted long deviation: normal against the remembered level?
            if t - np.int64(sx[s, X_PREVT]) <= p.recovery_ms:
                prev_b = max(sx[s, X_PREVL] + sc, lower)
                prev_sig = max(SQRT_HALF_PI * scale, floor + p.floor_rel * abs(prev_b))
                if abs(x - prev_b) / prev_sig * kq <= thr_eff:
                    n_rows = _emit(o, n_rows, i, KIND_CHANGE, np.int64(sx[s, X_PREVT]), t, score,
                                   1 if z > 0 else -1, baseline, thr_eff, x)  # fmt: skip
                    st[s, F_LEVEL] = sx[s, X_PREVL]
                    level = sx[s, X_PREVL]
                    baseline = prev_b
                    r = x - baseline
                    sigma = prev_sig
                    z = r / sigma
                    az = abs(z)
                    score = az * kq
                    alarm = False
                    flags |= FLAG_CHANGE
                    sx[s, X_PREVT] = 0.0
                    for f in (F_CUP, F_CDN, F_NUP, F_NDN):
                        st[s, f] = 0.0
            else:
                sx[s, X_PREVT] = 0.0
        recur = False
        if alarm and use_recur and (flags & (FLAG_BACKWARDS | _LATE)) == 0:
            recur = _recurrence(p, S, s, pd, pw, t, r, sc, inc, snr)
            if recur:
                alarm = False
                flags |= FLAG_RECUR
        if warm:
            flags |= FLAG_WARM
        if p.budget_p < 1.0 and warm:
            if alarm:
                gain += p.eta_gain * gain * (1.0 - p.budget_p)
            else:
                gain -= p.eta_gain * gain * p.budget_p
            gain = min(max(gain, 1.0), p.gain_max)
        learn = (not warm) or (not alarm and not in_ep and run[s] == 0)
        if (flags & FLAG_BACKWARDS) != 0 or recur:
            learn = False
        if warm and not in_ep and not recur and (flags & FLAG_BACKWARDS) == 0:
            # tail quantile: every point outside episodes (exceedances must raise it)
            kq = kq * p.k_up if score > p.log_inv_p else kq * p.k_dn
            st[s, F_THR] = min(max(kq, p.k_min), p.k_max)
        if alarm and not in_ep and (flags & FLAG_BACKWARDS) == 0:
            # bounded robust update: an isolated alarm point (not inside an open episode) moves
            # the scale by at most huber_c sigmas, so a spiky series learns its spread
            asc = p.a_scale if nobs > inv_asc else _recip(recip, nobs)
            st[s, F_SCALE] = scale + asc * (p.huber_c * sigma - scale)
        if learn:
            flags |= FLAG_LEARNED
            rc = r
            if warm:
                cap = p.huber_c * sigma
                rc = min(max(r, -cap), cap)
            al = p.a_level if nobs + 1.0 > inv_al else _recip(recip, nobs + 1)
            level = max(level + al * rc, lower)
            if use_season:
                # each bucket moves towards the deviation from the level seen at its phase (the
                # seasonal offset used plus the residual the level left)
                rs = (1.0 - al) * rc
                v = sc + rs if snr else rs
                # the week bucket learns only once its day bucket has a full cycle (a first day
                # seen while the level still chased the season would bias that hour for a week)
                week_ok = not snr or n_day == 0 or ed >= 1.0
                if n_day > 0:
                    seas_d[pd, s, S_OFF], seas_d[pd, s, S_EVID] = _bucket_step(sd, ed, inc, a_season, v, snr)
                if n_week > 0 and week_ok:
                    seas_w[pw, s, S_OFF], seas_w[pw, s, S_EVID] = _bucket_step(ow, ew, inc, a_season, v, snr)
            asc = p.a_scale if nobs > inv_asc else _recip(recip, nobs)
            ar = abs(r)
            if warm and ar > p.huber_c * sigma:
                ar = p.huber_c * sigma
            st[s, F_SCALE] = scale + asc * (ar - scale)
            st[s, F_LEVEL] = level
            if nobs < N_MAX:
                nobs_arr[s] = nobs + 1
        if warm and not in_ep and not alarm and not recur and (flags & FLAG_BACKWARDS) == 0:
            # CUSUM as selects (signs are close to random on normal data: branches mispredict)
            zk = min(max(z, -p.cusum_clip), p.cusum_clip)
            cup = st[s, F_CUP] + zk - p.cusum_k
            cdn = st[s, F_CDN] - zk - p.cusum_k
            up = cup > 0.0
            dn = cdn > 0.0
            nup = st[s, F_NUP] + 1.0 if up else 0.0
            ndn = st[s, F_NDN] + 1.0 if dn else 0.0
            cup = cup if up else 0.0
            cdn = cdn if dn else 0.0
            trun = t if (nup == 1.0 or ndn == 1.0) else st[s, F_TRUN]
            st[s, F_TRUN] = trun
            st[s, F_NUP] = nup
            st[s, F_NDN] = ndn
            st[s, F_CUP] = cup
            st[s, F_CDN] = cdn
            if cup > p.cusum_h or cdn > p.cusum_h:
                n_rows = _cusum_change(p, S, o, s, sigma, i, t, x, baseline, n_rows)
                flags |= FLAG_CHANGE
        gm = 0.0
        gv = 0.0
        if use_gate:
            # score gate: the slot's EW mean and variance of its capped scores, read before this point
            gm = gate[s, GT_MEAN]
            gv = gate[s, GT_VAR]
            gy = min(score, p.gate_cap)
            gm1 = gm + p.gate_a * (gy - gm)
            gate[s, GT_MEAN] = gm1
            gate[s, GT_VAR] = gv + p.gate_a * ((gy - gm1) * (gy - gm1) - gv)
        if warm and (flags & (FLAG_BACKWARDS | _LATE)) == 0 and (alarm or open_dir[s] != 0 or run[s] != 0):
            gate_ok = True
            if use_gate and alarm:
                gd = min(score, p.gate_cap) - gm
                gate_ok = gd > 0.0 and gd * gd > gate_g2 * max(gv, GATE_SD_MIN * GATE_SD_MIN)
            n_rows = _episode(p, S, o, s, i, t, x, z, score, baseline, thr_eff, alarm, gate_ok, n_rows)
        if alarm:
            flags |= FLAG_ALARM
            n_alarms += 1
        if flags & _LATE:
            flags = (flags ^ _LATE) | FLAG_BACKWARDS
        o.z[i] = z
        o.score[i] = score
        o.base[i] = baseline
        o.thr[i] = thr_eff
        o.flags[i] = flags
        n_scored += 1
    g[G_GAIN] = gain
    g[G_EVENTS] += n_scored
    g[G_ALARMS] += n_alarms
    g[G_INVALID] += n_invalid
    g[G_BACKWARDS] += n_back
    return n_rows


@kernel
def fill_episode_rows(rows, b, slot_element_id, o):
    """Copy the numeric fields of the first ``len(rows)`` episode rows into a structured array.

    ``rows`` needs the fields slot, element_id, start_ms, end_ms, peak_score, direction, baseline,
    threshold, value, scope_id and t_ms (the anomaly record); string fields are left to the caller.
    """
    for j in range(rows.shape[0]):
        i = o.ep_idx[j]
        s = b.slot[i]
        r = rows[j]
        r["slot"] = s
        r["element_id"] = slot_element_id[s]
        r["scope_id"] = slot_element_id[s]
        r["start_ms"] = o.ep_start[j]
        r["end_ms"] = o.ep_end[j]
        r["peak_score"] = o.ep_peak[j]
        r["direction"] = o.ep_dir[j]
        r["baseline"] = o.ep_base[j]
        r["threshold"] = o.ep_thr[j]
        r["value"] = o.ep_value[j]
        r["t_ms"] = b.ts_ms[i]


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
